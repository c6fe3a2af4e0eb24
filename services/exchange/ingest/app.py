"""Wiring of the ingest service: settings → engines → routes. No logic here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from exchange.core import fhir_r4
from exchange.core.auth import JWTVerifier
from exchange.core.contracts import load_document
from exchange.core.db import create_pool, pool_readiness
from exchange.core.http import create_service_app
from exchange.core.retention import Pruner
from exchange.core.settings import load
from exchange.core.startup import until_up
from exchange.core.storage import bucket_readiness, ensure_bucket, s3_client
from exchange.ingest.idempotency import IdempotencyStore
from exchange.ingest.metrics import IngestMetrics
from exchange.ingest.migrations import upgrade_async
from exchange.ingest.relay import OutboxRelay
from exchange.ingest.retention import api_rules
from exchange.ingest.routes import ROUTES, IngestContext
from exchange.ingest.s3put import S3Putter
from exchange.ingest.settings import IngestSettings
from exchange.ingest.store import RecordStore
from exchange.ingest.validation import CONTRACT, fast_validator, schema_validator

CONTRACT_SCHEMAS = ("NativeEnvelopeV1", "NativeEnvelopeV2")
# Compiled at start; every other FHIR R4 type is compiled on its first record (~50 ms).
FHIR_WARM = ("Bundle", "Patient", "Encounter", "Condition", "Observation", "Immunization", "AllergyIntolerance",
             "Procedure")  # fmt: skip


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    """The ingest FastAPI app; engines are opened by its lifespan."""
    settings = settings or load(IngestSettings)
    for name in CONTRACT_SCHEMAS:  # compile the contract's schemas now: fail at start, not on a request
        schema_validator(name)
        fast_validator(name)
    for resource_type in FHIR_WARM:
        fhir_r4.validator(resource_type)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await upgrade_async(settings.database_url.get_secret_value())
        wait = settings.startup_wait_seconds
        pool = await until_up("postgres", lambda: create_pool(settings, generic_plans=True), wait)
        metrics = IngestMetrics(app.state.registry)
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(pool.close)
            s3 = await stack.enter_async_context(s3_client(settings))
            if settings.create_bucket_on_start:
                await until_up("s3", lambda: ensure_bucket(s3, settings.s3_bucket_raw), wait)
            keys = IdempotencyStore(
                pool, settings.ingest_idempotency_ttl_seconds, settings.ingest_idempotency_lock_seconds
            )
            putter = S3Putter(settings)  # the hot-path PUT (see s3put.py); aiobotocore for the rest
            stack.push_async_callback(putter.close)
            store = RecordStore(pool, putter, settings.s3_bucket_raw, settings.ingest_raw_prefix, settings.ingest_topic)
            keys.claims.observe = metrics.db_batch.labels("claim").observe
            store.commits.observe = metrics.db_batch.labels("commit").observe
            app.state.ingest = IngestContext(settings, keys, store, metrics)
            # Ready = can accept records: Postgres and S3. Not Kafka: the outbox holds events while
            # it is away, and an unready ingest would be taken out of its Service just then.
            app.state.readiness.update(postgres=pool_readiness(pool), s3=bucket_readiness(s3, settings.s3_bucket_raw))
            stop = asyncio.Event()
            tasks = [asyncio.create_task(metrics.refresh_forever(pool))]
            if settings.ingest_idempotency_purge_seconds > 0:  # expired keys and audit rows (ADR 0013)
                pruner = Pruner(
                    pool, api_rules(settings), settings.ingest_idempotency_purge_seconds, metrics=metrics.tables,
                    also={"ingest.idempotency_keys": metrics.keys_purged.inc},
                )  # fmt: skip
                tasks.append(asyncio.create_task(pruner.run(stop)))
            if settings.ingest_relay_in_process:
                relay = OutboxRelay(settings, pool, metrics)
                stack.push_async_callback(relay.close)
                tasks.append(asyncio.create_task(relay.run(stop)))
            try:
                yield
            finally:
                stop.set()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    app = create_service_app("exchange-ingest", lifespan=lifespan, direct_routes=ROUTES, settings=settings)
    app.state.verifier = JWTVerifier(settings)
    app.openapi = lambda: load_document(CONTRACT)  # type: ignore[method-assign]  # the contract is served as is
    return app
