"""Bounded tables (ADR 0013) on a database migrated by `exchange migrate` as its owner, each service
working as its own login role: every retention deletes only expired rows and leaves the rest;
the audit log stays append-only for the service roles (and for its owner within the 30-day floor);
the gauges report each table's size and oldest row; `exchange retention run` deletes or, dry,
counts the same rows, and refuses bad settings with one line."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from exchange.core.retention import Pruner, TableMetrics, enforce, stats
from exchange.ingest import retention as ingest_retention
from exchange.ingest.settings import RetentionSettings as IngestRetention
from exchange.normalizer import retention as normalizer_retention
from exchange.normalizer.settings import RetentionSettings as NormalizerRetention

EXCHANGE = str(Path(sys.executable).with_name("exchange"))
SERVICES = ("migrate", "ingest", "normalizer", "query")
DAY = 86_400


@dataclass
class Cluster:
    roles: dict[str, str]
    dsns: dict[str, str]


@pytest.fixture(scope="module")
async def cluster(postgres: Any) -> AsyncIterator[Cluster]:
    """A database owned by a `migrate` role (not a superuser), migrated and granted by `exchange migrate`."""
    suffix = uuid.uuid4().hex[:8]
    database = f"bounded_{suffix}"
    roles = {service: f"exchange_{service}_{suffix}" for service in SERVICES}
    password = secrets.token_urlsafe(24)
    admin = await asyncpg.connect(postgres.dsn)
    try:
        for role in roles.values():
            await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        await admin.execute(f'CREATE DATABASE "{database}" OWNER {roles["migrate"]}')
    finally:
        await admin.close()
    dsns = {
        service: f"postgresql://{role}:{password}@{postgres.host}:{postgres.port}/{database}"
        for service, role in roles.items()
    }
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_DB_ROLE", "_DB_PASSWORD"))}
    env.update(ENV="production", DATABASE_URL=dsns["migrate"], INGEST_DB_ROLE=roles["ingest"],
               NORMALIZER_DB_ROLE=roles["normalizer"], QUERY_DB_ROLE=roles["query"])  # fmt: skip
    result = subprocess.run([EXCHANGE, "migrate"], capture_output=True, text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr
    yield Cluster(roles, dsns)


@pytest.fixture
async def ingest_pool(cluster: Cluster) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(cluster.dsns["ingest"], min_size=1, max_size=2)
    assert pool is not None
    await _as(cluster, "migrate", "DELETE FROM ingest.idempotency_keys")
    try:
        yield pool
    finally:
        await pool.close()


async def _as(cluster: Cluster, service: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(cluster.dsns[service])
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _audit(pool: asyncpg.Pool, days_ago: float, count: int, action: str) -> None:
    """Audit rows written `days_ago` (oldest first, as ids and times grow together)."""
    await pool.execute(
        "INSERT INTO ingest.audit (at, tenant, actor, action, record_id, correlation_id)"
        " SELECT now() - make_interval(secs => $1), 'acme', 'a', $2, gen_random_uuid(), 'c'"
        " FROM generate_series(1, $3)",
        days_ago * DAY,
        action,
        count,
    )


async def _key(pool: asyncpg.Pool, expires_in: float) -> str:
    key = f"k-{uuid.uuid4()}"
    await pool.execute(
        "INSERT INTO ingest.idempotency_keys"
        " (tenant, key, fingerprint, owner, state, locked_until, expires_at, created_at)"
        " VALUES ('acme', $1, '\\x00', gen_random_uuid(), 'completed', now(), now() + make_interval(secs => $2),"
        " now() + make_interval(secs => $2) - interval '1 day')",
        key,
        expires_in,
    )
    return key


async def _actions(pool: asyncpg.Pool, *actions: str) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT action, count(*) AS n FROM ingest.audit WHERE action = ANY($1::text[]) GROUP BY action", list(actions)
    )
    return {row["action"]: row["n"] for row in rows}


def _ingest_settings(cluster: Cluster, **env: str) -> IngestRetention:
    return IngestRetention(DATABASE_URL=cluster.dsns["ingest"], ENV="local", **env)


async def test_the_ingest_rules_delete_only_expired_keys_and_audit_rows_and_report_size_and_age(
    cluster: Cluster, ingest_pool: asyncpg.Pool
) -> None:
    tag = uuid.uuid4().hex[:8]
    await _audit(ingest_pool, 400, 3, f"old-{tag}")
    await _audit(ingest_pool, 40, 2, f"young-{tag}")
    expired, live = await _key(ingest_pool, -60), await _key(ingest_pool, 3600)
    settings = _ingest_settings(cluster, INGEST_AUDIT_RETENTION_SECONDS=str(365 * DAY))
    registry = CollectorRegistry()
    pruner = Pruner(ingest_pool, ingest_retention.api_rules(settings), every=60, metrics=TableMetrics(registry))

    counts = await pruner.round()  # as the ingest role: the audit rows go through ingest.audit_prune

    assert counts["ingest.idempotency_keys"] == 1 and counts["ingest.audit"] >= 3
    assert await _actions(ingest_pool, f"old-{tag}", f"young-{tag}") == {f"young-{tag}": 2}
    keys = {row["key"] for row in await ingest_pool.fetch("SELECT key FROM ingest.idempotency_keys")}
    assert expired not in keys and live in keys
    assert (
        registry.get_sample_value("exchange_retention_deleted_rows_total", {"table": "ingest.audit"})
        == counts["ingest.audit"]
    )
    # the oldest audit row left is the 40-day-old one; the live key was created a day before it expires
    age = registry.get_sample_value("exchange_table_oldest_row_age_seconds", {"table": "ingest.audit"})
    assert age is not None and 40 * DAY - 60 < age < 40 * DAY + 600
    key_age = registry.get_sample_value("exchange_table_oldest_row_age_seconds", {"table": "ingest.idempotency_keys"})
    assert key_age is not None and DAY - 3600 - 600 < key_age < DAY - 3600 + 600
    await _as(cluster, "migrate", "ANALYZE ingest.audit")
    size = await stats(ingest_pool, ingest_retention.api_rules(settings))
    audit_rows = (await ingest_pool.fetch("SELECT count(*) AS n FROM ingest.audit"))[0]["n"]
    assert size["ingest.audit"].rows == audit_rows
    assert await pruner.round() == {"ingest.idempotency_keys": 0, "ingest.audit": 0}  # nothing left to do


async def test_the_audit_log_stays_append_only_except_for_its_retention(
    cluster: Cluster, ingest_pool: asyncpg.Pool
) -> None:
    tag = uuid.uuid4().hex[:8]
    await _audit(ingest_pool, 400, 1, f"old-{tag}")
    await _audit(ingest_pool, 10, 1, f"recent-{tag}")
    old = f"WHERE action = 'old-{tag}'"
    conn = await asyncpg.connect(cluster.dsns["ingest"])
    try:  # the service role: no update, no delete, no truncate, whatever the row's age
        for statement in (f"UPDATE ingest.audit SET actor = 'x' {old}", f"DELETE FROM ingest.audit {old}",
                          "TRUNCATE ingest.audit"):  # fmt: skip
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        with pytest.raises(asyncpg.InvalidParameterValueError):  # the floor holds through the function too
            await conn.fetchval("SELECT ingest.audit_prune($1, 100)", float(29 * DAY))
    finally:
        await conn.close()
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # another service cannot even call it
        await _as(cluster, "normalizer", "SELECT ingest.audit_prune($1, 100)", float(365 * DAY))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # the owner: not a row within the floor
        await _as(cluster, "migrate", f"DELETE FROM ingest.audit WHERE action = 'recent-{tag}'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _as(cluster, "migrate", f"UPDATE ingest.audit SET actor = 'x' {old}")
    assert await _actions(ingest_pool, f"old-{tag}", f"recent-{tag}") == {f"old-{tag}": 1, f"recent-{tag}": 1}
    await _as(cluster, "migrate", f"DELETE FROM ingest.audit {old}")  # the owner, past the floor: retention
    assert await _actions(ingest_pool, f"old-{tag}", f"recent-{tag}") == {f"recent-{tag}": 1}


async def test_the_inbox_rule_deletes_only_event_ids_older_than_the_retention(cluster: Cluster) -> None:
    pool = await asyncpg.create_pool(cluster.dsns["normalizer"], min_size=1, max_size=2)
    assert pool is not None
    try:
        await pool.execute("DELETE FROM normalizer.inbox")
        for days_ago, count in ((40, 5), (20, 3)):
            await pool.execute(
                "INSERT INTO normalizer.inbox (event_id, record_id, topic, processed_at)"
                " SELECT gen_random_uuid(), gen_random_uuid(), 't', now() - make_interval(secs => $1)"
                " FROM generate_series(1, $2)",
                days_ago * DAY,
                count,
            )
        settings = NormalizerRetention(DATABASE_URL=cluster.dsns["normalizer"], ENV="local")  # 35 days
        rule = normalizer_retention.inbox_rule(settings)
        assert rule is not None and rule.retention_seconds == 35 * DAY
        assert await enforce(pool, [rule], dry_run=True) == {"normalizer.inbox": 5}
        assert await pool.fetchval("SELECT count(*) FROM normalizer.inbox") == 8  # a dry run deletes nothing
        small = Pruner(pool, [rule.__class__(**{**rule.__dict__, "batch": 2})], every=60)
        assert await small.round() == {"normalizer.inbox": 5}  # batches of 2, 2, 1
        assert await pool.fetchval("SELECT count(*) FROM normalizer.inbox") == 3
        (inbox,) = (await stats(pool, [rule])).values()
        assert 20 * DAY - 60 < inbox.oldest_age_seconds < 20 * DAY + 600
    finally:
        await pool.close()


def _cli(cluster: Cluster, service: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": os.environ.get("PATH", ""), "ENV": "production", "DATABASE_URL": cluster.dsns[service], **env}
    return subprocess.run([EXCHANGE, "retention", "run", service, *args], capture_output=True, text=True,
                          timeout=120, env=environ, check=False)  # fmt: skip


async def test_retention_run_counts_dry_then_deletes_and_refuses_bad_settings_in_one_line(
    cluster: Cluster, ingest_pool: asyncpg.Pool
) -> None:
    tag = uuid.uuid4().hex[:8]
    await _as(cluster, "migrate", "DELETE FROM ingest.audit WHERE at < now() - interval '300 days'")
    await _audit(ingest_pool, 400, 4, f"cli-{tag}")
    await _key(ingest_pool, -60)

    dry = _cli(cluster, "ingest", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "ingest.audit: would delete 4 row(s) older than 2190 days" not in dry.stdout  # 6 years keeps them
    assert "ingest.audit: would delete 0 row(s) older than 2190 days" in dry.stdout
    assert "ingest.idempotency_keys: would delete 1 row(s)" in dry.stdout
    assert "ingest.outbox: would delete 0 row(s) older than 7 days" in dry.stdout
    short = {"INGEST_AUDIT_RETENTION_SECONDS": str(365 * DAY)}
    dry = _cli(cluster, "ingest", "--dry-run", **short)
    assert "ingest.audit: would delete 4 row(s) older than 365 days" in dry.stdout, dry.stdout + dry.stderr
    assert await _actions(ingest_pool, f"cli-{tag}") == {f"cli-{tag}": 4}

    done = _cli(cluster, "ingest", **short)
    assert done.returncode == 0, done.stderr
    assert "ingest.audit: deleted 4 row(s)" in done.stdout
    assert "ingest.idempotency_keys: deleted 1 row(s)" in done.stdout
    assert await _actions(ingest_pool, f"cli-{tag}") == {}

    normalizer = _cli(cluster, "normalizer", "--dry-run")
    assert normalizer.returncode == 0, normalizer.stderr
    assert "normalizer.inbox: would delete 0 row(s) older than 35 days" in normalizer.stdout
    assert "normalizer.outbox: would delete 0 row(s) older than 7 days" in normalizer.stdout

    for service, bad in (("ingest", {"INGEST_AUDIT_RETENTION_SECONDS": "3600"}),
                         ("normalizer", {"NORMALIZER_INBOX_RETENTION_SECONDS": str(10 * DAY)})):  # fmt: skip
        refused = _cli(cluster, service, **bad)
        assert refused.returncode == 1
        assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: ")
        assert next(iter(bad)) in refused.stderr
