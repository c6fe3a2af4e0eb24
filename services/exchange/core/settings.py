"""Typed settings from the environment (12-factor), one class per concern.

Every class derives from `ExchangeSettings`, which reads `ENV` and refuses placeholder secrets
(`changeme`, `password`, `dev`, …, or an empty value) unless `ENV=local`. A service composes the
concerns it needs; each field's description says what it is and why.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from exchange.core.errors import ConfigError

PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "password",
        "dev",
        "test",
        "placeholder",
        "example",
        "minioadmin",
        "admin",
        "postgres",
        "xxx",
        "todo",
    }
)


class Environment(StrEnum):
    """Where the process runs. Only `local` relaxes the secret and auth checks."""

    LOCAL = "local"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"


class ExchangeSettings(BaseSettings):
    """Base of every settings class: the environment and the placeholder-secret guard."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, populate_by_name=True)

    env: Environment = Field(
        Environment.PRODUCTION,
        alias="ENV",
        description="Deployment environment; defaults to the strictest so a forgotten ENV is safe.",
    )

    @property
    def is_local(self) -> bool:
        return self.env is Environment.LOCAL

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> ExchangeSettings:
        if self.is_local:
            return self
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                secret = value.get_secret_value()
                if name.endswith("_url"):
                    secret = urlsplit(secret).password or ""
                    if not secret:
                        continue
                if secret.strip().lower() in PLACEHOLDER_SECRETS:
                    raise ValueError(f"{name.upper()} holds a placeholder secret; set a real one (ENV={self.env})")
        return self


T = TypeVar("T", bound=ExchangeSettings)


