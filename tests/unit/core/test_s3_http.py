"""exchange.core.s3_http against a scripted local HTTP peer: keep-alive, the ways an answer can end,
stale connections, timeouts, the connection limit, TLS. (The real S3 server is in
tests/integration/ingest/test_s3put.py.)"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exchange.core.s3_http import Http1Client, HttpError

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
HEAD = b"PUT /b/k HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\n\r\n"


@dataclass
class Peer:
    """Answers each request with `script(n)` (n counts requests over all connections): bytes to
    write, then whether to close the connection afterwards."""

    script: Callable[[int], tuple[bytes, bool]] = lambda _n: (OK, False)
    requests: int = 0
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    delay: float = 0.0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.lower().split(b"\r\n")
                length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")), 0)
                await reader.readexactly(length)
                self.requests += 1
                if self.delay:
                    await asyncio.sleep(self.delay)
                answer, close = self.script(self.requests)
                writer.write(answer)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


@pytest.fixture
async def peer() -> AsyncIterator[tuple[Peer, str]]:
    state = Peer()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield state, f"http://127.0.0.1:{port}"
    server.close()
    for writer in state.writers:
        writer.close()


async def test_connections_are_kept_alive_and_reused(peer: tuple[Peer, str]) -> None:
    state, origin = peer
    client = Http1Client(origin)
    for _ in range(3):
        answer = await client.request(HEAD, b"body")
        assert (answer.status, answer.body) == (200, b"ok")
    assert (state.requests, state.connections, client.opened) == (3, 1, 1)
    await client.close()


async def test_a_connection_that_answered_an_error_is_not_reused(peer: tuple[Peer, str]) -> None:
    """Whatever answered an error may not be the origin (on the local node, a proxy answered 404 for
    a Service between two pods): its keep-alive connection must not serve the next request."""
    state, origin = peer
    state.script = lambda n: (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n" if n == 1 else OK, False)
    client = Http1Client(origin)
    assert (await client.request(HEAD, b"body")).status == 404
    assert (await client.request(HEAD, b"body")).status == 200
    assert (state.connections, client.opened) == (2, 2)
    await client.close()


async def test_connection_close_is_honoured(peer: tuple[Peer, str]) -> None:
    state, origin = peer
    state.script = lambda _n: (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", True)
    client = Http1Client(origin)
    for _ in range(2):
        assert (await client.request(HEAD, b"body")).status == 200
    assert state.connections == 2
    await client.close()


async def test_an_answer_delimited_by_the_end_of_the_connection(peer: tuple[Peer, str]) -> None:
    state, origin = peer
    state.script = lambda _n: (b"HTTP/1.1 503 Slow Down\r\n\r\n<Error>busy</Error>", True)
    client = Http1Client(origin)
    answer = await client.request(HEAD, b"body")
    assert (answer.status, answer.body) == (503, b"<Error>busy</Error>")
    await client.close()


async def test_a_chunked_answer_is_read_whole_and_the_connection_reused(peer: tuple[Peer, str]) -> None:
    state, origin = peer
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    state.script = lambda _n: (chunked, False)
    client = Http1Client(origin, max_body=4)
    for _ in range(2):
        answer = await client.request(HEAD, b"body")
        assert (answer.status, answer.body) == (200, b"abcd")  # capped at max_body
    assert state.connections == 1
    await client.close()


async def test_a_connection_cut_in_the_middle_of_the_body_is_an_error(peer: tuple[Peer, str]) -> None:
    state, origin = peer
    state.script = lambda _n: (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", True)
    client = Http1Client(origin)
    with pytest.raises(HttpError, match="connection closed"):
        await client.request(HEAD, b"body")
    await client.close()


async def test_a_malformed_answer_is_an_error(peer: tuple[Peer, str]) -> None:
    state, origin = peer
    state.script = lambda _n: (b"SMTP ready\r\n\r\n", False)
    client = Http1Client(origin)
    with pytest.raises(HttpError, match="malformed"):
        await client.request(HEAD, b"body")
    await client.close()


async def test_a_pooled_connection_the_server_closed_is_replaced_without_an_error(peer: tuple[Peer, str]) -> None:
    state, origin = peer
    client = Http1Client(origin)
    assert (await client.request(HEAD, b"body")).status == 200
    for writer in state.writers:  # the server drops its idle connection
        writer.transport.abort()
    await asyncio.sleep(0.05)
    assert (await client.request(HEAD, b"body")).status == 200
    assert (state.connections, client.opened) == (2, 2)
    await client.close()


async def test_a_reused_connection_dropped_before_any_answer_is_retried_once_on_a_fresh_one(
    peer: tuple[Peer, str],
) -> None:
    """The server closes a keep-alive connection just as the next request arrives (its idle
    timeout racing the client): the request goes again on a new connection."""
    state, origin = peer
    state.script = lambda n: (b"", True) if n == 2 else (OK, False)
    client = Http1Client(origin)
    assert (await client.request(HEAD, b"body")).status == 200
    assert (await client.request(HEAD, b"body")).status == 200
    assert (state.requests, state.connections) == (3, 2)
    await client.close()


async def test_a_fresh_connection_dropped_before_any_answer_is_an_error(peer: tuple[Peer, str]) -> None:
    state, origin = peer
    state.script = lambda _n: (b"", True)
    client = Http1Client(origin)
    with pytest.raises(HttpError, match="connection closed"):
        await client.request(HEAD, b"body")
    assert state.requests == 1
    await client.close()


async def test_idle_connections_are_dropped_after_the_idle_timeout(peer: tuple[Peer, str]) -> None:
    state, origin = peer
    client = Http1Client(origin, idle_timeout=0.05)
    await client.request(HEAD, b"body")
    await asyncio.sleep(0.1)
    await client.request(HEAD, b"body")
    assert state.connections == 2
    await client.close()


async def test_no_answer_in_time_is_a_timeout_and_the_connection_is_not_reused(peer: tuple[Peer, str]) -> None:
    state, origin = peer
    state.delay = 0.5
    client = Http1Client(origin, timeout=0.1)
    with pytest.raises(HttpError, match="timed out"):
        await client.request(HEAD, b"body")
    state.delay = 0
    assert (await client.request(HEAD, b"body")).status == 200
    assert client.opened == 2
    await client.close()


async def test_a_timeout_on_a_reused_connection_is_not_retried(peer: tuple[Peer, str]) -> None:
    state, origin = peer
    client = Http1Client(origin, timeout=0.1)
    assert (await client.request(HEAD, b"body")).status == 200
    state.delay = 0.5
    with pytest.raises(HttpError, match="timed out"):
        await client.request(HEAD, b"body")
    await asyncio.sleep(0.05)
    assert state.requests == 2  # sent once, not again
    await client.close()


async def test_nothing_listening_is_an_error_naming_only_the_class() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    client = Http1Client(f"http://127.0.0.1:{port}")
    with pytest.raises(HttpError, match="cannot connect: ConnectionRefusedError"):
        await client.request(HEAD, b"body")


async def test_at_most_limit_connections_are_open(peer: tuple[Peer, str]) -> None:
    state, origin = peer
    state.delay = 0.02
    client = Http1Client(origin, limit=3)
    answers = await asyncio.gather(*(client.request(HEAD, b"body") for _ in range(12)))
    assert [a.status for a in answers] == [200] * 12
    assert state.most_open <= 3 and client.opened == 3
    await client.close()


async def test_a_cancelled_request_does_not_leave_its_connection_in_the_pool(peer: tuple[Peer, str]) -> None:
    state, origin = peer
    state.delay = 0.5
    client = Http1Client(origin)
    task = asyncio.create_task(client.request(HEAD, b"body"))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    state.delay = 0
    assert (await client.request(HEAD, b"body")).status == 200  # not the late answer of the first
    assert client.opened == 2
    await client.close()


def test_the_origin_must_be_http() -> None:
    with pytest.raises(ValueError, match="origin"):
        Http1Client("ftp://example")


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_https_verifies_the_server_and_keeps_the_connection(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    state = Peer()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0, ssl=server_ctx)
    origin = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        trusting = Http1Client(origin, ssl_context=ssl.create_default_context(cafile=str(cert)))
        for _ in range(2):
            assert (await trusting.request(HEAD, b"body")).status == 200
        assert trusting.opened == 1
        await trusting.close()
        with pytest.raises(HttpError, match="cannot connect: SSLCertVerificationError"):
            await Http1Client(origin).request(HEAD, b"body")  # the system's CAs do not know it
    finally:
        server.close()
        for writer in state.writers:
            writer.close()
