"""ingest schema: idempotency keys, transactional outbox, append-only audit.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = """
CREATE SCHEMA IF NOT EXISTS ingest;

-- One row per (tenant, Idempotency-Key). `owner` is the claim of the request processing it.
CREATE TABLE ingest.idempotency_keys (
    tenant        text        NOT NULL,
    key           text        NOT NULL,
    fingerprint   bytea       NOT NULL,
    owner         uuid        NOT NULL,
    state         text        NOT NULL CHECK (state IN ('in_flight', 'completed')),
    status_code   integer,
    response      bytea,
    media_type    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    locked_until  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX idempotency_keys_expires_at ON ingest.idempotency_keys (expires_at);

-- Transactional outbox: one row per record/event. Rows stay (published_at set) as the record
-- registry; the relay picks unpublished rows with FOR UPDATE SKIP LOCKED, so a row that commits
-- late is simply picked by a later poll (no high-water mark to skip past it).
CREATE TABLE ingest.outbox (
    event_id       uuid        PRIMARY KEY,
    seq            bigint      GENERATED ALWAYS AS IDENTITY,
    record_id      uuid        NOT NULL UNIQUE,
    tenant         text        NOT NULL,
    topic          text        NOT NULL,
    payload        jsonb       NOT NULL,
    correlation_id text        NOT NULL,
    traceparent    text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz
);
CREATE INDEX outbox_unpublished ON ingest.outbox (seq) WHERE published_at IS NULL;

CREATE FUNCTION ingest.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ingest_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON ingest.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION ingest.outbox_notify();

-- Append-only audit trail: who did what to which record, under which correlation id. No PII.
CREATE TABLE ingest.audit (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    tenant         text        NOT NULL,
    actor          text        NOT NULL,
    action         text        NOT NULL,
    record_id      uuid        NOT NULL,
    correlation_id text        NOT NULL
);

CREATE FUNCTION ingest.audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ingest.audit is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON ingest.audit
    FOR EACH ROW EXECUTE FUNCTION ingest.audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON ingest.audit
    FOR EACH STATEMENT EXECUTE FUNCTION ingest.audit_append_only();
"""

DOWNGRADE = """
DROP TABLE IF EXISTS ingest.audit;
DROP TABLE IF EXISTS ingest.outbox;
DROP TABLE IF EXISTS ingest.idempotency_keys;
DROP FUNCTION IF EXISTS ingest.audit_append_only();
DROP FUNCTION IF EXISTS ingest.outbox_notify();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