def load(cls: type[T], **overrides: Any) -> T:
    """Build settings, turning pydantic's validation error into a one-line ConfigError.

    The error names the variables, never their values.
    """
    try:
        return cls(**overrides)
    except ValidationError as exc:
        reasons = "; ".join(
            (f"{'.'.join(str(p) for p in err['loc']).upper()}: " if err["loc"] else "")
            + str(err["msg"]).removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings for {cls.__name__}: {reasons}") from None


class ServiceSettings(ExchangeSettings):
    """Process-level settings every service shares."""

    log_level: str = Field("INFO", alias="LOG_LEVEL", description="Root log level.")
    log_json: bool = Field(True, alias="LOG_JSON", description="JSON logs (false: console renderer).")
    host: str = Field("127.0.0.1", alias="HOST", description="Address the HTTP server binds to.")
    port: int = Field(8080, alias="PORT", description="Port the HTTP server binds to.")
    metrics_port: int | None = Field(
        None,
        ge=0,
        alias="METRICS_PORT",
        description="Port an HTTP service serves /metrics (and /healthz, /readyz) on besides its own, which an "
        "Ingress does not route; outside ENV=local it is the only place /metrics is served (unset or 0: nowhere).",
    )
    startup_wait_seconds: float = Field(
        90.0,
        ge=0,
        alias="STARTUP_WAIT_SECONDS",
        description="How long start-up waits for Postgres, Kafka or S3 to answer before giving up: Pods start "
        "together with their engines (the operator's startup probes allow 120 s).",
    )


class HttpServerSettings(ExchangeSettings):
    """Limits of the HTTP server (exchange.core.server), enforced before a request reaches the app.
    An ingress in front has its own, usually looser ones (README, Security): these are the floor."""

    http_max_header_bytes: int = Field(
        32_768,
        ge=1024,
        alias="HTTP_MAX_HEADER_BYTES",
        description="Largest request head (request line and header fields); 431 beyond. ingress-nginx's default "
        "buffers hold 4 x 8 KiB.",
    )
    http_max_headers: int = Field(
        100, ge=8, alias="HTTP_MAX_HEADERS", description="Most header fields in a request; 431 beyond."
    )
    http_header_timeout: float = Field(
        10.0,
        gt=0,
        alias="HTTP_HEADER_TIMEOUT",
        description="Seconds from a request's first byte (or a new connection) to the end of its head; 408 and "
        "the connection closed after.",
    )
    http_body_timeout: float = Field(
        30.0,
        gt=0,
        alias="HTTP_BODY_TIMEOUT",
        description="Longest pause, in seconds, while a client sends a body; 408 and the connection closed after.",
    )
    http_keepalive_timeout: int = Field(
        75,
        ge=1,
        alias="HTTP_KEEPALIVE_TIMEOUT",
        description="Seconds an idle keep-alive connection is kept: longer than an ingress keeps its idle upstream "
        "connections (ingress-nginx 60 s, Skipper 20 s), so the ingress, not the service, closes them.",
    )
    http_max_connections: int = Field(
        1000,
        ge=1,
        alias="HTTP_MAX_CONNECTIONS",
        description="Connections or requests in progress (uvicorn's limit_concurrency) beyond which a request is "
        "answered 503 with Retry-After.",
    )


class DatabaseSettings(ExchangeSettings):
    """Postgres connection (asyncpg pool)."""

    database_url: SecretStr = Field(alias="DATABASE_URL", description="postgresql:// DSN of this service's role.")
    db_pool_min: int = Field(1, alias="DB_POOL_MIN", description="Connections kept open.")
    db_pool_max: int = Field(10, alias="DB_POOL_MAX", description="Upper bound of pooled connections.")
    db_command_timeout: float = Field(10.0, alias="DB_COMMAND_TIMEOUT", description="Seconds per statement.")
    db_connect_timeout: float = Field(
        5.0,
        gt=0,
        alias="DB_CONNECT_TIMEOUT",
        description="Seconds to open a connection (TCP, TLS, startup, auth) before it is given up and retried.",
    )


class S3Settings(ExchangeSettings):
    """S3-compatible object storage (raw zone)."""

    s3_endpoint_url: str | None = Field(None, alias="S3_ENDPOINT_URL", description="Endpoint; unset means AWS.")
    s3_region: str = Field("us-east-1", alias="S3_REGION", description="Region used to sign requests.")
    s3_access_key_id: SecretStr = Field(alias="S3_ACCESS_KEY_ID", description="Access key id.")
    s3_secret_access_key: SecretStr = Field(alias="S3_SECRET_ACCESS_KEY", description="Secret access key.")
    s3_bucket_raw: str = Field("exchange-raw", alias="S3_BUCKET_RAW", description="Bucket of the raw zone.")
    s3_timeout: float = Field(5.0, alias="S3_TIMEOUT", description="Connect/read timeout in seconds.")


class KafkaSettings(ExchangeSettings):
    """Kafka-protocol brokers (Apache Kafka locally; Redpanda or Apache Kafka in a cluster)."""

    kafka_bootstrap_servers: str = Field(alias="KAFKA_BOOTSTRAP_SERVERS", description="host:port[,host:port].")
    kafka_client_id: str = Field("exchange", alias="KAFKA_CLIENT_ID", description="Client id sent to brokers.")
    kafka_security_protocol: str = Field(
        "PLAINTEXT", alias="KAFKA_SECURITY_PROTOCOL", description="PLAINTEXT|SSL|SASL_SSL."
    )
    kafka_sasl_mechanism: str | None = Field(None, alias="KAFKA_SASL_MECHANISM", description="e.g. SCRAM-SHA-512.")
    kafka_sasl_username: str | None = Field(None, alias="KAFKA_SASL_USERNAME", description="SASL user.")
    kafka_sasl_password: SecretStr | None = Field(None, alias="KAFKA_SASL_PASSWORD", description="SASL password.")


class AuthSettings(ExchangeSettings):
    """JWT verification (keys from a JWKS URL). `Bearer dev` works only when ENV=local."""

    jwt_issuer: str | None = Field(None, alias="JWT_ISSUER", description="Required `iss` claim.")
    jwt_audience: str | None = Field(None, alias="JWT_AUDIENCE", description="Required `aud` claim.")
    jwks_url: str | None = Field(None, alias="JWKS_URL", description="Where signing keys are fetched.")
    jwt_algorithms: list[str] = Field(
        ["RS256", "ES256", "PS256", "EdDSA"],
        alias="JWT_ALGORITHMS",
        description="Allow-listed asymmetric algorithms; HS* and none are never accepted.",
    )
    jwt_leeway_seconds: int = Field(30, alias="JWT_LEEWAY_SECONDS", description="Clock skew allowed on exp/nbf.")
    jwt_max_lifetime_seconds: int = Field(
        86_400,
        ge=60,
        alias="JWT_MAX_LIFETIME_SECONDS",
        description="Longest lifetime (`exp - iat`) of a partner token accepted: a stolen long-lived token is a "
        "long-lived breach (24 h default; ServiceAccount tokens are not subject to it).",
    )
    jwt_tenant_claim: str = Field(
        "tenant", alias="JWT_TENANT_CLAIM", description="Claim naming the tenant; falls back to `sub`."
    )
    jwks_cache_seconds: int = Field(300, alias="JWKS_CACHE_SECONDS", description="How long fetched keys are reused.")
    jwt_cache_seconds: int = Field(
        60,
        ge=0,
        alias="JWT_CACHE_SECONDS",
        description="How long a verified token is accepted again without re-verifying it (never past its "
        "exp + leeway; 0 verifies every request).",
    )
    jwt_cache_size: int = Field(
        10_000, ge=1, alias="JWT_CACHE_SIZE", description="Most verified tokens held (least recently used go)."
    )
    dev_tenant: str = Field("dev", alias="DEV_TENANT", description="Tenant of `Bearer dev` (local only).")

    @property
    def partner_jwt_required(self) -> bool:
        """Whether JWT_ISSUER, JWT_AUDIENCE and JWKS_URL must be set: outside ENV=local, unless the
        service verifies other tokens (ServiceTokenSettings)."""
        return not self.is_local

    @model_validator(mode="after")
    def _jwt_complete_outside_local(self) -> AuthSettings:
        if self.partner_jwt_required and not (self.jwt_issuer and self.jwt_audience and self.jwks_url):
            raise ValueError("JWT_ISSUER, JWT_AUDIENCE and JWKS_URL are required unless ENV=local")
        bad = [a for a in self.jwt_algorithms if a.upper().startswith("HS") or a.lower() == "none"]
        if bad:
            raise ValueError(f"JWT_ALGORITHMS must be asymmetric; refused {bad}")
        return self


SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where the kubelet mounts a Pod's own ServiceAccount token and the cluster CA."""


class ServiceTokenSettings(AuthSettings):
    """Callers that are workloads of the same cluster (workload identity, ADR 0008).

    `SERVICE_AUTH=serviceaccount` makes a service accept Kubernetes ServiceAccount tokens of exactly
    one ServiceAccount (`SERVICE_TOKEN_SUBJECT`) bound to its audience, verified against the cluster's
    service-account issuer keys; the partner JWT settings (`JWT_ISSUER`, ...) are then not used. The
    JWT_ALGORITHMS, JWT_LEEWAY_SECONDS, JWKS_CACHE_SECONDS and JWT_CACHE_* settings apply to both.
    """

    service_auth: Literal["jwt", "serviceaccount"] = Field(
        "jwt",
        alias="SERVICE_AUTH",
        description="How callers authenticate: `jwt` (partner tokens from JWKS_URL; `Bearer dev` when ENV=local) "
        "or `serviceaccount` (ServiceAccount tokens of SERVICE_TOKEN_SUBJECT only, even when ENV=local).",
    )
    service_token_audience: str | None = Field(
        None, alias="SERVICE_TOKEN_AUDIENCE", description="The `aud` a caller's token must carry: this service."
    )
    service_token_subject: str | None = Field(
        None,
        alias="SERVICE_TOKEN_SUBJECT",
        pattern=r"^system:serviceaccount:[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-.a-z0-9]*[a-z0-9])?$",
        description="The one caller accepted: `system:serviceaccount:<namespace>:<name>`.",
    )
    service_token_issuer: str | None = Field(
        None,
        alias="SERVICE_TOKEN_ISSUER",
        description="Expected `iss`; unset: the API server's own (its /.well-known/openid-configuration).",
    )
    kubernetes_api_url: str = Field(
        "https://kubernetes.default.svc",
        alias="KUBERNETES_API_URL",
        description="API server serving the issuer's discovery document and keys (/openid/v1/jwks).",
    )
    kubernetes_ca_file: Path = Field(
        SERVICE_ACCOUNT_DIR / "ca.crt", alias="KUBERNETES_CA_FILE", description="CA of the API server."
    )
    kubernetes_token_file: Path = Field(
        SERVICE_ACCOUNT_DIR / "token",
        alias="KUBERNETES_TOKEN_FILE",
        description="This Pod's own token, sent to read the keys (re-read as the kubelet rotates it).",
    )

    @property
    def partner_jwt_required(self) -> bool:
        return not self.is_local and self.service_auth == "jwt"

    @model_validator(mode="after")
    def _service_token_complete(self) -> ServiceTokenSettings:
        if self.service_auth == "serviceaccount" and not (self.service_token_audience and self.service_token_subject):
            raise ValueError("SERVICE_AUTH=serviceaccount requires SERVICE_TOKEN_AUDIENCE and SERVICE_TOKEN_SUBJECT")
        return self
