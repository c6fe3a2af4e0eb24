"""Fixtures of the query suite: a database holding what the REAL normalizer made of the Synthea data
for two tenants, the read-only role, and the query app in-process with a JWKS issuer.

The normalizer is driven through its own code path (pipeline → tokenizer over HTTP → store),
without Kafka: raw NDJSON objects go to S3 as ingest writes them, one `record.ingested.v1`
event per line is handed to `Pipeline.prepare()`, and `write_batch()` writes canonical rows in
one transaction per batch, exactly as the worker does after a poll.

Tenant `acme` sends every Synthea file plus a few synthetic Observations (the sample has none) and
a few resources of types not modelled (kept raw-only) about the same patient;
tenant `beta` sends the same Patients and their Immunizations: same people, so same tokens, so
the same subjects, linked across the two sources.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import uvicorn
from aiobotocore.session import get_session
from asgi_lifespan import LifespanManager

from exchange.core.storage import content_key
from exchange_devtools.engines.base import free_port
from exchange_devtools.testdata import SYNTHEA_DIR as SYNTHEA
from exchange_devtools.testdata import unmodelled_resources, us_core_resources

REPO = Path(__file__).resolve().parents[3]
ACME, BETA, OTHER = "acme", "beta", "gamma"
ROLE_PASSWORD = "query-test-role-password-7f3a"
ID_KEY = b"query-test-canonical-id-key"
ACME_FILES = ("Patient", "Encounter", "Condition", "Immunization", "AllergyIntolerance", "Procedure")
BETA_FILES = ("Patient", "Immunization")


def synthea(resource_type: str) -> list[bytes]:
    return [line for line in (SYNTHEA / f"{resource_type}.ndjson").read_bytes().splitlines() if line.strip()]


def synthetic_observations(patient_id: str) -> list[bytes]:
    """Observations for one Synthea patient (made up here: codes and values only, no PII)."""
    loinc = "http://loinc.org"
    docs = [
        {"resourceType": "Observation", "id": f"obs-bp-{i}", "status": "final",
         "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                   "code": "vital-signs"}]}],
         "code": {"coding": [{"system": loinc, "code": "8480-6"}]}, "subject": {"reference": f"Patient/{patient_id}"},
         "effectiveDateTime": f"2020-0{i}-15T10:00:00Z",
         "valueQuantity": {"value": 120 + i, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
        for i in range(1, 4)
    ] + [{"resourceType": "Observation", "id": "obs-smoking", "status": "final",
          "code": {"coding": [{"system": loinc, "code": "72166-2"}]}, "subject": {"reference": f"Patient/{patient_id}"},
          "effectiveDateTime": "2021-06-01",
          "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "266919005"}]}}]  # fmt: skip
    return [orjson.dumps(d) for d in docs]


@dataclass
class Canonical:
    """The database the normalizer filled, and what the tests need to know about it."""

    admin_dsn: str
    query_dsn: str
    database: str
    patient_ids: list[str]  # Synthea Patient ids, in file order
    observed_patient: str  # the Synthea patient (under 90) with synthetic Observations
    lines: dict[tuple[str, str], int]  # (tenant, resource type) → lines sent

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def tokenizer_for_query() -> Iterator[str]:
    """The real tokenizer app (ENV=local: `Bearer dev`) served by uvicorn in a thread."""
    from exchange.tokenizer.app import create_app
    from exchange.tokenizer.settings import TokenizerSettings

    settings = TokenizerSettings(ENV="local", TOKENIZATION_SECRET="query-test-secret-0123456789abcdef")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "tokenizer did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


async def _normalize(dsn: str, s3_kwargs: dict[str, Any], bucket: str, tokenizer_url: str,
                     sends: list[tuple[str, str, list[bytes]]]) -> None:  # fmt: skip
    """Run the normalizer's pipeline and store on every line of `sends` (tenant, type, lines)."""
    from exchange.normalizer.pipeline import Message, Pipeline
    from exchange.normalizer.raw import RawObjects
    from exchange.normalizer.store import write_batch
    from exchange.normalizer.tokenizer_client import TokenizerClient

    messages: list[Message] = []
    async with get_session().create_client("s3", **s3_kwargs) as s3:
        for tenant, kind, lines in sends:
            body = b"\n".join(lines) + b"\n"
            key, digest = content_key(f"raw/{tenant}", body)
            await s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/fhir+ndjson")
            for n, _ in enumerate(lines, start=1):
                event = {
                    "event_id": str(uuid.uuid4()), "event_type": "record.ingested.v1", "record_id": str(uuid.uuid4()),
                    "tenant": tenant, "source_format": "fhir", "record_type": kind, "schema_version": "fhir-r4",
                    "object": {"bucket": bucket, "key": key, "sha256": digest, "size": len(body),
                               "content_type": "application/fhir+ndjson"},
                    "line": n,
                    "received_at": datetime(2024, 1 + len(messages) % 12, 1 + n % 28, tzinfo=UTC).isoformat(),
                    "correlation_id": uuid.uuid4().hex,
                }  # fmt: skip
                headers = [("event_id", event["event_id"].encode())]
                messages.append(Message("record.ingested.v1", 0, len(messages), None, orjson.dumps(event), headers))
        tokenizer = TokenizerClient(tokenizer_url, "dev")
        pipeline = Pipeline(RawObjects(s3, 64 * 1024 * 1024), tokenizer, ID_KEY)
        conn = await asyncpg.connect(dsn)
        for typ in ("json", "jsonb"):  # as exchange.core.db's pool does for the worker
            await conn.set_type_codec(typ, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
                                      schema="pg_catalog")  # fmt: skip
        try:
            for start in range(0, len(messages), 500):
                prepared = await pipeline.prepare(messages[start : start + 500], set())
                assert not prepared.poison, [(m.offset, e.error_class, str(e)) for m, e in prepared.poison]
                async with conn.transaction():
                    await write_batch(conn, prepared.outcomes, "record.normalized.v1")
        finally:
            await conn.close()
            await tokenizer.aclose()


