"""The FastAPI app factory every service uses.

`create_service_app()` gives: RFC 9457 problem+json for every error (no stack traces, no input
values), an `X-Correlation-ID` accepted or generated and returned, request metrics by route
template, `/healthz` (process), `/readyz` (the service's dependency checks) and `/metrics`.
Outside ENV=local `/metrics` and the API docs (`/docs`, `/redoc`, `/openapi.json`) are not served
on the service's port: metrics go to `METRICS_PORT`, a port of their own that no Ingress routes.

A service's hot routes may be `DirectRoute`s: answered right behind the correlation/metrics
middleware, without FastAPI's middlewares, routing and dependency injection (about a sixth of
ingest's CPU per request). Such a handler takes the Starlette `Request` and returns a
`Response`; its errors are rendered exactly as the app's exception handlers render them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, reset_contextvars

from exchange.core import tracing
from exchange.core.errors import BadRequest, PayloadTooLarge, ProblemError, UnsupportedMediaType, cap
from exchange.core.logging import (
    CORRELATION_HEADER,
    current_correlation_id,
    get_logger,
    new_correlation_id,
    valid_correlation_id,
)
from exchange.core.metrics import HttpMetrics, exposition
from exchange.core.server import REFUSED_SCOPE_KEY
from exchange.core.settings import ServiceSettings

PROBLEM_JSON = "application/problem+json"
CLIENT_CLOSED_REQUEST = 499
"""The status a request is counted with when its client went away before the answer (nginx's
code; never sent, the connection is gone): a client's abort is not the service's 5xx."""
ReadinessCheck = Callable[[], Awaitable[None]]
log = get_logger(__name__)

_STATUS_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    499: "Client Closed Request",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    """An application/problem+json response carrying the current correlation id."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _STATUS_TITLES.get(status, "Error"),
        "status": status,
        "detail": cap(detail),
    }
    if instance:
        body["instance"] = instance
    cid = current_correlation_id()
    if cid:
        body["correlation_id"] = cid
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON)


def schema_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    """Turn FastAPI's validation errors into JSON pointers + reasons, dropping input values."""
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        out.append({"pointer": "/" + "/".join(loc), "reason": str(err.get("type", "invalid"))})
    return out


