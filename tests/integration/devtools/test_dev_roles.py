"""`make dev` runs each process as its own Postgres role, as the operator does on a cluster: the
roles dev-up provisions, `exchange migrate` run with the environment dev-up gives it, then each
service's own DATABASE_URL. The query service cannot write; nobody runs as the superuser.

Postgres here is a cluster of this module's own (the roles are cluster-wide): the first database
is made as dev-up makes a fresh `.dev`, the second as a `.dev` from before the roles existed."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from exchange_devtools import dev_roles
from exchange_devtools.dev_stack import SERVICES, service_env
from exchange_devtools.engines.postgres import PostgresServer, postgres_server
from exchange_devtools.fixtures.report import track

EXCHANGE = str(Path(sys.executable).with_name("exchange"))
SHARED_ENV = {"ENV": "local", "DATABASE_URL": "postgresql://superuser@nowhere/x", "S3_BUCKET_RAW": "raw"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = postgres_server(tmp_path_factory.mktemp("dev-roles"), name="postgres-dev-roles", durable=False)
    track(server.engine)
    try:
        yield server.start()
    finally:
        server.stop()


def migrate(dsn: str) -> None:
    """`exchange migrate` as dev-up runs it (ENV=local, DATABASE_URL: the given login)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_DB_ROLE", "_DB_PASSWORD"))}
    env |= {"ENV": "local", "DATABASE_URL": dsn}
    result = subprocess.run([EXCHANGE, "migrate"], capture_output=True, text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr


async def dev_database(cluster: PostgresServer, state: Path, *, legacy: bool) -> dict[str, str]:
    """A database set up as dev-up sets it up; `legacy`: migrated by the superuser first, as a
    `.dev` was before per-process roles. Returns dev-up's DSN per process."""
    database = f"dev_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(cluster.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    if legacy:
        migrate(cluster.dsn_for(database))
    role_passwords = dev_roles.passwords(state)
    await dev_roles.provision(cluster.dsn_for(database), role_passwords)
    dsns = dev_roles.dsns(cluster.dsn_for(database), role_passwords)
    migrate(dsns["migrate"])
    migrate(dsns["migrate"])  # idempotent
    return dsns


@pytest.fixture(scope="module")
async def fresh(cluster: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return await dev_database(cluster, tmp_path_factory.mktemp("state"), legacy=False)


async def as_login(dsn: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def test_each_service_gets_its_own_role_and_the_tokenizer_no_database(fresh: dict[str, str]) -> None:
    logins = {name: service_env(name, SHARED_ENV, fresh).get("DATABASE_URL") for name in SERVICES}
    assert logins == {
        "ingest": fresh["ingest"], "query": fresh["query"], "tokenizer": None,
        "relay": fresh["ingest"], "normalizer": fresh["normalizer"],
    }  # fmt: skip
    assert service_env("query", SHARED_ENV, fresh)["S3_BUCKET_RAW"] == "raw"


@pytest.mark.parametrize(
    ("process", "role"),
    [("migrate", "exchange_migrate"), ("ingest", "exchange_ingest"), ("relay", "exchange_ingest"),
     ("normalizer", "exchange_normalizer"), ("query", "exchange_query")],
)  # fmt: skip
async def test_each_process_logs_in_as_its_role_and_none_is_a_superuser(fresh, process, role) -> None:
    assert await as_login(fresh[process], "SELECT current_user") == role
    assert await as_login(fresh[process], "SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles"
                          " WHERE rolname = current_user") is False  # fmt: skip


async def test_the_query_role_of_make_dev_cannot_write(fresh: dict[str, str]) -> None:
    conn = await asyncpg.connect(fresh["query"])
    try:
        assert await conn.fetchval("SELECT count(*) FROM canonical.records") == 0
        assert await conn.fetchval("SHOW default_transaction_read_only") == "on"
        await conn.execute("SET default_transaction_read_only = off")  # so each refusal below is the grant's
        for statement in (
            "INSERT INTO canonical.records (id) VALUES (gen_random_uuid())",
            "DELETE FROM canonical.records",
            "CREATE TABLE canonical.evil (x int)",
            "SELECT * FROM ingest.outbox",
            "SELECT * FROM normalizer.inbox",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_the_service_roles_write_only_their_own_schemas(fresh: dict[str, str]) -> None:
    for process, foreign in (("ingest", "canonical.records"), ("normalizer", "ingest.outbox")):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await as_login(fresh[process], f"SELECT count(*) FROM {foreign}")
    assert await as_login(fresh["ingest"], "SELECT count(*) FROM ingest.outbox") == 0
    assert await as_login(fresh["normalizer"], "SELECT count(*) FROM canonical.records") == 0


async def test_a_dev_database_from_before_the_roles_is_handed_to_the_owner_and_granted(cluster, tmp_path) -> None:
    dsns = await dev_database(cluster, tmp_path, legacy=True)
    owned = await as_login(
        dsns["migrate"],
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname IN ('ingest', 'normalizer', 'canonical') AND c.relowner <> 'exchange_migrate'::regrole",
    )
    assert owned == 0
    assert await as_login(dsns["ingest"], "SELECT count(*) FROM ingest.outbox") == 0
    assert await as_login(dsns["query"], "SELECT count(*) FROM canonical.records") == 0
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_login(dsns["query"], "SELECT count(*) FROM ingest.outbox")
