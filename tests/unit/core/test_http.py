"""The service app factory: problem+json everywhere, correlation ids, probes and metrics."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from fastapi import Request, Response
from pydantic import BaseModel

from exchange.core.errors import Conflict
from exchange.core.http import PROBLEM_JSON, DirectRoute, create_service_app, read_body_limited


class Item(BaseModel):
    name: str
    count: int


@pytest.fixture
def app():
    ready = {"ok": True}

    async def check() -> None:
        if not ready["ok"]:
            raise ConnectionError("down")

    app = create_service_app("test", readiness={"db": check})
    app.state.flag = ready

    @app.post("/items")
    async def create(item: Item) -> dict:
        return {"ok": item.count}

    @app.post("/conflict")
    async def conflict() -> dict:
        raise Conflict("in flight", headers={"Retry-After": "1"})

    @app.post("/limited")
    async def limited(request: Request) -> dict:
        return {"size": len(await read_body_limited(request, 10))}

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("secret canary 987-65-4329")

    return app


@pytest.fixture
async def client(app):
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_validation_errors_are_problem_json_with_pointers_and_no_values(client):
    r = await client.post("/items", json={"name": "Canary Name", "count": "not-a-number-canary"})
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM_JSON
    body = r.json()
    assert body["status"] == 422
    assert {"pointer": "/count", "reason": "int_parsing"} in body["errors"]
    assert "canary" not in r.text.lower()


async def test_problem_errors_keep_status_and_headers(client):
    r = await client.post("/conflict")
    assert r.status_code == 409
    assert r.headers["retry-after"] == "1"
    assert r.json()["title"] == "Conflict"


async def test_unknown_routes_are_problem_json(client):
    r = await client.get("/nope")
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM_JSON


async def test_body_limit_gives_413(client):
    assert (await client.post("/limited", content=b"12345")).json() == {"size": 5}
    r = await client.post("/limited", content=b"x" * 11)
    assert r.status_code == 413
    assert r.headers["content-type"] == PROBLEM_JSON


async def test_unhandled_errors_hide_their_text(client):
    r = await client.get("/boom")
    assert r.status_code == 500
    assert "987-65-4329" not in r.text and "RuntimeError" not in r.text


async def test_an_unhandled_error_answers_with_the_correlation_id_and_is_counted_as_500(client):
    # FastAPI's error middleware renders it; the platform's context middleware is outside it
    r = await client.get("/boom", headers={"X-Correlation-ID": "boom-1"})
    assert (r.status_code, r.headers["content-type"]) == (500, PROBLEM_JSON)
    assert r.headers["x-correlation-id"] == "boom-1"
    assert r.json()["correlation_id"] == "boom-1"
    text = (await client.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/boom",status="500"} 1.0' in text


async def test_correlation_id_is_echoed_or_generated(client):
    r = await client.get("/healthz", headers={"X-Correlation-ID": "abc-123"})
    assert r.headers["x-correlation-id"] == "abc-123"
    generated = (await client.get("/healthz")).headers["x-correlation-id"]
    assert len(generated) == 32


async def test_readyz_reports_each_dependency(app, client):
    assert (await client.get("/readyz")).json()["checks"] == {"db": "ok"}
    app.state.flag["ok"] = False
    r = await client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["db"].startswith("unavailable")


async def test_metrics_count_requests_by_route_template(client):
    await client.post("/items", json={"name": "a", "count": 1})
    text = (await client.get("/metrics")).text
    assert 'http_requests_total{method="POST",route="/items",status="200"} 1.0' in text
    assert "http_request_duration_seconds_bucket" in text


async def test_what_start_up_built_is_frozen_out_of_the_cyclic_collector() -> None:
    import contextlib
    import gc

    started: list[bool] = []

    @contextlib.asynccontextmanager
    async def lifespan(_app):  # the service's own start-up runs first
        started.append(True)
        yield

    app = create_service_app("frozen", lifespan=lifespan)
    gc.unfreeze()
    try:
        async with app.router.lifespan_context(app):
            assert started == [True]
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


@pytest.fixture
async def direct_client():
    """An app with two direct routes next to an ordinary FastAPI route."""

    async def echo(request: Request) -> Response:
        body = await read_body_limited(request, 10)
        return Response(body, 202, {"X-Path": request.url.path}, media_type="application/json")

    async def fails(request: Request) -> Response:
        if request.headers.get("kind") == "conflict":
            raise Conflict("in flight", headers={"Retry-After": "1"})
        raise RuntimeError("secret canary 987-65-4329")

    app = create_service_app("direct", direct_routes=[DirectRoute("/echo", echo), DirectRoute("/fails", fails)])

    @app.get("/plain")
    async def plain() -> dict:
        return {"plain": True}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_direct_routes_answer_with_the_correlation_id_and_leave_other_routes_to_the_app(direct_client):
    r = await direct_client.post("/echo", content=b'{"a":1}', headers={"X-Correlation-ID": "abc-123"})
    assert (r.status_code, r.content, r.headers["x-path"]) == (202, b'{"a":1}', "/echo")
    assert r.headers["x-correlation-id"] == "abc-123"
    assert (await direct_client.get("/plain")).json() == {"plain": True}
    assert (await direct_client.post("/echo/more")).status_code == 404


async def test_direct_routes_refuse_other_methods_with_405_and_allow(direct_client):
    r = await direct_client.get("/echo")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert r.headers["content-type"] == PROBLEM_JSON


async def test_direct_route_errors_are_rendered_as_the_app_renders_them(direct_client):
    r = await direct_client.post("/echo", content=b"x" * 11)
    assert (r.status_code, r.headers["content-type"]) == (413, PROBLEM_JSON)
    assert r.json()["instance"] == "/echo"
    r = await direct_client.post("/fails", headers={"kind": "conflict"})
    assert (r.status_code, r.headers["retry-after"], r.json()["title"]) == (409, "1", "Conflict")
    r = await direct_client.post("/fails")
    assert (r.status_code, r.headers["content-type"]) == (500, PROBLEM_JSON)
    assert "987-65-4329" not in r.text and "RuntimeError" not in r.text
    assert r.json()["correlation_id"] == r.headers["x-correlation-id"]


async def test_direct_routes_are_counted_by_their_path(direct_client):
    await direct_client.post("/echo", content=b"{}")
    await direct_client.get("/echo")
    text = (await direct_client.get("/metrics")).text
    assert 'http_requests_total{method="POST",route="/echo",status="202"} 1.0' in text
    assert 'http_requests_total{method="GET",route="/echo",status="405"} 1.0' in text


async def test_direct_routes_match_below_the_root_path_a_proxy_mounts_the_app_under():
    async def echo(request: Request) -> Response:
        return Response(b"{}", 202, media_type="application/json")

    app = create_service_app("mounted", direct_routes=[DirectRoute("/echo", echo)])
    transport = httpx.ASGITransport(app=app, root_path="/exchange")
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.post("/exchange/echo")).status_code == 202
        assert (await c.post("/exchange/echoes")).status_code == 404


async def _abort_mid_body(app, path: str) -> list[dict]:
    """Send `path` a body that stops halfway because the client went away (what uvicorn hands the
    app then); return what the app tried to send."""
    events = iter([{"type": "http.request", "body": b'{"n', "more_body": True}, {"type": "http.disconnect"}])
    sent: list[dict] = []

    async def receive() -> dict:
        return next(events)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"8")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("path", ["/limited", "/items"])
async def test_a_client_that_goes_away_mid_request_is_counted_499_and_logged_at_info_not_as_an_error(
    app, client, path, capsys
):
    from exchange.core.logging import configure_logging

    configure_logging("test-service", "DEBUG", json=True)
    try:
        sent = await _abort_mid_body(app, path)
    finally:
        logging.getLogger().handlers.clear()
    assert sent[0]["status"] == 499
    text = (await client.get("/metrics")).text
    assert f'http_requests_total{{method="POST",route="{path}",status="499"}} 1.0' in text
    assert 'status="500"' not in text and 'status="400"' not in text
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert [(line["event"], line["level"]) for line in lines] == [("client_aborted", "info")]


async def test_a_client_that_goes_away_from_a_direct_route_is_counted_499(direct_client):
    sent = await _abort_mid_body(direct_client._transport.app, "/echo")
    assert sent[0]["status"] == 499
    text = (await direct_client.get("/metrics")).text
    assert 'http_requests_total{method="POST",route="/echo",status="499"} 1.0' in text


def _internals_app(env: str, **settings: str):
    from exchange.core.settings import ServiceSettings

    return create_service_app("internals", settings=ServiceSettings(ENV=env, **settings))


@pytest.mark.parametrize("path", ["/metrics", "/docs", "/redoc", "/openapi.json"])
async def test_outside_local_metrics_and_the_api_docs_are_not_served_on_the_service_port(path):
    for env, expected in (("production", 404), ("staging", 404), ("local", 200)):
        transport = httpx.ASGITransport(app=_internals_app(env))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get(path)
        assert r.status_code == expected, env
        if expected == 404:
            assert r.headers["content-type"] == PROBLEM_JSON


async def test_metrics_are_served_on_a_port_of_their_own_and_only_metrics_and_probes_there():
    from asgi_lifespan import LifespanManager

    from exchange_devtools.engines.base import free_port

    port = free_port()
    app = _internals_app("production", METRICS_PORT=str(port))
    async with LifespanManager(app), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        service = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        assert (await service.get("/healthz")).status_code == 200
        r = await c.get("/metrics")
        assert (r.status_code, r.headers["content-type"].split(";")[0]) == (200, "text/plain")
        assert 'http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in r.text  # the service's
        assert (await c.get("/healthz")).status_code == 200
        assert 'route="/metrics"' not in (await c.get("/metrics")).text  # its own requests are not counted
        for path in ("/docs", "/openapi.json", "/v1/ingest"):
            assert (await c.get(path)).status_code == 404