class ContextMiddleware:
    """Pure ASGI middleware: correlation id in and out, log context, request metrics."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for key, value in scope.get("headers", ()):
            if key == b"x-correlation-id":
                incoming = value.decode("latin-1")
                break
        cid = valid_correlation_id(incoming) or new_correlation_id()
        tokens = bind_contextvars(correlation_id=cid)
        started = time.perf_counter()
        status = 500

        async def send_with_header(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if tracing.enabled():  # routed by now; the server span ends with the answer
                    route = getattr(scope.get("route"), "path", None) or "unmatched"
                    tracing.name_server_span(scope.get("method", "GET"), route)
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-correlation-id", cid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.observe(template, method, status, time.perf_counter() - started)
            reset_contextvars(**tokens)


def error_response(request: Request, exc: Exception) -> JSONResponse:
    """The problem+json answer to an error raised while handling `request` (one place for every
    route, FastAPI's and the direct ones)."""
    path = request.url.path
    if client_aborted(exc):
        # Counted with what the server answered (a stalled body's 408), else as the client's abort.
        status = request.scope.get(REFUSED_SCOPE_KEY, CLIENT_CLOSED_REQUEST)
        log.info("client_aborted" if status == CLIENT_CLOSED_REQUEST else "request_refused", status=status, path=path)
        return problem_response(status, "the client closed the connection", instance=path)
    if isinstance(exc, ProblemError):
        return problem_response(
            exc.status, exc.detail, title=exc.title, headers=exc.headers, extra=exc.extra, instance=path
        )
    if isinstance(exc, RequestValidationError):
        return problem_response(
            422, "the request does not match the contract", extra={"errors": schema_errors(exc)}, instance=path
        )
    if isinstance(exc, StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else _STATUS_TITLES.get(exc.status_code, "Error")
        return problem_response(exc.status_code, detail, headers=exc.headers, instance=path)
    # Only the class name is logged: exception text may echo input.
    log.error("unhandled_error", error_class=type(exc).__name__, path=path)
    return problem_response(500, "internal error", instance=path)


def client_aborted(exc: BaseException) -> bool:
    """Whether `exc` means the client went away mid-request: Starlette's ClientDisconnect, also
    when FastAPI re-raised it as a 400 while reading a body for a model."""
    return isinstance(exc, ClientDisconnect) or (
        isinstance(exc, StarletteHTTPException) and isinstance(exc.__cause__, ClientDisconnect)
    )


def _install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, exc)

    # ClientDisconnect has its own handler: the one for Exception runs in Starlette's outermost
    # middleware, which re-raises to the server (logged there as an error).
    for kind in (ProblemError, RequestValidationError, StarletteHTTPException, ClientDisconnect, Exception):
        app.add_exception_handler(kind, handle)


@dataclass(frozen=True, slots=True)
class DirectRoute:
    """A hot route: `methods` on exactly `path`, answered by `endpoint` (see the module's doc)."""

    path: str  # also the metrics' route template
    endpoint: Callable[[Request], Awaitable[Response]]
    methods: frozenset[str] = frozenset({"POST"})


def _route_path(scope: Scope) -> str:
    """The path the app routes on: without the `root_path` a proxy mounted the app under (as
    Starlette's router matches)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path


class DirectRoutes:
    """Pure ASGI: requests to a direct route's path go to its endpoint (405 for other methods),
    everything else to the app."""

    def __init__(self, app: ASGIApp, routes: Iterable[DirectRoute]) -> None:
        self.app = app
        self.routes = {route.path: route for route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(_route_path(scope)) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        request = Request(scope, receive, send)
        try:
            if scope["method"] not in route.methods:
                allow = ", ".join(sorted(route.methods))
                raise StarletteHTTPException(405, "Method Not Allowed", headers={"Allow": allow})
            response: Response = await route.endpoint(request)
        except Exception as exc:
            response = error_response(request, exc)
        await response(scope, receive, send)


class ServiceApp(FastAPI):
    """FastAPI with the platform's ContextMiddleware outermost (inside the OpenTelemetry server
    span when tracing is on), then the direct routes, then FastAPI's own stack (its error,
    telemetry and body-limit middlewares, the service's middlewares, the router).

    Outermost, so that every response carries the correlation id and is counted with its status:
    an unhandled error's 500 included, which FastAPI's error middleware renders outside the
    service's middlewares (added with `add_middleware`, ContextMiddleware had let that 500 go
    out with no X-Correlation-ID). Direct routes also skip FastAPI's three outer middlewares,
    which do nothing for them."""

    def __init__(self, metrics: HttpMetrics, direct_routes: tuple[DirectRoute, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.http_metrics, self.direct_routes = metrics, direct_routes

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        if self.direct_routes:
            app = DirectRoutes(app, self.direct_routes)
        app = ContextMiddleware(app, self.http_metrics)
        if tracing.enabled():
            app = tracing.server_spans(app)
        return app


def _freezing_start_up(
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None,
    settings: ServiceSettings | None = None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The metrics port (`settings.metrics_port`), the service's lifespan, then `gc.freeze()`:
    what start-up built (modules, compiled contracts, pools) lives as long as the process, so the
    cyclic collector stops walking it on every full collection (~150k objects in ingest, tens of
    ms a pass, paid by the requests in flight)."""

    @contextlib.asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if settings is not None and settings.metrics_port:
                from exchange.core.probes import ProbeServer  # it builds on this module

                probes = ProbeServer(f"{app.title}-metrics", settings.host, settings.metrics_port,
                                     app.state.registry, {}, reuse_port=True, count_requests=False)  # fmt: skip
                await probes.start()
                stack.push_async_callback(probes.stop)
            if lifespan is not None:
                await stack.enter_async_context(lifespan(app))
            gc.collect()
            gc.freeze()
            yield

    return run


