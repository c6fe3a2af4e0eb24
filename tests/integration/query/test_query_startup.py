"""Query started before Postgres answers (Pods of a pipeline start together) waits for it and then
is ready, instead of crashing into CrashLoopBackOff."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from exchange.query.app import create_app
from exchange.query.settings import QuerySettings
from exchange_devtools.late_port import LatePort


async def test_query_started_before_postgres_waits_for_it_and_then_is_ready(postgres: Any, jwks_server: Any):
    with LatePort(postgres.port) as late:
        dsn = postgres.dsn.replace(f":{postgres.port}/", f":{late.port}/")
        app = create_app(QuerySettings(**{"ENV": "test", "DATABASE_URL": dsn, **jwks_server.env()}))
        starting = asyncio.create_task(LifespanManager(app, startup_timeout=30).__aenter__())
        await asyncio.sleep(1.5)  # the engine "comes up" after its client: nothing to wait on here
        assert not starting.done(), "query gave up (or pretended to start) before Postgres answered"
        late.open()
        manager = await starting
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://query.test") as client:
                ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
        finally:
            await manager.__aexit__(None, None, None)
