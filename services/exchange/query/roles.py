"""The query service's Postgres role: LOGIN, SELECT on `canonical` only, read-only sessions.

`ensure_readonly_role(dsn, role, password)` is idempotent and runs as the migrating (owner) role
after the canonical migrations: `exchange migrate` (or the operator's migration Job) calls
`ensure_readonly_role_from_env()`, which reads DATABASE_URL (the owner) and QUERY_DB_PASSWORD
(the role's password). A new role is created LOGIN with a password, else NOLOGIN (usable through
QUERY_DB_ROLE = SET ROLE, as `make dev` does); an existing role (the operator creates
`exchange_query` LOGIN with its own password) keeps its LOGIN unless a password is given. The
query service then connects with `postgresql://exchange_query:<password>@host/db`.

Grants (`exchange.core.migrations.grant_statements`): CONNECT on the database, USAGE on schema
`canonical`, SELECT on its tables now and on tables the owner creates later (default
privileges). Nothing on `public`, `normalizer`, `ingest` or any other schema;
`default_transaction_read_only` is on for the role (and `exchange.query.db` sets it per session).
"""

from __future__ import annotations

import asyncio
import os

import asyncpg

from exchange.core import migrations
from exchange.core.logging import get_logger
from exchange.core.settings import DatabaseSettings, load

log = get_logger(__name__)
ROLE = "exchange_query"
SCHEMAS = ("canonical",)
_HARDENED = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT"


def grant_statements(role: str, database: str) -> list[str]:
    """The GRANTs (pure, for review and tests); `role` and `database` must be plain identifiers."""
    return [
        *migrations.grant_statements(role, database, read_schemas=SCHEMAS),
        f"ALTER ROLE {role} SET default_transaction_read_only = on",
    ]


async def ensure_readonly_role(dsn: str, role: str = ROLE, password: str | None = None) -> None:
    """Create or update `role` and its grants (idempotent). Run as the owner of `canonical`."""
    statements = grant_statements(role, "db")  # validates `role` before anything runs
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('exchange_query_role'))")
            if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                await conn.execute(f"CREATE ROLE {role} {'LOGIN' if password else 'NOLOGIN'} {_HARDENED}")
            elif password:
                await conn.execute(f"ALTER ROLE {role} LOGIN {_HARDENED}")
            else:  # an existing role keeps its LOGIN (the operator's) or NOLOGIN
                await _if_allowed(conn, role, f"ALTER ROLE {role} {_HARDENED}")
            if password:
                # Utility statements take no parameters: quote the literal the way Postgres does.
                literal = await conn.fetchval("SELECT quote_literal($1)", password)
                await conn.execute(f"ALTER ROLE {role} PASSWORD {literal}")
            await migrations.grant_role(conn, role, read_schemas=SCHEMAS)
            await _if_allowed(conn, role, statements[-1])
    finally:
        await conn.close()


async def _if_allowed(conn: asyncpg.Connection, role: str, statement: str) -> None:
    """Run an ALTER ROLE of an existing role; a database owner without the right to alter roles
    (the operator's `exchange_migrate`) skips it with a warning: the role's creator set it up."""
    try:
        async with conn.transaction():  # a savepoint: the refusal does not abort the grants
            await conn.execute(statement)
    except asyncpg.InsufficientPrivilegeError:
        log.warning("query_role_alter_skipped", role=role, reason="the owner may not alter roles")


def ensure_readonly_role_from_env() -> None:
    """`exchange migrate`: DATABASE_URL (owner), QUERY_DB_ROLE (default exchange_query), QUERY_DB_PASSWORD."""
    dsn = load(DatabaseSettings).database_url.get_secret_value()
    role = os.environ.get("QUERY_DB_ROLE") or ROLE
    asyncio.run(ensure_readonly_role(dsn, role, os.environ.get("QUERY_DB_PASSWORD") or None))
