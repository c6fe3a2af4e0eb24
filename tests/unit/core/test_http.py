"""The service app factory: problem+json everywhere, correlation ids, probes and metrics."""

from __future__ import annotations

import httpx
import pytest
from fastapi import Request
from pydantic import BaseModel

from exchange.core.errors import Conflict
from exchange.core.http import PROBLEM_JSON, create_service_app, read_body_limited


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
