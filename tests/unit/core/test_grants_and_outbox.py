"""Pure parts of the shared migration runner and outbox relay: the GRANTs a service role gets,
and the SQL an outbox is polled and marked with."""

from __future__ import annotations

import orjson
import pytest

from exchange.core.errors import ConfigError
from exchange.core.migrations import grant_statements
from exchange.core.outbox import Outbox


def test_a_writer_gets_its_schema_tables_sequences_and_defaults_and_nothing_else():
    statements = grant_statements("exchange_ingest", "exchange", write_schemas=("ingest",))
    assert "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ingest TO exchange_ingest" in statements
    assert "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA ingest TO exchange_ingest" in statements
    assert any(s.startswith("ALTER DEFAULT PRIVILEGES IN SCHEMA ingest GRANT SELECT, INSERT") for s in statements)
    assert not any("canonical" in s or "normalizer" in s or "TRUNCATE" in s for s in statements)


def test_a_reader_gets_select_only():
    statements = grant_statements("exchange_query", "exchange", read_schemas=("canonical",))
    assert "GRANT SELECT ON ALL TABLES IN SCHEMA canonical TO exchange_query" in statements
    assert not any("INSERT" in s or "SEQUENCES" in s for s in statements)


def test_grants_refuse_names_that_are_not_plain_identifiers():
    for role, schema in (("x; DROP ROLE y", "ingest"), ("exchange_ingest", "ingest.outbox")):
        with pytest.raises(ConfigError):
            grant_statements(role, "exchange", write_schemas=(schema,))


def test_an_outbox_picks_unpublished_rows_without_a_high_water_mark():
    pick = Outbox("ingest.outbox", channel="ingest_outbox").pick_sql
    assert pick.startswith("WITH picked AS (DELETE FROM ingest.outbox_pending WHERE seq = ANY(ARRAY(")
    assert "ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED" in pick and "o.payload::text AS payload" in pick
    assert "JOIN ingest.outbox AS o USING (event_id) ORDER BY picked.seq" in pick
    assert "payload::text" not in Outbox("normalizer.outbox", encode_payload=orjson.dumps).pick_sql
    backlog = Outbox("normalizer.outbox").backlog_sql
    assert "(SELECT count(*) FROM normalizer.outbox_pending) AS backlog" in backlog
    assert "p JOIN normalizer.outbox AS o USING (event_id) ORDER BY p.seq LIMIT 1" in backlog
    with pytest.raises(ConfigError):
        Outbox("outbox; DROP TABLE x")


def test_an_outbox_prunes_only_published_rows_oldest_first_and_refuses_a_bad_retention():
    prune = Outbox("ingest.outbox", retention_seconds=3600).prune_sql
    assert prune.startswith("DELETE FROM ingest.outbox WHERE event_id = ANY(ARRAY(")
    assert "o.created_at < now() - make_interval(secs => $1)" in prune
    assert "NOT EXISTS (SELECT FROM ingest.outbox_pending AS p WHERE p.seq = o.seq)" in prune
    assert "ORDER BY o.created_at LIMIT $2 FOR UPDATE SKIP LOCKED" in prune
    for bad in ({"retention_seconds": 0}, {"retention_seconds": -1}, {"prune_seconds": 0}, {"prune_batch": 0}):
        with pytest.raises(ConfigError):
            Outbox("ingest.outbox", **bad)  # type: ignore[arg-type]