def create_service_app(
    name: str,
    *,
    version: str = "1.0.0",
    readiness: Mapping[str, ReadinessCheck] | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    registry: CollectorRegistry | None = None,
    readiness_timeout: float = 2.0,
    direct_routes: Iterable[DirectRoute] = (),
    settings: ServiceSettings | None = None,
    count_requests: bool = True,
    **fastapi_kwargs: Any,
) -> FastAPI:
    """Build a service app with the platform's middleware, error handling and probes.

    `readiness` maps a dependency name to an async check that raises when it is unreachable;
    checks may also be added later through `app.state.readiness`. `direct_routes` are served
    ahead of FastAPI's router (see the module's doc). `settings` are the service's: outside
    ENV=local `/metrics` and the API docs are not served here, and with METRICS_PORT `/metrics`
    is served there (without `settings`, as in a worker's probe server, `/metrics` is here).
    `count_requests=False` keeps this app's request metrics out of `registry` (a metrics port
    serving another app's registry).
    """
    registry = registry or CollectorRegistry()
    internals_here = settings is None or settings.is_local
    if not internals_here:
        fastapi_kwargs |= {"docs_url": None, "redoc_url": None, "openapi_url": None}
    # FastAPI's native OpenTelemetry hooks look up the global providers on every request (~1.3 %
    # of ingest's CPU); the platform's server span is the ASGI instrumentation's (ServiceApp).
    fastapi_kwargs.setdefault("telemetry", {"tracing": False, "metrics": False, "logs": False})
    # A process of several (WEB_CONCURRENCY) builds its app here: its tracing too (idempotent).
    tracing.configure_tracing(name.removeprefix("exchange-"))
    app = ServiceApp(
        HttpMetrics(registry if count_requests else CollectorRegistry()),
        tuple(direct_routes),
        title=name,
        version=version,
        lifespan=_freezing_start_up(lifespan, settings),
        **fastapi_kwargs,
    )
    app.state.registry = registry
    app.state.readiness = dict(readiness or {})
    _install_error_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        checks: dict[str, ReadinessCheck] = app.state.readiness
        results: dict[str, str] = {}

        async def run(check_name: str, check: ReadinessCheck) -> None:
            try:
                await asyncio.wait_for(check(), timeout=readiness_timeout)
                results[check_name] = "ok"
            except Exception as exc:  # any failure means not ready
                results[check_name] = f"unavailable ({type(exc).__name__})"

        await asyncio.gather(*(run(n, c) for n, c in checks.items()))
        ready = all(v == "ok" for v in results.values())
        if ready:
            return JSONResponse({"status": "ready", "checks": results})
        return problem_response(
            503, "dependencies unavailable", extra={"checks": results}, headers={"Retry-After": "5"}
        )

    if internals_here:

        @app.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            return Response(exposition(registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def read_body_limited(request: Request, limit: int) -> bytes:
    """Read the request body, refusing with 413 past `limit` bytes (header or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


ACCEPTED_CODINGS = "gzip, identity"
"""The request content codings a body may arrive in (`Accept-Encoding` of a 415, RFC 7694)."""
_OFF_LOOP_BYTES = 256 * 1024  # gzip work on more bytes than this (to inflate or to deflate) runs in a thread


def content_coding(request: Request) -> str:
    """The body's content coding (RFC 9110 §8.4): `identity` or `gzip`. Any other coding, or
    more than one, is 415 with `Accept-Encoding` naming what is accepted (RFC 7694)."""
    codings = [c.strip().lower() for v in request.headers.getlist("content-encoding") for c in v.split(",")]
    codings = [c for c in codings if c not in ("", "identity")]
    if not codings:
        return "identity"
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip"):
        return "gzip"
    raise UnsupportedMediaType(
        f"Content-Encoding must be one of: {ACCEPTED_CODINGS}", headers={"Accept-Encoding": ACCEPTED_CODINGS}
    )


async def decoded_body(coding: str, body: bytes, limit: int) -> bytes:
    """`body` with its content coding removed: 413 past `limit` decoded bytes, 400 when it is not
    what the coding says."""
    if coding == "identity":
        return body
    return await _gzip_work(len(body), gunzip_limited, body, limit)


async def _gzip_work(size: int, fn: Callable[..., bytes], *args: Any) -> bytes:
    """`fn(*args)`, in a thread when it works on more than _OFF_LOOP_BYTES (zlib lets go of the
    GIL), so a large body does not stall the event loop."""
    return await asyncio.to_thread(fn, *args) if size > _OFF_LOOP_BYTES else fn(*args)


GZIP_MAX_MEMBERS = 4096
"""Most gzip members (RFC 1952 §2.2) one body may hold: bgzip writes one per 64 KiB, so a 256 MiB
body; each member costs a fresh inflater, so many tiny ones are refused (413) before their count
costs CPU."""
_GZIP_READS = (64, 64 * 1024)  # first and largest slice of input a member's inflater is given


def gunzip_limited(data: bytes, limit: int, max_members: int = GZIP_MAX_MEMBERS) -> bytes:
    """Inflate gzip `data` (one member or several, RFC 1952), never past `limit` + 1 bytes, so a
    small body that inflates to gigabytes costs no more than the limit: PayloadTooLarge past
    `limit` or `max_members`, BadRequest for anything that is not whole gzip (no content in the
    message).

    Linear in `data`: zlib copies the input left over after a member ends (`unused_data`), so
    handing it all of the rest at each member made a body of many members cost the square of its
    size. Each member is given slices of a memoryview instead, starting small and doubling, so
    the leftover copied stays within about twice the member's size."""
    view = memoryview(data)
    out = bytearray()
    pos = members = 0
    while True:
        members += 1
        if members > max_members:
            raise PayloadTooLarge(f"the body has more than {max_members} gzip members")
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header and trailer
        step = _GZIP_READS[0]
        while not inflater.eof:
            chunk = view[pos : pos + step]
            if not chunk:
                raise BadRequest("the body is not valid gzip (truncated)")
            try:
                out += inflater.decompress(chunk, limit + 1 - len(out))
            except zlib.error:
                raise BadRequest("the body is not valid gzip") from None
            if len(out) > limit:
                raise PayloadTooLarge(f"the decoded body exceeds {limit} bytes")
            pos += len(chunk) - len(inflater.unused_data)
            step = min(2 * step, _GZIP_READS[1])
        if pos == len(view):
            return bytes(out)


GZIP_RESPONSE_MIN = 64 * 1024
"""Answers at least this large (a bulk request's per-line results) are gzip-compressed for a
client that accepts gzip; below it compressing costs more than it saves."""


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding value (RFC 9110 §12.5.3) allows gzip: listed with q > 0, or `*`
    with q > 0 and gzip not listed."""
    star = False
    for item in (accept_encoding or "").split(","):
        coding, *params = (part.strip().lower() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding in ("gzip", "x-gzip"):
            return q > 0
        if coding == "*":
            star = q > 0
    return star


async def compressed(request: Request, response: Response) -> Response:
    """`response` gzip-compressed (`Content-Encoding: gzip`, `Vary: Accept-Encoding`) when it is at
    least GZIP_RESPONSE_MIN bytes and the client accepts gzip; otherwise `response` itself."""
    body = bytes(response.body)
    if (
        len(body) < GZIP_RESPONSE_MIN
        or "content-encoding" in response.headers
        or not accepts_gzip(request.headers.get("accept-encoding"))
    ):
        return response
    data = await _gzip_work(len(body), gzip.compress, body, 5)
    headers = {k: v for k, v in response.headers.items() if k != "content-length"}
    headers |= {"content-encoding": "gzip", "vary": "Accept-Encoding"}
    return Response(data, response.status_code, headers)


__all__ = [
    "ACCEPTED_CODINGS",
    "CLIENT_CLOSED_REQUEST",
    "CORRELATION_HEADER",
    "GZIP_MAX_MEMBERS",
    "GZIP_RESPONSE_MIN",
    "PROBLEM_JSON",
    "DirectRoute",
    "ReadinessCheck",
    "accepts_gzip",
    "client_aborted",
    "compressed",
    "content_coding",
    "create_service_app",
    "decoded_body",
    "error_response",
    "gunzip_limited",
    "problem_response",
    "read_body_limited",
]
