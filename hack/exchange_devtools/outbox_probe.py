"""A throwaway outbox for the shared outbox machinery's integration tests, shaped as the services'
first revisions made theirs (before `exchange.core.migrations.outbox_pending_queue_v1`), so a
test applies the same upgrades to it that the services' revisions apply."""

from __future__ import annotations


def legacy_outbox_sql(schema: str, *, payload_type: str = "text", channel: str | None = None) -> str:
    """(Re)create `<schema>.outbox` with the columns and partial indexes of the pre-queue outbox
    and, given a `channel`, its insert trigger that NOTIFYs there (as ingest's revision 0001)."""
    notify = f"""
CREATE FUNCTION {schema}.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{channel}', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON {schema}.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.outbox_notify();
"""
    return f"""
DROP SCHEMA IF EXISTS {schema} CASCADE;
CREATE SCHEMA {schema};
CREATE TABLE {schema}.outbox (
    event_id uuid PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY, record_id uuid NOT NULL,
    topic text NOT NULL, payload {payload_type} NOT NULL, correlation_id text NOT NULL,
    traceparent text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), published_at timestamptz
);
CREATE INDEX outbox_unpublished ON {schema}.outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON {schema}.outbox (published_at) WHERE published_at IS NOT NULL;
""" + (notify if channel else "")
