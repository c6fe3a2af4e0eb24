"""How every HTTP service (and a worker's probe port) is served: uvicorn on uvloop with httptools,
with limits that hold before a request reaches the app, so before auth.

uvicorn's own settings carry what it has: `limit_concurrency` (beyond that many connections or
requests in progress a new request is answered 503, here as problem+json), `timeout_keep_alive`
and `backlog`; WebSocket upgrades are off (no service serves one). Its httptools protocol has
no limit on a request head and no read timeouts (its `h11_max_incomplete_event_size` applies to
h11 only), so `LimitedHttpProtocol` adds them: a head larger than `HTTP_MAX_HEADER_BYTES` or
with more than `HTTP_MAX_HEADERS` fields is 431, a head not complete `HTTP_HEADER_TIMEOUT`
seconds after its first byte (or after the connection opened) is 408, and so is a body whose
client pauses more than `HTTP_BODY_TIMEOUT` seconds. These answers are problem+json and close
the connection.

The limits are read from the environment once per process (`server_limits`), not handed to the
protocol class, because uvicorn pickles its configuration, the protocol class included, into
each worker process (`WEB_CONCURRENCY`).
"""

from __future__ import annotations

import asyncio
import functools
from http import HTTPStatus
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from exchange.core.settings import HttpServerSettings, load

PROBLEM_JSON = b"application/problem+json"
REFUSED_SCOPE_KEY = "exchange.refused_with"
"""Scope key set to the status the server answered a request with while the app still held it
(a stalled body's 408): the app counts the request with it, not as a client abort."""
LINGER_SECONDS = 0.5
"""How long a refused connection's remaining input is read and dropped before it is closed."""


@functools.cache
def server_limits() -> HttpServerSettings:
    """This process's HttpServerSettings (HTTP_* variables), read once."""
    return load(HttpServerSettings)


def problem_bytes(status: int, detail: str) -> bytes:
    """An RFC 9457 body (as exchange.core.http renders them) for an answer given without the app."""
    title = HTTPStatus(status).phrase
    return orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})


async def _overloaded(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer past `limit_concurrency` (uvicorn's own is text/plain)."""
    body = problem_bytes(503, "the service is at its connection limit; retry")
    headers = [(b"content-type", PROBLEM_JSON), (b"content-length", b"%d" % len(body)),
               (b"retry-after", b"1"), (b"connection", b"close")]  # fmt: skip
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _HeadTooLarge(Exception):
    """Raised inside a parser callback: httptools stops parsing, `send_400_response` answers 431."""


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head limits and read timeouts of `server_limits()`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = server_limits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._reading = "head"  # what the client is sending: "head", "body", or "refused" (then dropped)
        self._head_received = self._head_parsed = self._header_count = 0
        self._refusal: tuple[int, str] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._arm(self.limits.http_header_timeout)  # a connection that never sends a byte goes too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading == "refused":
            return
        if self._reading == "head":
            self._head_received += len(data)  # may include the start of a body: checked after parsing
            if self._deadline is None:
                self._arm(self.limits.http_header_timeout)
        elif self._reading == "body":
            self._arm(self.limits.http_body_timeout)
        super().data_received(data)
        # httptools holds a header field until it ends: a head that is still incomplete counts as sent.
        if self._reading == "head" and self._head_received > self.limits.http_max_header_bytes:
            self._refuse(431, f"the request head exceeds {self.limits.http_max_header_bytes} bytes")

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self._count_head(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value), 1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading = "body"
        self._arm(self.limits.http_body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        # What comes next is the next request's head; its timer starts with its first byte (until
        # then uvicorn's keep-alive timer runs, once the answer is out).
        self._reading, self._head_received, self._head_parsed, self._header_count = "head", 0, 0, 0
        self._disarm()
        super().on_message_complete()

    # uvicorn hooks
    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        super()._start_asgi_task(cycle, _overloaded if app is service_unavailable else app)  # type: ignore[arg-type]

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request httptools cannot parse (or a callback refused)."""
        status, detail = self._refusal or (400, "the request is not valid HTTP/1.1")
        self._answer_and_close(status, detail)

    # helpers
    def _count_head(self, size: int, fields: int) -> None:
        # Also counted as parsed: a whole head (and more) can arrive in one read.
        self._head_parsed, self._header_count = self._head_parsed + size, self._header_count + fields
        if self._header_count > self.limits.http_max_headers:
            self._refusal = (431, f"the request has more than {self.limits.http_max_headers} header fields")
            raise _HeadTooLarge
        if self._head_parsed > self.limits.http_max_header_bytes:
            self._refusal = (431, f"the request head exceeds {self.limits.http_max_header_bytes} bytes")
            raise _HeadTooLarge

    def _refuse(self, status: int, detail: str) -> None:
        self._refusal = (status, detail)
        self._answer_and_close(status, detail)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._reading == "head":
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a pipelined head while an answer is pending: the app is slow, not the client
            self._answer_and_close(408, "the request head did not arrive in time")
        elif self._reading == "body":
            if self.flow.read_paused:  # the app has not taken what was sent yet
                self._arm(self.limits.http_body_timeout)
            else:
                self._answer_and_close(408, "the request body stalled")

    def _answer_and_close(self, status: int, detail: str) -> None:
        self._disarm()
        self._reading = "refused"
        if self.transport.is_closing():
            return
        started = False
        if self.cycle is not None and not self.cycle.response_complete:
            started = self.cycle.response_started
            if not started:
                self.cycle.scope[REFUSED_SCOPE_KEY] = status  # type: ignore[literal-required]
            self.cycle.disconnected = True  # the app's receive() gets http.disconnect, its answer is dropped
            self.cycle.message_event.set()
        if not started:
            body = problem_bytes(status, detail)
            head = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head.append(b"content-type: %s\r\ncontent-length: %d\r\n" % (PROBLEM_JSON, len(body)))
            head.append(b"connection: close\r\n\r\n")
            self.transport.write(b"".join(head) + body)
        # Close our side, then read and drop what the client still sends for a moment before
        # closing: closing over unread bytes resets the connection, and the client's kernel may
        # drop the answer with it (Go's server waits 500 ms the same way).
        self.transport.write_eof()
        self.flow.resume_reading()
        self._deadline = self.loop.call_later(LINGER_SECONDS, self.transport.close)


def uvicorn_options() -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run`/`uvicorn.Config`: the loop, the protocol and the limits."""
    limits = server_limits()
    return {
        "loop": "uvloop",
        "http": LimitedHttpProtocol,
        "ws": "none",
        "limit_concurrency": limits.http_max_connections,
        "timeout_keep_alive": limits.http_keepalive_timeout,
        "server_header": False,
        "access_log": False,
        "log_config": None,
    }


__all__ = ["REFUSED_SCOPE_KEY", "LimitedHttpProtocol", "problem_bytes", "server_limits", "uvicorn_options"]
