"""The S3 PUT fast path's HTTP/1.1 client, for one origin: keep-alive connections, bounded, asyncio protocols.

Why not aiohttp on a hot path: its client machinery around a request (session, connector,
timeouts, payload registry, stream reader, response object) cost ~20 % of ingest's CPU per
request for a 300-byte S3 PUT. This client writes the request head and body in one write,
parses the answer with `httptools` (llhttp, the parser uvicorn uses) and keeps nothing of the
response but its status and the first `max_body` bytes of its body.

What it does: one origin (http or https), at most `limit` connections (callers wait for one),
idle connections reused newest first and dropped after `idle_timeout` seconds (servers close
theirs: Jetty after 30 s), a connection kept only after a 2xx answer, responses delimited by
Content-Length, chunked encoding or the end of the connection, `Connection: close` honoured, a
connect timeout and a whole-response timeout.
What it leaves out: redirects, cookies, proxies, `Expect: 100-continue`, pipelining, streaming
bodies. A request that fails on a connection reused from the pool before any byte of an answer
came back is retried once on a fresh connection (the server may have closed it meanwhile), so
send only idempotent requests (ingest sends content-addressed PUTs); any other failure is the
caller's to retry.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
import time
from collections import deque
from dataclasses import dataclass

import httptools
from yarl import URL


class HttpError(Exception):
    """The request got no complete answer (connect, write, read, timeout or protocol error)."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes  # the first `max_body` bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, max_body: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.max_body = max_body
        self.body: list[bytes] = []
        self.size = 0
        self.status = 0  # of the answer being read, once its head is in
        self.delimited = False  # the answer's head gave a Content-Length or Transfer-Encoding
        self.answered = False  # some byte of an answer arrived on this request
        self.closed = False
        self.keep_alive = False
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timed_out = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"malformed HTTP answer: {type(exc).__name__}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.status and not self.delimited:
                self._complete()  # an answer delimited by the end of the connection
            else:
                self._fail(HttpError(f"connection closed: {type(exc).__name__ if exc else 'EOF'}"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.body, self.size, self.status, self.delimited = [], 0, 0, False

    def on_header(self, name: bytes, _value: bytes) -> None:
        if len(name) in (14, 17) and name.lower() in (b"content-length", b"transfer-encoding"):
            self.delimited = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, data: bytes) -> None:
        if self.size < self.max_body:
            self.body.append(data[: self.max_body - self.size])
        self.size += len(data)

    def on_message_complete(self) -> None:
        self._complete()

    # helpers
    def _complete(self) -> None:
        self.keep_alive = not self.closed and self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(Answer(self.status, b"".join(self.body)))
            if self.timer is not None:
                self.timer.cancel()

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
            if self.timer is not None:
                self.timer.cancel()

    def _time_out(self) -> None:
        self.timed_out = True
        self._fail(HttpError("timed out waiting for the answer"))
        self.close()

    def send(self, head: bytes, body: bytes, loop: asyncio.AbstractEventLoop, timeout: float) -> asyncio.Future[Answer]:
        """Write the request; the future of its answer, failed with HttpError after `timeout`
        seconds (a timer handle: cheaper than an `asyncio.timeout` scope per request)."""
        assert self.transport is not None
        self.waiter = loop.create_future()
        if self.closed:
            self.waiter.set_exception(HttpError("connection closed: before the request"))
            return self.waiter
        self.timer = loop.call_later(timeout, self._time_out)
        self.answered = self.keep_alive = self.delimited = False
        self.status = 0  # nothing of an earlier answer counts for this one
        if len(body) <= 16384:
            self.transport.write(head + body)  # one segment for a small request
        else:
            self.transport.writelines((head, body))
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.close()


class Http1Client:
    """Requests to one origin (`scheme://host[:port]`) over at most `limit` keep-alive connections."""

    def __init__(
        self,
        origin: str,
        *,
        limit: int = 128,
        connect_timeout: float = 5.0,
        timeout: float = 5.0,
        idle_timeout: float = 15.0,
        max_body: int = 4096,
        ssl_context: _ssl.SSLContext | None = None,
    ) -> None:
        url = URL(origin)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("origin must be http(s)://host[:port]")
        self.host, self.port = url.host, url.port or (443 if url.scheme == "https" else 80)
        self.ssl = (ssl_context or _ssl.create_default_context()) if url.scheme == "https" else None
        self.connect_timeout, self.timeout, self.idle_timeout = connect_timeout, timeout, idle_timeout
        self.max_body = max_body
        self._slots = asyncio.Semaphore(limit)
        self._idle: deque[_Connection] = deque()
        self.opened = 0  # connections opened so far (for tests and metrics)

    async def request(self, head: bytes, body: bytes = b"") -> Answer:
        """Send `head` (request line and headers, ending with a blank line, Content-Length
        included when there is a body) and `body`; the answer's status and first bytes."""
        async with self._slots:
            loop = asyncio.get_running_loop()
            conn = self._take_idle()
            reused = conn is not None
            for _ in range(2):
                if conn is None:
                    conn = await self._connect()
                try:
                    answer = await conn.send(head, body, loop, self.timeout)
                except BaseException as exc:
                    conn.close()
                    if reused and not conn.answered and isinstance(exc, HttpError) and not conn.timed_out:
                        conn, reused = None, False  # stale keep-alive connection: once more, fresh
                        continue
                    raise
                # Only a 2xx answer hands its connection back: an error may come from something
                # other than the origin (a proxy answering for a Service between two pods, a
                # server going away), and the pool would serve it again and again.
                if conn.keep_alive and 200 <= answer.status < 300:
                    conn.idle_since = time.monotonic()
                    self._idle.append(conn)
                else:
                    conn.close()
                return answer
            raise AssertionError("unreachable")

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()  # newest first: the least likely to have been closed
            if not conn.closed and now - conn.idle_since < self.idle_timeout:
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self.max_body), self.host, self.port, ssl=self.ssl
                )
        except TimeoutError:
            raise HttpError("timed out connecting") from None
        except OSError as exc:
            raise HttpError(f"cannot connect: {type(exc).__name__}") from None
        self.opened += 1
        return conn

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
