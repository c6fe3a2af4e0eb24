"""The query service's Postgres role: LOGIN, SELECT on `canonical` only, read-only sessions.

`ensure_readonly_role(dsn, role, password)` is idempotent and runs as the migrating (owner) role
after the canonical migrations: `exchange migrate` (or the operator's migration Job) calls
`ensure_readonly_role_from_env()`, which reads DATABASE_URL (the owner) and QUERY_DB_PASSWORD
(the new role's password; without it the role is created NOLOGIN, usable through
QUERY_DB_ROLE = SET ROLE, as `make dev` does). The query service then connects with
`postgresql://exchange_query:<password>@host/db`.

Grants: CONNECT on the database, USAGE on schema `canonical`, SELECT on its tables now and on
tables the owner creates later (default privileges). Nothing on `public`, `normalizer`,
`ingest` or any other schema; `default_transaction_read_only` is on for the role.
"""

from __future__ import annotations

import asyncio
import os
import re

import asyncpg

from exchange.core.errors import ConfigError
from exchange.core.settings import DatabaseSettings, load

ROLE = "exchange_query"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def grant_statements(role: str, database: str) -> list[str]:
    """The GRANTs (pure, for review and tests); `role` and `database` must be plain identifiers."""
    if not _IDENT.match(role) or not re.match(r"^[A-Za-z0-9_\-]{1,63}$", database):
        raise ConfigError("role and database must be plain identifiers")
    return [
        f'REVOKE ALL ON DATABASE "{database}" FROM {role}',
        f'GRANT CONNECT ON DATABASE "{database}" TO {role}',
        f"REVOKE ALL ON SCHEMA public FROM {role}",
        f"GRANT USAGE ON SCHEMA canonical TO {role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA canonical TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA canonical GRANT SELECT ON TABLES TO {role}",
        f"ALTER ROLE {role} SET default_transaction_read_only = on",
    ]


async def ensure_readonly_role(dsn: str, role: str = ROLE, password: str | None = None) -> None:
    """Create or update `role` and its grants (idempotent). Run as the owner of `canonical`."""
    conn = await asyncpg.connect(dsn)
    try:
        database = await conn.fetchval("SELECT current_database()")
        statements = grant_statements(role, database)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('exchange_query_role'))")
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            login = "LOGIN" if password else "NOLOGIN"
            verb = "ALTER" if exists else "CREATE"
            await conn.execute(f"{verb} ROLE {role} {login} NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT")
            if password:
                # Utility statements take no parameters: quote the literal the way Postgres does.
                literal = await conn.fetchval("SELECT quote_literal($1)", password)
                await conn.execute(f"ALTER ROLE {role} PASSWORD {literal}")
            for statement in statements:
                await conn.execute(statement)
    finally:
        await conn.close()


def ensure_readonly_role_from_env() -> None:
    """`exchange migrate`: DATABASE_URL (owner), QUERY_DB_ROLE (default exchange_query), QUERY_DB_PASSWORD."""
    dsn = load(DatabaseSettings).database_url.get_secret_value()
    role = os.environ.get("QUERY_DB_ROLE") or ROLE
    asyncio.run(ensure_readonly_role(dsn, role, os.environ.get("QUERY_DB_PASSWORD") or None))
