"""The HTTP server's own limits, which hold before a request reaches the app (and its auth): a
request head too large or with too many fields is 431, a head or body that stalls is 408, past
the connection cap a request is 503; each a problem+json answer that closes the connection.

Served as people and the operator serve it, by `exchange serve` (the tokenizer: it needs no
engine), on raw sockets, since HTTP clients refuse to send what these tests send."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from exchange_devtools.engines.base import free_port

REPO = Path(__file__).resolve().parents[3]
SAFETY = 20.0
"""Seconds a socket waits before the test gives up: only for a server that never answers."""


class Answer:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}

    def problem(self) -> dict[str, object]:
        assert self.headers["content-type"] == "application/problem+json"
        doc: dict[str, object] = orjson.loads(self.body)
        assert doc["status"] == self.status
        return doc


def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(SAFETY)
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def read_one_response(sock: socket.socket) -> bytes:
    """One response of a kept-alive connection: its head, then Content-Length bytes of body (the
    server may send them in separate segments)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed before the response's head"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def send_all(sock: socket.socket, parts: list[bytes]) -> None:
    """Send `parts` one by one, stopping when the server has closed the connection."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        for part in parts:
            sock.sendall(part)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., int]]:
    """`serve(**env)`: the port of `exchange serve tokenizer` running with these HTTP_* settings
    (`serve.logs[port]`: its log file)."""
    procs: list[subprocess.Popen[bytes]] = []
    logs: dict[int, Path] = {}

    def start(**settings: str) -> int:
        port = free_port()
        log_path = tmp_path_factory.mktemp("serve") / "tokenizer.log"
        env = {
            **os.environ, "ENV": "local", "TOKENIZATION_SECRET": "local-only-limits-test", "PORT": str(port),
            "PYTHONPATH": os.pathsep.join([str(REPO / "services"), str(REPO / "hack")]), **settings,
        }  # fmt: skip
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "exchange.cli.main", "serve", "tokenizer"], env=env,
                                    stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        procs.append(proc)
        logs[port] = log_path
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()[-2000:]
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                if read_to_end(sock).startswith(b"HTTP/1.1 200"):
                    return port
            time.sleep(0.2)
        raise AssertionError(f"the tokenizer did not start: {log_path.read_text()[-2000:]}")

    start.logs = logs  # type: ignore[attr-defined]
    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def port(serve: Callable[..., int]) -> int:
    return serve(HTTP_HEADER_TIMEOUT="1", HTTP_BODY_TIMEOUT="1")


def request(port: int, *parts: bytes) -> Answer:
    with socket.create_connection(("127.0.0.1", port), timeout=SAFETY) as sock:
        send_all(sock, list(parts))
        return Answer(read_to_end(sock))


def test_a_header_over_the_limit_is_431_before_auth(port):
    big = b"X-Padding: " + b"a" * 40_000 + b"\r\n"
    answer = request(port, b"POST /v1/tokenize HTTP/1.1\r\nHost: t\r\n" + big + b"Content-Length: 0\r\n\r\n")
    assert answer.status == 431
    assert "32768 bytes" in str(answer.problem()["detail"])
    assert answer.headers["connection"] == "close"


def test_a_head_that_never_ends_is_refused_once_past_the_limit_not_buffered(port):
    endless = [b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Padding: "] + [b"a" * 8192] * 8192  # 64 MiB, if taken
    answer = request(port, *endless)
    assert answer.status == 431
    answer.problem()


def test_more_header_fields_than_the_limit_is_431(port):
    fields = b"".join(b"X-F%d: 1\r\n" % i for i in range(101))
    answer = request(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n")
    assert answer.status == 431
    assert "more than 100 header fields" in str(answer.problem()["detail"])


def test_a_head_that_stalls_is_408_and_the_connection_closed(port):
    answer = request(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # and nothing more
    assert answer.status == 408
    answer.problem()


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(port):
    with socket.create_connection(("127.0.0.1", port), timeout=SAFETY) as sock:
        assert Answer(read_to_end(sock)).status == 408


def test_a_body_that_stalls_is_408_even_after_auth(port):
    head = b"POST /v1/tokenize HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer dev\r\nContent-Type: application/json\r\n"
    answer = request(port, head + b"Content-Length: 1000\r\n\r\n" + b'{"records": [')
    assert answer.status == 408
    assert answer.problem()["detail"] == "the request body stalled"


def counted(port: int, route: str) -> dict[str, float]:
    """The requests to `route` counted in /metrics, by status, once there are any."""
    deadline = time.monotonic() + SAFETY
    while True:
        text = request(port, b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").body.decode()
        prefix = f'http_requests_total{{method="POST",route="{route}",status="'
        found = {line[len(prefix) :].split('"')[0]: float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith(prefix)}  # fmt: skip
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def logged(serve: Callable[..., int], port: int) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in serve.logs[port].read_bytes().splitlines() if line.startswith(b"{")]  # type: ignore[attr-defined]


def test_a_client_that_goes_away_mid_body_is_counted_499_and_logged_at_info_not_as_an_error(serve):
    aborted = serve()
    head = b"POST /v1/tokenize HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer dev\r\nContent-Type: application/json\r\n"
    with socket.create_connection(("127.0.0.1", aborted), timeout=SAFETY) as sock:
        sock.sendall(head + b"Content-Length: 1000\r\n\r\n" + b'{"records": [')
    assert counted(aborted, "/v1/tokenize") == {"499": 1.0}
    events = [(line["event"], line["level"]) for line in logged(serve, aborted) if line.get("path") == "/v1/tokenize"]
    assert events == [("client_aborted", "info")]
    assert "unhandled_error" not in serve.logs[aborted].read_text()


def test_a_body_the_server_timed_out_is_counted_as_its_408(serve):
    stalled = serve(HTTP_BODY_TIMEOUT="1")
    head = b"POST /v1/tokenize HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer dev\r\nContent-Type: application/json\r\n"
    assert request(stalled, head + b"Content-Length: 1000\r\n\r\n" + b'{"records": [').status == 408
    assert counted(stalled, "/v1/tokenize") == {"408": 1.0}
    assert "unhandled_error" not in serve.logs[stalled].read_text()


def test_what_is_not_http_is_400_problem_json(port):
    answer = request(port, b"\x16\x03\x01 this is not HTTP\r\n\r\n")
    assert answer.status == 400
    answer.problem()


def test_a_request_within_the_limits_is_served_and_kept_alive(port):
    with socket.create_connection(("127.0.0.1", port), timeout=SAFETY) as sock:
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Padding: " + b"a" * 16_000 + b"\r\n\r\n")
            assert read_one_response(sock).startswith(b"HTTP/1.1 200")


def test_past_the_connection_cap_a_request_is_503_problem_json_with_retry_after(serve):
    capped = serve(HTTP_MAX_CONNECTIONS="3", HTTP_HEADER_TIMEOUT="60")
    holders = [socket.create_connection(("127.0.0.1", capped), timeout=SAFETY) for _ in range(3)]
    try:
        for sock in holders:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # an unfinished head holds its connection
        answer = request(capped, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert answer.status == 503
        assert answer.headers["retry-after"] == "1"
        answer.problem()
    finally:
        for sock in holders:
            sock.close()
