"""The Postgres roles of `make dev`: each process logs in as its own role, as on a cluster.

A pipeline's managed Postgres starts with one LOGIN role per process (the operator's role
bootstrap script, `exchange_operator.builders.configmaps`): `exchange_migrate` owns the database
and runs `exchange migrate`, which grants `exchange_ingest` (the relay's too), `exchange_normalizer`
and the read-only `exchange_query` their share. `provision()` does the same on the local cluster,
as its superuser, and is idempotent. A `.dev` made before the roles existed keeps its data: what
the superuser created there is handed to the owner role, so its migrations and grants still apply.

Passwords are generated once and kept in `<state>/postgres/roles.json`, like the operator's
generated Secret (the local cluster trusts 127.0.0.1, so they are not what keeps roles apart).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from urllib.parse import quote, urlsplit

import asyncpg

from exchange_operator.builders.env import DATABASE_ROLE
from exchange_operator.builders.secrets import POSTGRES_ROLES

OWNER = "exchange_migrate"
SCHEMAS = ("ingest", "normalizer", "canonical", "public")
"""Where the migrations create objects (`public`: their alembic version tables)."""
PROCESSES = ("migrate", "ingest", "relay", "normalizer", "query")
"""The processes of `make dev` that reach Postgres (the tokenizer does not)."""

# Everything a role that is not the owner created in the schemas above, as ALTER ... OWNER
# statements (indexes and identity sequences follow their table).
_NOT_OWNED = f"""
SELECT format('ALTER SCHEMA %I OWNER TO {OWNER}', nspname) FROM pg_namespace
 WHERE nspname = ANY($1::text[]) AND nspname <> 'public' AND nspowner <> '{OWNER}'::regrole
UNION ALL
SELECT format('ALTER TABLE %I.%I OWNER TO {OWNER}', n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm') AND c.relowner <> '{OWNER}'::regrole
UNION ALL
SELECT format('ALTER FUNCTION %s OWNER TO {OWNER}', p.oid::regprocedure)
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = ANY($1::text[]) AND p.proowner <> '{OWNER}'::regrole
"""


def role_name(process: str) -> str:
    """The role a process logs in as (the relay as ingest's, as the operator does)."""
    return f"exchange_{DATABASE_ROLE.get(process, process)}"


def passwords(state: Path) -> dict[str, str]:
    """Each role's password: read from `state/postgres/roles.json`, generated once when missing."""
    path = state / "postgres" / "roles.json"
    kept: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    values = {f"exchange_{role}": kept.get(f"exchange_{role}") or secrets.token_urlsafe(24) for role in POSTGRES_ROLES}
    if values != kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))
        path.chmod(0o600)
    return values


def dsns(admin_dsn: str, role_passwords: dict[str, str]) -> dict[str, str]:
    """process → the DSN it connects with: the superuser's host, port and database, its own role."""
    url = urlsplit(admin_dsn)
    out = {}
    for process in PROCESSES:
        role = role_name(process)
        out[process] = f"postgresql://{role}:{quote(role_passwords[role], safe='')}@{url.hostname}:{url.port}{url.path}"
    return out


async def provision(admin_dsn: str, role_passwords: dict[str, str]) -> None:
    """Create or update every role (LOGIN, as the operator's script makes them), make the owner role own the
    database and what the superuser created in it, let the others connect, and make the query
    role's sessions read-only by default (only a superuser may set that for another role)."""
    database = urlsplit(admin_dsn).path.lstrip("/")
    conn = await asyncpg.connect(admin_dsn)
    try:
        async with conn.transaction():
            for role, password in sorted(role_passwords.items()):
                literal = await conn.fetchval("SELECT quote_literal($1)", password)
                verb = "ALTER" if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role) else "CREATE"
                await conn.execute(f"{verb} ROLE {role} LOGIN PASSWORD {literal}")
            await conn.execute(f'ALTER DATABASE "{database}" OWNER TO {OWNER}')
            for (statement,) in await conn.fetch(_NOT_OWNED, list(SCHEMAS)):
                await conn.execute(statement)
            others = ", ".join(sorted(role for role in role_passwords if role != OWNER))
            await conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO {others}')
            await conn.execute(f"ALTER ROLE {role_name('query')} SET default_transaction_read_only = on")
    finally:
        await conn.close()


__all__ = ["OWNER", "PROCESSES", "dsns", "passwords", "provision", "role_name"]
