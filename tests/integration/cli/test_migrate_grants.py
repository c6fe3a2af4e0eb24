"""`exchange migrate`, run as the database owner the way the operator's migration Job runs it,
gives each service's login role exactly its share: ingest reads and writes `ingest.*`, the
normalizer `canonical.*` and `normalizer.*`, query only reads `canonical.*`; and the query role the
operator created LOGIN is still LOGIN afterwards."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from exchange.core.outbox import Outbox

EXCHANGE = str(Path(sys.executable).with_name("exchange"))
SERVICES = ("migrate", "ingest", "normalizer", "query")


@dataclass
class Cluster:
    """A database owned by the `migrate` role, migrated and granted; a DSN per service role."""

    roles: dict[str, str]
    dsns: dict[str, str]
    admin_dsn: str
    migrate_output: str


@pytest.fixture(scope="module")
async def cluster(postgres: Any) -> AsyncIterator[Cluster]:
    suffix = uuid.uuid4().hex[:8]
    database = f"grants_{suffix}"
    roles = {service: f"exchange_{service}_{suffix}" for service in SERVICES}
    password = secrets.token_urlsafe(24)
    admin = await asyncpg.connect(postgres.dsn)
    try:  # what the operator's role bootstrap script does on a fresh managed Postgres
        for role in roles.values():
            await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        await admin.execute(f'CREATE DATABASE "{database}" OWNER {roles["migrate"]}')
        others = ", ".join(roles[s] for s in ("ingest", "normalizer", "query"))
        await admin.execute(f'GRANT CONNECT ON DATABASE "{database}" TO {others}')
    finally:
        await admin.close()
    dsns = {
        service: f"postgresql://{role}:{password}@{postgres.host}:{postgres.port}/{database}"
        for service, role in roles.items()
    }
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_DB_ROLE", "_DB_PASSWORD"))}
    env.update(
        ENV="production",
        DATABASE_URL=dsns["migrate"],
        INGEST_DB_ROLE=roles["ingest"],
        NORMALIZER_DB_ROLE=roles["normalizer"],
        QUERY_DB_ROLE=roles["query"],
    )
    result = subprocess.run([EXCHANGE, "migrate"], capture_output=True, text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr
    again = subprocess.run([EXCHANGE, "migrate"], capture_output=True, text=True, timeout=300, env=env, check=False)
    assert again.returncode == 0, again.stderr  # idempotent
    yield Cluster(roles, dsns, postgres.dsn_for(database), result.stdout)


async def as_role(cluster: Cluster, service: str, fn: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    conn = await asyncpg.connect(cluster.dsns[service])
    try:
        assert await conn.fetchval("SELECT current_user") == cluster.roles[service]
        return await fn(conn)
    finally:
        await conn.close()


async def refused(conn: asyncpg.Connection, *statements: str) -> None:
    """Each statement is refused for lack of privilege."""
    for statement in statements:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)


async def test_migrate_reports_every_migration_and_grant(cluster: Cluster) -> None:
    for module in ("exchange.ingest.migrations", "exchange.normalizer.migrations", "exchange.query.roles"):
        assert f"granted: {module}" in cluster.migrate_output
    assert "migrated: exchange.ingest.migrations" in cluster.migrate_output


async def test_the_ingest_role_writes_ingest_and_cannot_read_canonical(cluster: Cluster) -> None:
    async def check(conn: asyncpg.Connection) -> None:
        record_id = uuid.uuid4()
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO ingest.outbox (event_id, record_id, tenant, topic, payload, correlation_id, traceparent)"
                " VALUES ($1, $2, 'acme', 't', '{}'::jsonb, 'c', 'tp')",
                uuid.uuid4(),
                record_id,
            )
            await conn.execute(
                "INSERT INTO ingest.audit (tenant, actor, action, record_id, correlation_id)"
                " VALUES ('acme', 'a', 'ingest', $1, 'c')",
                record_id,
            )
        assert await conn.fetchval("SELECT count(*) FROM ingest.outbox WHERE record_id = $1", record_id) == 1
        async with conn.transaction():  # the relay's pick, as this role (the trigger queued the row)
            assert record_id in [row["record_id"] for row in await conn.fetch(Outbox("ingest.outbox").pick_sql, 1000)]
        gated = Outbox("ingest.outbox", channel="ingest_outbox", notify_gate=True)
        for listening in (False, True):  # the relay's NOTIFY gate, as this role
            await conn.execute(gated.gate_sql, listening)
        await conn.execute(gated.quiesce_sql)
        assert await conn.fetchval("SELECT listening FROM ingest.outbox_listening") is True
        await refused(
            conn, "SELECT * FROM canonical.records", "SELECT * FROM normalizer.outbox", "CREATE TABLE ingest.x (x int)"
        )

    await as_role(cluster, "ingest", check)


@pytest.mark.parametrize("service", ["ingest", "normalizer"])
async def test_each_relay_role_prunes_its_outbox_through_the_created_at_index(cluster: Cluster, service: str) -> None:
    table = Outbox(f"{service}.outbox", retention_seconds=1.0)

    async def check(conn: asyncpg.Connection) -> None:
        indexes = await conn.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = 'outbox'"
            " AND indexname = 'outbox_created_at' AND indexdef LIKE '%(created_at)'",
            service,
        )
        assert indexes == 1
        assert await conn.execute(table.prune_sql, 1.0, 100) == "DELETE 0"  # the role may delete

    await as_role(cluster, service, check)


async def test_the_normalizer_role_writes_canonical_and_cannot_touch_ingest(cluster: Cluster) -> None:
    async def check(conn: asyncpg.Connection) -> None:
        record_id = uuid.uuid4()
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO canonical.records (id, tenant, source_format, record_type, schema_version,"
                " canonical_version, object_bucket, object_key, object_sha256, received_at)"
                " VALUES ($1, 'acme', 'fhir', 'Patient', 'fhir-r4', '1', 'b', 'k', $2, now())",
                record_id,
                "a" * 64,
            )
            await conn.execute(
                "INSERT INTO normalizer.outbox (event_id, record_id, topic, payload, correlation_id, traceparent)"
                " VALUES ($1, $2, 't', '{}'::jsonb, 'c', 'tp')",
                uuid.uuid4(),
                record_id,
            )
        assert await conn.fetchval("SELECT count(*) FROM canonical.records WHERE id = $1", record_id) == 1
        async with conn.transaction():  # the relay's pick, as this role (the trigger queued the row)
            picked = await conn.fetch(Outbox("normalizer.outbox").pick_sql, 1000)
            assert record_id in [row["record_id"] for row in picked]
        await refused(conn, "SELECT * FROM ingest.outbox", "SELECT * FROM ingest.audit", "DELETE FROM ingest.outbox")

    await as_role(cluster, "normalizer", check)


async def test_the_query_role_reads_canonical_and_nothing_else(cluster: Cluster) -> None:
    async def check(conn: asyncpg.Connection) -> None:
        assert await conn.fetchval("SELECT count(*) FROM canonical.records") >= 0
        await conn.execute("SET default_transaction_read_only = off")  # so the refusal below is the grant's
        await refused(
            conn, "DELETE FROM canonical.records", "SELECT * FROM normalizer.inbox", "SELECT * FROM ingest.outbox"
        )

    await as_role(cluster, "query", check)


async def test_the_operator_created_query_role_keeps_its_login(cluster: Cluster) -> None:
    admin = await asyncpg.connect(cluster.admin_dsn)
    try:
        can_login = await admin.fetchval("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", cluster.roles["query"])
    finally:
        await admin.close()
    assert can_login is True


async def test_a_rerun_by_a_superuser_without_a_password_keeps_the_login(cluster: Cluster) -> None:
    from exchange.query.roles import ensure_readonly_role

    await ensure_readonly_role(cluster.admin_dsn, cluster.roles["query"])
    await as_role(cluster, "query", lambda conn: conn.fetchval("SELECT count(*) FROM canonical.records"))
    assert await as_role(cluster, "query", lambda conn: conn.fetchval("SHOW default_transaction_read_only")) == "on"
