"""ConfigMaps: the pipeline's shared settings, and the managed Postgres role bootstrap script."""

from __future__ import annotations

from exchange_operator.builders.common import Manifest, Meta, object_meta
from exchange_operator.builders.env import config_data, config_map_name
from exchange_operator.builders.secrets import POSTGRES_DB, POSTGRES_ROLES
from exchange_operator.spec import ExchangePipelineSpec

POSTGRES_INIT_SCRIPT = "10-exchange-roles.sh"


def build_config_map(spec: ExchangePipelineSpec, meta: Meta) -> Manifest:
    """Non-secret settings of every service (env via envFrom)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(meta, config_map_name(meta), "config", "config"),
        "data": config_data(spec, meta),
    }


def postgres_init_config_map_name(meta: Meta) -> str:
    return meta.child("postgres-init")


def _roles_script() -> str:
    # Runs once, on an empty data directory (postgres image entrypoint). Passwords arrive as env
    # from the generated Secret; `migrate` owns the database and grants the others in migrations.
    lines = ["#!/bin/bash", "set -euo pipefail", 'psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL']
    for role in POSTGRES_ROLES:
        var = f"EXCHANGE_{role.upper()}_PASSWORD"
        lines.append(f"CREATE ROLE exchange_{role} LOGIN PASSWORD '${{{var}}}';")
    lines += [
        f"ALTER DATABASE {POSTGRES_DB} OWNER TO exchange_migrate;",
        f"GRANT CONNECT ON DATABASE {POSTGRES_DB} TO exchange_ingest, exchange_normalizer, exchange_query;",
        # Only a superuser may set another role's defaults; the owner (migrate) cannot later.
        "ALTER ROLE exchange_query SET default_transaction_read_only = on;",
        "SQL",
    ]
    return "\n".join(lines) + "\n"


def build_postgres_init_config_map(spec: ExchangePipelineSpec, meta: Meta) -> Manifest | None:
    """Role bootstrap for the managed Postgres; None when Postgres is external."""
    if spec.engines.postgres.mode != "managed":
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(meta, postgres_init_config_map_name(meta), "postgres", "config"),
        "data": {POSTGRES_INIT_SCRIPT: _roles_script()},
    }
