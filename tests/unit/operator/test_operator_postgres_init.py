"""The managed Postgres' first-start script: one LOGIN role per process, migrate owns the
database, and the query role's sessions are read-only by default (only a superuser can set that)."""

from __future__ import annotations

from exchange_operator.builders.configmaps import POSTGRES_INIT_SCRIPT, build_postgres_init_config_map


def test_the_init_script_creates_the_roles_and_makes_query_read_only(spec, meta):
    script = build_postgres_init_config_map(spec, meta)["data"][POSTGRES_INIT_SCRIPT]
    for role in ("ingest", "normalizer", "query", "migrate"):
        assert f"CREATE ROLE exchange_{role} LOGIN PASSWORD" in script
    assert "OWNER TO exchange_migrate" in script
    assert "ALTER ROLE exchange_query SET default_transaction_read_only = on;" in script
    # Passwords come from the environment at run time, never baked into the ConfigMap.
    assert "PASSWORD '${EXCHANGE_QUERY_PASSWORD}'" in script


def test_no_init_script_for_an_external_postgres(external_spec, meta):
    assert build_postgres_init_config_map(external_spec, meta) is None
