"""Tokenizer settings (environment variables); each field says what it is and why."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from exchange.core.settings import ServiceSettings, ServiceTokenSettings


class TokenizerSettings(ServiceSettings, ServiceTokenSettings):
    """The tokenizer service: its secret, batch limits and the shared HTTP/auth settings.

    Callers: partner JWTs with scope `tokenize` (SERVICE_AUTH=jwt, the default; `make dev`), or on a
    cluster the normalizer's ServiceAccount token only (SERVICE_AUTH=serviceaccount, set by the operator).
    """

    port: int = Field(8082, alias="PORT", description="Port the HTTP server binds to.")
    tokenization_secret_file: Path | None = Field(
        None,
        alias="TOKENIZATION_SECRET_FILE",
        description="File holding the HMAC secret (a Kubernetes Secret mount); preferred over the env value.",
    )
    tokenization_secret: SecretStr | None = Field(
        None,
        alias="TOKENIZATION_SECRET",
        description="The HMAC secret itself, when no file is mounted (local use).",
    )
    tokenization_key_id: str | None = Field(
        None,
        alias="TOKENIZATION_KEY_ID",
        description="Public id stamped on tokens; default: first 8 hex of SHA-256(secret).",
    )
    transit_keys_dir: Path | None = Field(
        None,
        alias="TRANSIT_KEYS_DIR",
        description="Directory of transit key files, one per sender (a Secret mount); unset: decode knows no sender.",
    )
    tokenizer_max_batch: int = Field(
        1000, alias="TOKENIZER_MAX_BATCH", ge=1, description="Most records per request; more is a 413."
    )
    tokenizer_max_body_bytes: int = Field(
        4 * 1024 * 1024, alias="TOKENIZER_MAX_BODY_BYTES", ge=1024, description="Largest request body; more is a 413."
    )
