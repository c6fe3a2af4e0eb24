"""Run a service's alembic revisions (raw SQL) through asyncpg, once, under an advisory lock.

alembic renders the pending revisions as SQL (its offline mode: ordering, the version table and
the revision graph stay alembic's) and the script runs in ONE asyncpg transaction under
`pg_advisory_xact_lock(lock_key)`, so replicas starting together apply it once and a failed
migration leaves nothing half done. This keeps the image free of a second (synchronous) driver.
A service's `migrations/env.py` is `run_offline(context)`.

Grants: each service has its own login role with least privilege. `grant_statements` builds the
GRANTs of one role (pure, for review and tests) and `grant_role` applies them as the owner of the
schemas, after the migrations; `grant_role_from_env` is what a service's `exchange migrate` step
calls. A role that does not exist (local dev, one superuser) is skipped.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config

from exchange.core.errors import ConfigError
from exchange.core.logging import get_logger
from exchange.core.settings import DatabaseSettings, load

log = get_logger(__name__)
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_DATABASE = re.compile(r"^[A-Za-z0-9_\-]{1,63}$")
_WRITE = "SELECT, INSERT, UPDATE, DELETE"


def run_offline(context: Any) -> None:
    """The whole of a service's `migrations/env.py`: render the revisions as SQL (offline,
    `literal_binds`), without BEGIN/COMMIT (the caller owns the transaction), into the version
    table named by `config.attributes["version_table"]`."""
    context.configure(
        dialect_name="postgresql",
        literal_binds=True,
        transactional_ddl=False,
        version_table=context.config.attributes.get("version_table", "alembic_version"),
        output_buffer=context.config.output_buffer,
    )
    with context.begin_transaction():
        context.run_migrations()


def render_sql(script_location: Path, version_table: str, current: str | None, target: str = "head") -> str:
    """The SQL that moves a schema from revision `current` (None: empty) to `target`."""
    buffer = io.StringIO()
    cfg = Config(output_buffer=buffer)
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["version_table"] = version_table
    command.upgrade(cfg, f"{current}:{target}" if current else target, sql=True)
    return buffer.getvalue()


async def current_revision(conn: asyncpg.Connection, version_table: str) -> str | None:
    if await conn.fetchval("SELECT to_regclass($1)", f"public.{version_table}") is None:
        return None
    value = await conn.fetchval(f"SELECT version_num FROM public.{version_table}")
    return str(value) if value else None


async def upgrade_async(
    dsn: str, script_location: Path, version_table: str, lock_key: int, target: str = "head"
) -> str | None:
    """Apply pending revisions in one transaction; returns the revision the database ends at."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
            current = await current_revision(conn, version_table)
            sql = await asyncio.to_thread(render_sql, script_location, version_table, current, target)
            if sql.strip():
                await conn.execute(sql)
            return await current_revision(conn, version_table)
    finally:
        await conn.close()


def grant_statements(
    role: str,
    database: str,
    *,
    write_schemas: Sequence[str] = (),
    read_schemas: Sequence[str] = (),
    sequences: bool = True,
) -> list[str]:
    """The GRANTs of one service role (pure): CONNECT on `database`, nothing on `public`; read/write
    on the tables of `write_schemas` (and, when `sequences`, their sequences), SELECT on the tables
    of `read_schemas`; the same on objects the owner creates there later (default privileges).
    Nothing on any other schema. Raises ConfigError unless every name is a plain identifier."""
    schemas = (*write_schemas, *read_schemas)
    if not all(_IDENT.match(name) for name in (role, *schemas)) or not _DATABASE.match(database):
        raise ConfigError("role, schemas and database must be plain identifiers")
    statements = [
        f'REVOKE ALL ON DATABASE "{database}" FROM {role}',
        f'GRANT CONNECT ON DATABASE "{database}" TO {role}',
        f"REVOKE ALL ON SCHEMA public FROM {role}",
    ]
    for schema in schemas:
        tables = _WRITE if schema in write_schemas else "SELECT"
        statements += [
            f"GRANT USAGE ON SCHEMA {schema} TO {role}",
            f"GRANT {tables} ON ALL TABLES IN SCHEMA {schema} TO {role}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT {tables} ON TABLES TO {role}",
        ]
        if sequences and schema in write_schemas:
            statements += [
                f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {role}",
            ]
    return statements


async def grant_role(
    conn: asyncpg.Connection,
    role: str,
    *,
    write_schemas: Sequence[str] = (),
    read_schemas: Sequence[str] = (),
    sequences: bool = True,
) -> bool:
    """Apply `grant_statements` on `conn` (run as the owner of the schemas; idempotent) in one
    transaction under an advisory lock. Returns False, doing nothing, when `role` does not exist."""
    database = await conn.fetchval("SELECT current_database()")
    statements = grant_statements(
        role, database, write_schemas=write_schemas, read_schemas=read_schemas, sequences=sequences
    )
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('exchange_grants'))")
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            log.info("grant_skipped_no_role", role=role)
            return False
        for statement in statements:
            await conn.execute(statement)
    return True


