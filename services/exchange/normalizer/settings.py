"""Settings of the normalizer worker and its commands (environment variables, 12-factor)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from exchange.core.settings import DatabaseSettings, KafkaSettings, S3Settings, ServiceSettings
from exchange.core.workload_identity import TokenFile

SOURCE_TOPIC = "record.ingested.v1"
DLQ_TOPIC = "record.ingested.v1.dlq"
NORMALIZED_TOPIC = "record.normalized.v1"
LOCAL_ID_KEY = "exchange-local-canonical-id-key"  # ENV=local only; refused elsewhere
DAY = 86_400


class RetentionSettings(ServiceSettings, DatabaseSettings):
    """How long the normalizer's tables keep rows and how far back a replay may go (ADR 0013); what
    `exchange retention run normalizer` reads."""

    outbox_retention_seconds: float = Field(
        7 * 86_400.0,
        alias="NORMALIZER_OUTBOX_RETENTION_SECONDS",
        description="Published outbox rows older than this are deleted (7 days default; 0 keeps them all).",
        ge=0,
    )
    inbox_retention_seconds: float = Field(
        35 * DAY,
        alias="NORMALIZER_INBOX_RETENTION_SECONDS",
        description="Event ids older than this leave the inbox (35 days default; 0 keeps them all); must stay "
        "longer than NORMALIZER_REPLAY_WINDOW_SECONDS, or a replay could process a record twice.",
        ge=0,
    )
    replay_window_seconds: float = Field(
        30 * DAY,
        alias="NORMALIZER_REPLAY_WINDOW_SECONDS",
        description="How far back `exchange replay --since` may go (30 days default; 0: no limit, only with an "
        "inbox that keeps every event id).",
        ge=0,
    )
    prune_seconds: float = Field(
        60.0, alias="NORMALIZER_PRUNE_SECONDS", description="How often expired inbox and outbox rows are deleted.", gt=0
    )

    @model_validator(mode="after")
    def _inbox_outlives_replay(self) -> RetentionSettings:
        if self.inbox_retention_seconds and not 0 < self.replay_window_seconds < self.inbox_retention_seconds:
            raise ValueError(
                "NORMALIZER_INBOX_RETENTION_SECONDS must be longer than NORMALIZER_REPLAY_WINDOW_SECONDS (a non-zero"
                " window) or 0: a replay older than the inbox would process records twice"
            )
        return self


class NormalizerSettings(RetentionSettings, S3Settings, KafkaSettings):
    """Everything `exchange serve normalizer` and the replay/verify commands read."""

    tokenizer_url: str = Field(
        "http://127.0.0.1:8082", alias="TOKENIZER_URL", description="Base URL of the tokenizer service."
    )
    tokenizer_token: SecretStr | None = Field(
        None,
        alias="TOKENIZER_TOKEN",
        description="Bearer token (scope `tokenize`) for the tokenizer; unset means `dev` (ENV=local only).",
    )
    tokenizer_token_file: Path | None = Field(
        None,
        alias="TOKENIZER_TOKEN_FILE",
        description="File holding that bearer token (on a cluster: the projected ServiceAccount token whose "
        "audience is the tokenizer), read again whenever it changes.",
    )
    tokenizer_timeout: float = Field(5.0, alias="TOKENIZER_TIMEOUT", description="Seconds per tokenizer call.")
    tokenizer_batch: int = Field(
        500, alias="TOKENIZER_BATCH", ge=1, description="People per tokenizer call (≤ the tokenizer's limit)."
    )
    normalizer_id_key: SecretStr | None = Field(
        None,
        alias="NORMALIZER_ID_KEY",
        description="HMAC key deriving canonical ids from source ids (so MRNs cannot be guessed back).",
    )
    normalizer_group: str = Field("normalizer", alias="NORMALIZER_GROUP", description="Kafka consumer group.")
    normalizer_topic: str = Field(SOURCE_TOPIC, alias="NORMALIZER_TOPIC", description="Topic consumed.")
    normalizer_dlq_topic: str = Field(DLQ_TOPIC, alias="NORMALIZER_DLQ_TOPIC", description="Dead-letter topic.")
    normalizer_out_topic: str = Field(
        NORMALIZED_TOPIC, alias="NORMALIZER_OUT_TOPIC", description="Topic of record.normalized.v1."
    )
    normalizer_batch: int = Field(
        500, alias="NORMALIZER_BATCH", ge=1, description="Most events per poll, processed in one transaction."
    )
    normalizer_backoff_max: float = Field(
        10.0, alias="NORMALIZER_BACKOFF_MAX", description="Longest wait between retries of a transient failure."
    )
    normalizer_object_cache_bytes: int = Field(
        128 * 1024 * 1024,
        alias="NORMALIZER_OBJECT_CACHE_BYTES",
        description="Raw objects kept in memory between batches (bulk NDJSON objects serve many events).",
    )
    normalizer_migrate_on_start: bool | None = Field(
        None,
        alias="NORMALIZER_MIGRATE_ON_START",
        description="Apply migrations at start; unset means only when ENV=local (elsewhere `exchange migrate`).",
    )
    normalizer_metrics_port: int | None = Field(
        9102, alias="NORMALIZER_METRICS_PORT", description="/healthz, /readyz, /metrics port; 0 or unset: off."
    )
    raw_prefix: str = Field(
        "raw", alias="INGEST_RAW_PREFIX", description="Key prefix of raw objects (ingest writes <prefix>/<tenant>/…)."
    )
    relay_poll_seconds: float = Field(
        0.5, alias="NORMALIZER_RELAY_POLL_SECONDS", description="Outbox poll interval of the in-process relay."
    )

    @model_validator(mode="after")
    def _id_key_outside_local(self) -> NormalizerSettings:
        if self.normalizer_id_key is None and not self.is_local:
            raise ValueError("NORMALIZER_ID_KEY is required unless ENV=local")
        if self.tokenizer_token is None and self.tokenizer_token_file is None and not self.is_local:
            raise ValueError("TOKENIZER_TOKEN or TOKENIZER_TOKEN_FILE is required unless ENV=local")
        return self

    @property
    def migrate_on_start(self) -> bool:
        return self.is_local if self.normalizer_migrate_on_start is None else self.normalizer_migrate_on_start

    @property
    def id_key(self) -> bytes:
        key = self.normalizer_id_key.get_secret_value() if self.normalizer_id_key else LOCAL_ID_KEY
        return key.encode()

    def tokenizer_credentials(self) -> Callable[[], str]:
        """The bearer for the tokenizer, asked for on every call: the file (re-read once the kubelet
        rotates it; ConfigError while it is unreadable), else the variable, else `dev` (ENV=local)."""
        if self.tokenizer_token_file is not None:
            return TokenFile(self.tokenizer_token_file, "TOKENIZER_TOKEN_FILE")
        bearer = self.tokenizer_token.get_secret_value() if self.tokenizer_token else "dev"
        return lambda: bearer
