"""Ingest started before Postgres answers (Pods of a pipeline start together) waits for it and
then serves, instead of crashing into CrashLoopBackOff; it gives up after STARTUP_WAIT_SECONDS.
Told to leave the bucket to `exchange bootstrap` (as on a cluster), it is not ready until it exists."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from aiobotocore.session import get_session
from asgi_lifespan import LifespanManager

from exchange.core.errors import DependencyError
from exchange.ingest.app import create_app
from exchange_devtools.late_port import LatePort

from .conftest import make_settings


def through(postgres: Any, late: LatePort) -> str:
    return postgres.dsn.replace(f":{postgres.port}/", f":{late.port}/")


async def test_ingest_started_before_postgres_waits_for_it_and_then_is_ready(ingest_env, postgres):
    with LatePort(postgres.port) as late:
        app = create_app(make_settings(ingest_env, DATABASE_URL=through(postgres, late)))
        starting = asyncio.create_task(LifespanManager(app, startup_timeout=30).__aenter__())
        await asyncio.sleep(1.5)  # the engine "comes up" after its client: nothing to wait on here
        assert not starting.done(), "ingest gave up (or pretended to start) before Postgres answered"
        late.open()
        manager = await starting
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ingest.test") as client:
                ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["postgres"] == "ok"
        finally:
            await manager.__aexit__(None, None, None)


async def test_ingest_gives_up_on_a_postgres_that_never_answers_after_the_startup_wait(ingest_env, postgres):
    with LatePort(postgres.port) as never:
        app = create_app(make_settings(ingest_env, DATABASE_URL=through(postgres, never), STARTUP_WAIT_SECONDS=2))
        started = time.monotonic()
        with pytest.raises(DependencyError, match="postgres"):
            async with LifespanManager(app, startup_timeout=30):
                pass
    assert 2 <= time.monotonic() - started < 15


async def test_ingest_that_leaves_the_bucket_to_bootstrap_is_not_ready_until_the_bucket_exists(ingest_env, s3):
    bucket = f"later-{uuid.uuid4().hex[:8]}"
    settings = make_settings(ingest_env, ENV="local", S3_BUCKET_RAW=bucket, INGEST_CREATE_BUCKET_ON_START=False)
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest.test") as client:
            before = await client.get("/readyz")
            assert before.status_code == 503
            assert before.json()["checks"]["s3"].startswith("unavailable")
            async with get_session().create_client("s3", **s3.client_kwargs()) as admin:
                await admin.create_bucket(Bucket=bucket)  # what the bootstrap Job does
            assert (await client.get("/readyz")).status_code == 200