def grant_role_from_env(
    role_env: str,
    default_role: str,
    *,
    write_schemas: Sequence[str] = (),
    read_schemas: Sequence[str] = (),
    sequences: bool = True,
) -> bool:
    """`exchange migrate`: connect with DATABASE_URL (the owner) and grant the role named by the
    environment variable `role_env` (default `default_role`); False when that role does not exist."""
    dsn = load(DatabaseSettings).database_url.get_secret_value()
    role = os.environ.get(role_env) or default_role

    async def apply() -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            return await grant_role(
                conn, role, write_schemas=write_schemas, read_schemas=read_schemas, sequences=sequences
            )
        finally:
            await conn.close()

    return asyncio.run(apply())


def outbox_pending_queue_v1(schema: str) -> tuple[str, str]:
    """(upgrade, downgrade) SQL that moves `<schema>.outbox` from a `published_at` column to a
    pending queue, `<schema>.outbox_pending` (see `exchange.core.outbox`), for the revision of each
    service that makes the move.

    Frozen: applied revisions call it, so a later change of shape gets a new function.

    The upgrade locks the outbox against writers, queues every unpublished row, adds the trigger
    that queues new rows (one INSERT ... SELECT per statement, from its transition table), and drops
    `published_at` with its two partial indexes; retention then walks a new index on `created_at`.
    A relay of the previous version fails (and retries) until it is replaced."""
    if not _IDENT.match(schema):
        raise ConfigError("schema must be a plain identifier")
    upgrade = f"""
LOCK TABLE {schema}.outbox IN SHARE ROW EXCLUSIVE MODE;
CREATE TABLE {schema}.outbox_pending (
    seq      bigint PRIMARY KEY,
    event_id uuid   NOT NULL
);
INSERT INTO {schema}.outbox_pending (seq, event_id)
SELECT seq, event_id FROM {schema}.outbox WHERE published_at IS NULL;
CREATE FUNCTION {schema}.outbox_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.outbox_pending (seq, event_id) SELECT seq, event_id FROM inserted;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_enqueue AFTER INSERT ON {schema}.outbox REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.outbox_enqueue();
DROP INDEX IF EXISTS {schema}.outbox_unpublished;
DROP INDEX IF EXISTS {schema}.outbox_published_at;
ALTER TABLE {schema}.outbox DROP COLUMN published_at;
CREATE INDEX outbox_created_at ON {schema}.outbox (created_at);
"""
    downgrade = f"""
LOCK TABLE {schema}.outbox IN SHARE ROW EXCLUSIVE MODE;
ALTER TABLE {schema}.outbox ADD COLUMN published_at timestamptz;
UPDATE {schema}.outbox AS o SET published_at = now()
 WHERE NOT EXISTS (SELECT FROM {schema}.outbox_pending AS p WHERE p.seq = o.seq);
DROP TRIGGER outbox_enqueue ON {schema}.outbox;
DROP FUNCTION {schema}.outbox_enqueue();
DROP TABLE {schema}.outbox_pending;
DROP INDEX {schema}.outbox_created_at;
CREATE INDEX outbox_unpublished ON {schema}.outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON {schema}.outbox (published_at) WHERE published_at IS NOT NULL;
"""
    return upgrade, downgrade


NOTIFY_GATE_LOCK_CLASS = 0x0B0C
"""First key of the advisory lock that a NOTIFY gate's trigger shares and an arriving listener
takes alone (the second is the outbox table's OID; see `outbox_notify_gate_v1`)."""


def outbox_notify_gate_v1(schema: str, channel: str) -> tuple[str, str]:
    """(upgrade, downgrade) SQL that makes `<schema>.outbox`'s statement trigger NOTIFY `channel`
    only while a relay listens: `<schema>.outbox_listening` (one row) says whether one does.

    Frozen: applied revisions call it, so a later change of shape gets a new function.

    With fsync on, Postgres takes a database-wide lock in the commit of every transaction that
    sent a NOTIFY and holds it through the WAL flush, so such commits run one at a time; a busy
    relay, which picks again after each linger anyway, needs none of them. The race is closed by an
    advisory lock: the trigger reads the flag under a shared, transaction-scoped lock; a relay
    that starts to listen sets the flag and then takes the lock alone, which waits for every
    transaction that may have read the old value to end, before it picks once more
    (`exchange.core.outbox.OutboxRelay`)."""
    if not _IDENT.match(schema) or not _IDENT.match(channel):
        raise ConfigError("schema and channel must be plain identifiers")
    lock = f"{NOTIFY_GATE_LOCK_CLASS}, '{schema}.outbox'::regclass::oid::int"
    upgrade = f"""
CREATE TABLE {schema}.outbox_listening (
    id        smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    listening boolean  NOT NULL
);
INSERT INTO {schema}.outbox_listening (listening) VALUES (true);
CREATE OR REPLACE FUNCTION {schema}.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({lock});
    IF (SELECT listening FROM {schema}.outbox_listening WHERE id = 1) THEN
        PERFORM pg_notify('{channel}', '');
    END IF;
    RETURN NULL;
END $$;
"""
    downgrade = f"""
CREATE OR REPLACE FUNCTION {schema}.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{channel}', '');
    RETURN NULL;
END $$;
DROP TABLE {schema}.outbox_listening;
"""
    return upgrade, downgrade
