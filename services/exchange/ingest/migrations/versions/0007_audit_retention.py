"""ingest.audit gets a retention that keeps it append-only for everyone else (ADR 0013).

The trigger that refuses UPDATE, DELETE and TRUNCATE now lets one kind of DELETE through: by the
table's owner, of a row older than the 30-day floor. The owner's `ingest.audit_prune(retention,
batch)` (SECURITY DEFINER, so the ingest role may call it) deletes one batch of rows older than
`retention` (at least the floor), walking the primary key from its oldest end: ids and `at` grow
together, so a batch never reads past the first young row and the insert path keeps a single
index. Service roles still cannot update, delete or truncate a row, and nobody can touch a row
younger than the floor without first changing this trigger, which only the owner may do.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE OR REPLACE FUNCTION ingest.audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.at < now() - interval '30 days'
       AND (SELECT relowner FROM pg_catalog.pg_class WHERE oid = TG_RELID)
           = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RETURN OLD;  -- retention: the owner, a row older than the floor
    END IF;
    RAISE EXCEPTION 'ingest.audit is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE FUNCTION ingest.audit_prune(retention_seconds float8, batch integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    deleted bigint;
BEGIN
    IF retention_seconds IS NULL OR retention_seconds < 30 * 86400 THEN
        RAISE EXCEPTION 'audit retention must be at least 30 days' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- No row lock in the scan: it would write to the `batch` oldest rows each round, young ones
    -- included. A concurrent prune's DELETE waits for this one and finds the rows gone.
    DELETE FROM ingest.audit WHERE id IN (
        SELECT first.id FROM (SELECT a.id, a.at FROM ingest.audit AS a ORDER BY a.id LIMIT batch) AS first
         WHERE first.at < now() - make_interval(secs => retention_seconds));
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END $$;
"""

DOWNGRADE = """
DROP FUNCTION ingest.audit_prune(float8, integer);
CREATE OR REPLACE FUNCTION ingest.audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ingest.audit is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
