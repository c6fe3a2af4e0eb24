"""Ingest's bounded tables as `exchange.core.retention` rules (ADR 0013).

- `ingest.idempotency_keys`: a key is kept for `INGEST_IDEMPOTENCY_TTL_SECONDS`; an expired key
  is a new key (a claim overwrites it), so its row is deleted (`IdempotencyStore`'s purge SQL).
- `ingest.audit`: rows older than `INGEST_AUDIT_RETENTION_SECONDS` are deleted through
  `ingest.audit_prune`, the only way past the append-only trigger (migration 0007).
- `ingest.outbox`: published rows older than `RELAY_OUTBOX_RETENTION_SECONDS` (the relay's rule).

The ingest process enforces the first two (`api_rules`), the relay the outbox; `exchange retention
run ingest` all three (`all_rules`).
"""

from __future__ import annotations

from exchange.core.outbox import Outbox
from exchange.core.retention import Rule
from exchange.ingest.idempotency import EXPIRED_SQL, PURGE_SQL
from exchange.ingest.settings import RetentionSettings

OUTBOX = "ingest.outbox"


def idempotency_rule(settings: RetentionSettings) -> Rule:
    ttl = float(settings.ingest_idempotency_ttl_seconds)
    return Rule(
        "ingest.idempotency_keys",
        ttl,
        delete_sql=PURGE_SQL,
        expired_sql=EXPIRED_SQL,
        # Every key lives one TTL, so the oldest row is the one expiring first (the expires_at index).
        oldest_sql="SELECT extract(epoch FROM now() - (min(expires_at) - make_interval(secs => $1)))::float8"
        " FROM ingest.idempotency_keys",
        oldest_params=(ttl,),
        batch=1000,
    )


def audit_rule(settings: RetentionSettings) -> Rule | None:
    keep = settings.ingest_audit_retention_seconds
    if not keep:
        return None
    return Rule(
        "ingest.audit",
        keep,
        delete_sql="SELECT ingest.audit_prune($1, $2)",
        expired_sql="SELECT count(*) FROM ingest.audit WHERE at < now() - make_interval(secs => $1)",
        oldest_sql="SELECT extract(epoch FROM now() - (SELECT at FROM ingest.audit ORDER BY id LIMIT 1))::float8",
        params=(float(keep),),
        counted=True,
    )


def outbox_rule(settings: RetentionSettings) -> Rule | None:
    """The relay's rule (see `exchange.ingest.relay`), None when outbox rows are kept."""
    return Outbox(OUTBOX, retention_seconds=settings.relay_outbox_retention_seconds or None).retention_rule


def api_rules(settings: RetentionSettings) -> list[Rule]:
    """What the ingest process enforces: the keys and the audit rows its requests write."""
    return [rule for rule in (idempotency_rule(settings), audit_rule(settings)) if rule is not None]


def all_rules(settings: RetentionSettings) -> list[Rule]:
    """Every ingest table: `exchange retention run ingest`."""
    rule = outbox_rule(settings)
    return [*api_rules(settings), *([rule] if rule is not None else [])]
