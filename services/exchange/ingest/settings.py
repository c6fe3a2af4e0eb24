"""Settings of the ingest service and its outbox relay (environment variables, 12-factor)."""

from __future__ import annotations

from pydantic import Field, field_validator

from exchange.core.settings import AuthSettings, DatabaseSettings, KafkaSettings, S3Settings, ServiceSettings

TOPIC = "record.ingested.v1"
DAY = 86_400
AUDIT_FLOOR_SECONDS = 30 * DAY
"""The shortest audit retention migration 0007's trigger allows."""


class RetentionSettings(ServiceSettings, DatabaseSettings):
    """How long ingest's tables keep rows (ADR 0013); what `exchange retention run ingest` reads."""

    relay_outbox_retention_seconds: float = Field(
        7 * 86_400.0,
        alias="RELAY_OUTBOX_RETENTION_SECONDS",
        description="Published outbox rows older than this are deleted (7 days default; 0 keeps them all).",
        ge=0,
    )
    relay_prune_seconds: float = Field(
        60.0, alias="RELAY_PRUNE_SECONDS", description="How often the relay deletes expired outbox rows.", gt=0
    )
    ingest_idempotency_ttl_seconds: int = Field(
        86_400,
        alias="INGEST_IDEMPOTENCY_TTL_SECONDS",
        description="How long a key is remembered (24 h default); an expired key is a new key, and its row is deleted.",
        gt=0,
    )
    ingest_audit_retention_seconds: float = Field(
        6 * 365 * DAY,
        alias="INGEST_AUDIT_RETENTION_SECONDS",
        description="Audit rows older than this are deleted (6 years default, HIPAA's documentation retention; "
        "at least 30 days, the floor the database enforces; 0 keeps them all).",
        ge=0,
    )

    @field_validator("ingest_audit_retention_seconds")
    @classmethod
    def _audit_floor(cls, value: float) -> float:
        if 0 < value < AUDIT_FLOOR_SECONDS:
            raise ValueError("INGEST_AUDIT_RETENTION_SECONDS must be 0 (keep all) or at least 30 days (2592000)")
        return value


class RelaySettings(RetentionSettings, KafkaSettings):
    """Everything `exchange serve relay` reads: Postgres (ingest's role) and Kafka; no S3, no auth."""

    ingest_topic: str = Field(TOPIC, alias="INGEST_TOPIC", description="Topic the relay publishes to.")
    relay_batch_size: int = Field(500, alias="RELAY_BATCH_SIZE", description="Outbox rows published per batch.")
    relay_poll_seconds: float = Field(
        1.0, alias="RELAY_POLL_SECONDS", description="Poll interval; NOTIFY wakes the relay sooner."
    )
    relay_publish_timeout: float = Field(
        15.0, alias="RELAY_PUBLISH_TIMEOUT", description="Seconds to wait for broker acks of one batch."
    )
    relay_max_backoff: float = Field(
        30.0, alias="RELAY_MAX_BACKOFF", description="Longest wait between retries while Kafka or Postgres is down."
    )
    relay_metrics_port: int | None = Field(
        None,
        alias="RELAY_METRICS_PORT",
        description="Port of a standalone relay's /healthz, /readyz (Postgres, Kafka) and /metrics; 0 or unset: off.",
    )


class IngestSettings(RelaySettings, S3Settings, AuthSettings):
    """Everything `exchange serve ingest` reads (the relay's settings too: it may run in process)."""

    ingest_max_body_bytes: int = Field(
        1_048_576, alias="INGEST_MAX_BODY_BYTES", description="Largest single record accepted (413 beyond)."
    )
    ingest_max_bulk_bytes: int = Field(
        64 * 1_048_576, alias="INGEST_MAX_BULK_BYTES", description="Largest NDJSON body accepted (413 beyond)."
    )
    ingest_max_bulk_lines: int = Field(
        100_000, alias="INGEST_MAX_BULK_LINES", description="Most lines in one NDJSON body (413 beyond)."
    )
    ingest_idempotency_lock_seconds: int = Field(
        60,
        alias="INGEST_IDEMPOTENCY_LOCK_SECONDS",
        description="After this long an in-flight key whose request crashed may be taken over.",
    )
    ingest_idempotency_purge_seconds: float = Field(
        300.0,
        alias="INGEST_IDEMPOTENCY_PURGE_SECONDS",
        description="How often the ingest process deletes expired keys and audit rows (0 turns it off).",
        ge=0,
    )
    ingest_raw_prefix: str = Field("raw", alias="INGEST_RAW_PREFIX", description="Key prefix of raw objects.")
    ingest_topic_partitions: int = Field(
        3, alias="INGEST_TOPIC_PARTITIONS", description="Partitions when the relay creates the topic."
    )
    ingest_migrate_on_start: bool | None = Field(
        None,
        alias="INGEST_MIGRATE_ON_START",
        description="Apply migrations at start; unset means only when ENV=local (elsewhere `exchange migrate`).",
    )
    ingest_create_bucket_on_start: bool | None = Field(
        None,
        alias="INGEST_CREATE_BUCKET_ON_START",
        description="Create the raw bucket at start; unset means only when ENV=local (elsewhere `exchange "
        "bootstrap`, the operator's bootstrap Job: ingest is then not ready until the bucket exists).",
    )
    ingest_relay_in_process: bool = Field(
        False,
        alias="INGEST_RELAY_IN_PROCESS",
        description="Run the outbox relay inside the ingest process (otherwise `exchange serve relay`).",
    )

    @property
    def migrate_on_start(self) -> bool:
        return self.is_local if self.ingest_migrate_on_start is None else self.ingest_migrate_on_start

    @property
    def create_bucket_on_start(self) -> bool:
        return self.is_local if self.ingest_create_bucket_on_start is None else self.ingest_create_bucket_on_start