@pytest.fixture(scope="session")
async def canonical(postgres: Any, s3: Any, tokenizer_for_query: str) -> AsyncIterator[Canonical]:
    """A fresh database: canonical schema, the normalizer's output for acme and beta, the read-only role."""
    from exchange.normalizer.migrations import upgrade
    from exchange.query.roles import ensure_readonly_role

    suffix = uuid.uuid4().hex[:10]
    database = f"query_{suffix}"
    admin = await asyncpg.connect(postgres.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    dsn = postgres.dsn_for(database)
    await upgrade(dsn)
    bucket = f"query-raw-{suffix}"
    kwargs = s3.client_kwargs()
    async with get_session().create_client("s3", **kwargs) as client:
        await client.create_bucket(Bucket=bucket)
    patients = synthea("Patient")
    patient_ids = [orjson.loads(p)["id"] for p in patients]
    # Observations go to the first patient under 90 (a 90+ subject's facts keep no year: ADR 0014).
    observed = next(orjson.loads(p)["id"] for p in patients if int(orjson.loads(p)["birthDate"][:4]) > 1940)
    sends = [(ACME, kind, synthea(kind)) for kind in ACME_FILES]
    sends.append((ACME, "Observation", synthetic_observations(observed)))
    sends += [(ACME, r["resourceType"], [orjson.dumps(r)]) for r in unmodelled_resources(observed)]  # raw-only
    encounter = next(e["id"] for e in map(orjson.loads, synthea("Encounter")) if observed in e["subject"]["reference"])
    sends += [(ACME, r["resourceType"], [orjson.dumps(r)]) for r in us_core_resources(observed, encounter)]
    sends += [(BETA, kind, synthea(kind)) for kind in BETA_FILES]
    await _normalize(dsn, kwargs, bucket, tokenizer_for_query, sends)
    role = f"query_ro_{suffix}"
    await ensure_readonly_role(dsn, role, ROLE_PASSWORD)
    query_dsn = f"postgresql://{role}:{ROLE_PASSWORD}@{postgres.host}:{postgres.port}/{database}"
    lines = {(tenant, kind): len(ls) for tenant, kind, ls in sends}
    yield Canonical(dsn, query_dsn, database, patient_ids, observed, lines)


@dataclass
class Api:
    """The query app in-process and a token factory."""

    client: httpx.AsyncClient
    app: Any
    issuer: Any

    def token(self, tenant: str = ACME, scope: str = "query:read", roles: list[str] | None = None) -> str:
        return str(self.issuer.token(tenant=tenant, sub=f"client-{tenant}", scope=scope, roles=roles or []))

    async def gql(self, query: str, variables: dict[str, Any] | None = None, *, tenant: str = ACME,
                  roles: list[str] | None = None, token: str | None = None) -> dict[str, Any]:  # fmt: skip
        """POST a query; returns the JSON body (asserting HTTP 200)."""
        response = await self.post(query, variables, token=token or self.token(tenant, roles=roles))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def post(self, query: str, variables: dict[str, Any] | None = None, *, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)

    async def statements(self) -> float:
        """The app's `query_sql_statements_total` so far."""
        value = self.app.state.registry.get_sample_value("query_sql_statements_total")
        return float(value or 0)


def query_settings(canonical: Canonical, jwks_server: Any, **extra: Any) -> Any:
    from exchange.query.settings import QuerySettings

    return QuerySettings(**{"ENV": "test", "DATABASE_URL": canonical.query_dsn, **jwks_server.env(), **extra})


@pytest.fixture(scope="session")
async def api(canonical: Canonical, jwks_server: Any) -> AsyncIterator[Api]:
    from exchange.query.app import create_app

    app = create_app(query_settings(canonical, jwks_server))
    async with LifespanManager(app, startup_timeout=30):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://query.test") as client:
            yield Api(client, app, jwks_server)
