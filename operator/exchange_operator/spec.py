"""The ExchangePipeline API: typed models that are the ONE source of the CRD schema.

`crd.py` turns these models into the CRD's structural OpenAPI schema (descriptions, defaults,
CEL rules); the handlers parse `spec` with the very same models. Every cross-field rule is a
`Rule`: its CEL expression goes into `x-kubernetes-validations` (the API server rejects the
object) and its Python predicate runs when the operator parses the spec (same message), so an
API server that skipped validation still cannot hand the builders an invalid spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel

GROUP = "exchange.dev"
VERSION = "v1alpha1"
KIND = "ExchangePipeline"
PLURAL = "exchangepipelines"
SINGULAR = "exchangepipeline"
SHORT_NAMES = ("xpl",)
COMPONENTS = ("ingest", "relay", "tokenizer", "normalizer", "query")
"""The five services, in dependency order (the builders and the status use this order)."""
ENGINES = ("postgres", "kafka", "s3")
MAX_NAME_LENGTH = 40
"""Longest pipeline name: children append suffixes such as `-normalizer` within DNS-1035's 63."""


@dataclass(frozen=True)
class Rule:
    """A cross-field constraint: CEL for the API server, a predicate for the operator."""

    cel: str
    message: str
    check: Callable[[Any], bool]

    def as_validation(self) -> dict[str, str]:
        return {"rule": self.cel, "message": self.message}


class Model(BaseModel):
    """Base: camelCase on the wire, unknown fields rejected (the API server prunes them first)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    rules: ClassVar[tuple[Rule, ...]] = ()

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema: dict[str, Any] = handler(core_schema)
        if cls.rules:
            target = handler.resolve_ref_schema(schema)
            target["x-kubernetes-validations"] = [r.as_validation() for r in cls.rules]
        return schema

    @model_validator(mode="after")
    def _check_rules(self) -> Model:
        for rule in self.rules:
            if not rule.check(self):
                raise ValueError(rule.message)
        return self


def _quantity(value: Any) -> str:
    return str(value)


Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    WithJsonSchema({"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}),
]
"""A Kubernetes resource quantity (`500m`, `1Gi`, `2`); integers are accepted and kept as text."""


class ResourceList(Model):
    """Amounts of CPU and memory."""

    cpu: Quantity | None = Field(None, description="CPU, in cores or millicores (`250m`).")
    memory: Quantity | None = Field(None, description="Memory, in bytes with a suffix (`512Mi`).")


class Resources(Model):
    """Compute resources of a container, as in a Pod spec."""

    requests: ResourceList = Field(
        default_factory=lambda: ResourceList(cpu="100m", memory="256Mi"),
        description="What the scheduler reserves for the container.",
    )
    limits: ResourceList = Field(
        default_factory=lambda: ResourceList(memory="512Mi"),
        description="Hard caps; memory over the limit kills the container. CPU is left unlimited.",
    )


class ImageSpec(Model):
    """The one container image that holds every Exchange service."""

    repository: str = Field("exchange", min_length=1, description="Image repository, without the tag.")
    tag: str = Field("0.1.0", min_length=1, description="Image tag (or a digest such as `sha256:...`).")
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="When the kubelet pulls the image."
    )


class ComponentSpec(Model):
    """One Exchange service: how many replicas, which image, which resources."""

    replicas: int = Field(1, ge=0, le=100, description="Desired Pods (0 is allowed; see also spec.suspend).")
    image: str | None = Field(
        None, min_length=1, description="Full image reference overriding spec.image for this service only."
    )
    resources: Resources = Field(default_factory=Resources, description="Container requests and limits.")


class ComponentsSpec(Model):
    """The five services of a pipeline."""

    ingest: ComponentSpec = Field(default_factory=ComponentSpec, description="HTTP ingest API (`/v1/ingest`).")
    relay: ComponentSpec = Field(
        default_factory=ComponentSpec,
        description="Outbox relay: publishes what ingest accepted to Kafka (`record.ingested.v1`), at least once.",
    )
    tokenizer: ComponentSpec = Field(
        default_factory=ComponentSpec, description="Replaces PII with tokens; the only holder of the secret."
    )
    normalizer: ComponentSpec = Field(
        default_factory=ComponentSpec, description="Kafka consumer writing the de-identified canonical model."
    )
    query: ComponentSpec = Field(default_factory=ComponentSpec, description="Read-only GraphQL API (`/graphql`).")


class IngressRoute(Model):
    """Where one service is published through the Ingress."""

    host: str | None = Field(None, description="Host name to match; absent matches every host.")
    path: str = Field(
        "/",
        pattern=r"^/",
        description="Path prefix routed to the service, passed through unchanged: a prefix of what the service "
        "serves (ingest: `/v1/ingest`, `/v1/ingest/bulk`; query: `/graphql`), such as `/`, `/v1` or `/graphql`.",
    )


class IngressTLS(Model):
    """TLS termination at the Ingress."""

    secret_name: str = Field(..., min_length=1, description="kubernetes.io/tls Secret in this namespace.")
    hosts: list[str] = Field(default_factory=list, description="Host names the certificate covers.")


class IngressSpec(Model):
    """Publishing ingest and query outside the cluster."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.tls) || size(self.tls.hosts) > 0",
            "ingress.tls requires at least one host in ingress.tls.hosts",
            lambda s: s.tls is None or len(s.tls.hosts) > 0,
        ),
        Rule(
            "!self.enabled || has(self.ingest) || has(self.query)",
            "ingress.enabled requires ingress.ingest or ingress.query",
            lambda s: not s.enabled or s.ingest is not None or s.query is not None,
        ),
    )

    enabled: bool = Field(False, description="Create Ingress objects for the routes below.")
    class_name: str | None = Field(None, description="IngressClass name (`nginx`); absent uses the default.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations for the Ingresses.")
    ingest: IngressRoute | None = Field(None, description="Route to the ingest service.")
    query: IngressRoute | None = Field(None, description="Route to the query service.")
    tls: IngressTLS | None = Field(None, description="TLS for both routes; absent serves plain HTTP.")


class PostgresExporterSpec(Model):
    """A postgres_exporter sidecar next to the managed Postgres (connections, transactions, locks, WAL)."""

    enabled: bool = Field(True, description="Run the sidecar; its `metrics` port (9187) is scraped like the services'.")
    image: str = Field(
        "prometheuscommunity/postgres-exporter:v0.17.1",
        min_length=1,
        description="postgres_exporter image (it reads DATA_SOURCE_URI, DATA_SOURCE_USER and DATA_SOURCE_PASS).",
    )


class MonitoringSpec(Model):
    """Who scrapes the services' and the managed engines' metrics, and where their traces go."""

    namespace: str = Field(
        "monitoring",
        min_length=1,
        max_length=63,
        description="Namespace whose Pods (Prometheus) may reach every service's `metrics` port (9102) and the "
        "managed engines' metrics ports; a NetworkPolicy refuses everyone else, and no Ingress routes them.",
    )
    pod_monitor: bool = Field(
        True,
        description="Create a PodMonitor for the `metrics` port of the services and the managed engines when the "
        "Prometheus Operator's CRDs (monitoring.coreos.com/v1) exist in the cluster. The Pods also carry "
        "`prometheus.io/*` annotations.",
    )
    scrape_interval: str = Field(
        "30s", pattern=r"^[0-9]+(ms|s|m)$", description="How often the PodMonitor has the services scraped."
    )
    postgres_exporter: PostgresExporterSpec = Field(
        default_factory=PostgresExporterSpec, description="Metrics of the managed Postgres (ignored when external)."
    )
    otlp_endpoint: str | None = Field(
        None,
        pattern=r"^https?://",
        description="OTLP endpoint the services export traces to (OTEL_EXPORTER_OTLP_ENDPOINT, e.g. "
        "`http://otel-collector.monitoring:4318`); absent: no exporter is configured.",
    )


class AuthSpec(Model):
    """How callers of ingest and query authenticate."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "self.mode != 'jwt' || (has(self.issuer) && has(self.audience) && has(self.jwksUrl))",
            "auth.mode=jwt requires auth.issuer, auth.audience and auth.jwksUrl",
            lambda s: s.mode != "jwt" or bool(s.issuer and s.audience and s.jwks_url),
        ),
    )

    mode: Literal["dev", "jwt"] = Field(
        "dev", description="`dev` accepts `Bearer dev` (local clusters only); `jwt` verifies signed tokens."
    )
    issuer: str | None = Field(None, min_length=1, description="Expected `iss` claim (jwt mode).")
    audience: str | None = Field(None, min_length=1, description="Expected `aud` claim (jwt mode).")
    jwks_url: str | None = Field(None, pattern=r"^https?://", description="URL of the issuer's JWKS (jwt mode).")
    token_cache_seconds: int | None = Field(
        None,
        ge=0,
        le=3600,
        description="How long a token that verified is accepted again without re-checking it, never past its "
        "`exp` (JWT_CACHE_SECONDS; absent: the services' default, 60; 0: verify every request).",
    )


class SecretKeyRef(Model):
    """A key of a Secret in the pipeline's namespace."""

    name: str = Field(..., min_length=1, description="Secret name.")
    key: str = Field("secret", min_length=1, description="Key within the Secret.")


class TokenizationSpec(Model):
    """The tokenization secret: same person + same secret gives the same tokens."""

    secret_ref: SecretKeyRef | None = Field(
        None,
        description="Use this existing Secret. Absent: the operator generates one once and never rotates it.",
    )


class SecretRef(Model):
    """A Secret in the pipeline's namespace."""

    name: str = Field(..., min_length=1, description="Secret name.")


class Storage(Model):
    """A PersistentVolumeClaim template."""

    size: Quantity = Field("10Gi", description="Requested volume size.")
    storage_class_name: str | None = Field(None, description="StorageClass; absent uses the default class.")


def _engine_rules(engine: str, flavored: bool = False) -> tuple[Rule, ...]:
    rules: tuple[Rule, ...] = (
        Rule(
            "self.mode == 'external' ? has(self.secretRef) : !has(self.secretRef)",
            f"engines.{engine}: mode external requires secretRef; mode managed forbids it",
            lambda s: (s.secret_ref is not None) == (s.mode == "external"),
        ),
    )
    if flavored:
        rules += (
            Rule(
                "self.mode == 'managed' || !has(self.managed) || !has(self.managed.flavor)",
                f"engines.{engine}: managed.flavor is for mode managed; mode external runs nothing here",
                lambda s: s.mode == "managed" or s.managed.flavor is None,
            ),
        )
    return rules


KAFKA_FLAVORS: dict[str, str] = {
    "redpanda": "redpandadata/redpanda:v24.2.18",
    "apache-kafka": "apache/kafka:4.1.1",
}
"""Kafka flavor -> its default image; the first is the default flavor."""
S3_FLAVORS: dict[str, str | None] = {
    "minio": "minio/minio:RELEASE.2025-04-22T22-12-26Z",
    "s3proxy": None,  # no upstream release tag is pinned here: the spec names the image
}
"""S3 flavor -> its default image (None: managed.image is required); the first is the default flavor."""


def _jvm_resources() -> Resources:
    return Resources(requests=ResourceList(cpu="250m", memory="1Gi"), limits=ResourceList(memory="1Gi"))


class ManagedEngine(Model):
    """A StatefulSet the operator runs for this pipeline."""

    storage: Storage = Field(default_factory=Storage, description="Data volume.")


class ManagedPostgres(ManagedEngine):
    """A single PostgreSQL instance with one role per service."""

    image: str = Field(
        "postgres:17.2",
        min_length=1,
        description="PostgreSQL image with the official image's contract (POSTGRES_* variables, PGDATA, "
        "/docker-entrypoint-initdb.d, uid 999, pg_isready).",
    )
    resources: Resources = Field(default_factory=Resources, description="Container requests and limits.")


class ManagedKafka(ManagedEngine):
    """A single-node Kafka-protocol broker. Its StatefulSet is named after the flavor (`<name>-redpanda`,
    `<name>-kafka`), so two flavors never share a data volume; the client Service is `<name>-kafka` either way."""

    flavor: Literal["redpanda", "apache-kafka"] | None = Field(
        None,
        description="`redpanda` (absent): Redpanda in dev-container mode. `apache-kafka`: Apache Kafka in KRaft "
        "mode, one combined broker + controller node, configured through KAFKA_* variables like the official "
        "apache/kafka image (uid 1000, data in /var/lib/kafka/data).",
    )
    image: str | None = Field(
        None,
        min_length=1,
        description="Container image; absent: the flavor's default ("
        + ", ".join(f"{f}: {i}" for f, i in KAFKA_FLAVORS.items())
        + ").",
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port on which the image itself serves Prometheus metrics at /metrics (localhost/kafka: 9308, "
        "its JMX exporter agent); declared as the `metrics` port and scraped. Absent: the broker is not scraped "
        "(the official apache/kafka image serves none).",
    )
    resources: Resources | None = Field(
        None,
        description="Container requests and limits; absent: the flavor's (redpanda: 100m CPU and 256Mi requested, "
        "512Mi limit; apache-kafka, a JVM whose heap is half the memory limit: 250m CPU and 1Gi requested, 1Gi limit).",
    )

    @property
    def kind(self) -> str:
        """The flavor in effect."""
        return self.flavor or next(iter(KAFKA_FLAVORS))

    def image_or_default(self) -> str:
        return self.image or KAFKA_FLAVORS[self.kind]

    def resources_or_default(self) -> Resources:
        if self.resources is not None:
            return self.resources
        return _jvm_resources() if self.kind == "apache-kafka" else Resources()


class ManagedS3(ManagedEngine):
    """A single-node S3 server. Its StatefulSet is named after the flavor (`<name>-minio`, `<name>-s3proxy`),
    so two flavors never share a data volume; the client Service is `<name>-s3` either way."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.flavor) || self.flavor != 's3proxy' || has(self.image)",
            "engines.s3.managed: flavor s3proxy requires image (no default image is pinned for it)",
            lambda s: s.flavor != "s3proxy" or s.image is not None,
        ),
    )

    flavor: Literal["minio", "s3proxy"] | None = Field(
        None,
        description="`minio` (absent): MinIO. `s3proxy`: s3proxy with its filesystem backend, configured through "
        "the upstream image's S3PROXY_* and JCLOUDS_* variables (uid 1000, data in /data, port 9000); "
        "requires image.",
    )
    image: str | None = Field(
        None,
        min_length=1,
        description=f"Container image; absent: the flavor's default (minio: {S3_FLAVORS['minio']}; s3proxy has none).",
    )
    resources: Resources | None = Field(
        None, description="Container requests and limits; absent: 100m CPU and 256Mi requested, 512Mi limit."
    )

    @property
    def kind(self) -> str:
        """The flavor in effect."""
        return self.flavor or next(iter(S3_FLAVORS))

    def image_or_default(self) -> str:
        image = self.image or S3_FLAVORS[self.kind]
        if image is None:  # the rule above makes this unreachable for a validated spec
            raise ValueError("engines.s3.managed: flavor s3proxy requires image")
        return image

    def resources_or_default(self) -> Resources:
        return self.resources or Resources()


class EngineSpec(Model):
    """Common shape: `managed` runs it here, `external` reads endpoints and credentials from a Secret."""

    mode: Literal["managed", "external"] = Field(
        "managed", description="`managed`: a StatefulSet in this namespace. `external`: see secretRef."
    )
    secret_ref: SecretRef | None = Field(None, description="external only: Secret with endpoints and credentials.")


class PostgresSpec(EngineSpec):
    """PostgreSQL. External Secret keys: migrate-url, ingest-url, normalizer-url, query-url (DSNs, one role each)."""

    rules: ClassVar[tuple[Rule, ...]] = _engine_rules("postgres")
    managed: ManagedPostgres = Field(default_factory=ManagedPostgres, description="managed only: the StatefulSet.")


class KafkaSpec(EngineSpec):
    """Kafka protocol. External Secret keys: bootstrap-servers, optional security-protocol, sasl-mechanism,
    sasl-username, sasl-password."""

    rules: ClassVar[tuple[Rule, ...]] = _engine_rules("kafka", flavored=True)
    managed: ManagedKafka = Field(default_factory=ManagedKafka, description="managed only: the StatefulSet.")
    partitions: int = Field(6, ge=1, le=1000, description="Partitions of each topic the bootstrap Job creates.")


class S3Spec(EngineSpec):
    """S3 protocol. External Secret keys: endpoint-url, access-key-id, secret-access-key, optional region."""

    rules: ClassVar[tuple[Rule, ...]] = _engine_rules("s3", flavored=True)
    managed: ManagedS3 = Field(default_factory=ManagedS3, description="managed only: the StatefulSet.")
    bucket: str = Field(
        "exchange-raw", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="Bucket of the raw zone."
    )


class EnginesSpec(Model):
    """The three engines every pipeline needs."""

    postgres: PostgresSpec = Field(default_factory=PostgresSpec, description="Canonical model, outbox, audit.")
    kafka: KafkaSpec = Field(default_factory=KafkaSpec, description="Event streams between the services.")
    s3: S3Spec = Field(default_factory=S3Spec, description="Raw zone: every record as received.")


class ExchangePipelineSpec(Model):
    """Desired state of one Exchange pipeline: five services and their engines."""

    suspend: bool = Field(False, description="Scale every service to zero; engines and data stay.")
    image: ImageSpec = Field(default_factory=ImageSpec, description="Image of the services.")
    image_pull_secrets: list[str] = Field(default_factory=list, description="Secrets for pulling the images.")
    components: ComponentsSpec = Field(default_factory=ComponentsSpec, description="Per-service settings.")
    ingress: IngressSpec = Field(default_factory=IngressSpec, description="Ingress for ingest and query.")
    auth: AuthSpec = Field(default_factory=AuthSpec, description="Caller authentication.")
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec, description="Metrics scraping.")
    tokenization: TokenizationSpec = Field(default_factory=TokenizationSpec, description="Tokenization secret.")
    engines: EnginesSpec = Field(default_factory=EnginesSpec, description="PostgreSQL, Kafka and S3.")
    volume_claim_deletion_policy: Literal["Retain", "Delete"] = Field(
        "Retain",
        description="On pipeline deletion: `Retain` keeps engine volumes and generated Secrets, `Delete` removes them.",
    )


class Phase(StrEnum):
    """Summary of a pipeline's state (status.phase); absent until the first reconcile.

    Every value is documented in PHASE_MEANINGS, which also feeds the CRD's description.
    """

    PROGRESSING = "Progressing"
    READY = "Ready"
    DEGRADED = "Degraded"
    SUSPENDED = "Suspended"
    FAILED = "Failed"


PHASE_MEANINGS: dict[Phase, str] = {
    Phase.PROGRESSING: "children applied, some components not ready yet (rollout, first start)",
    Phase.READY: "every Job completed and every workload is ready: records are accepted and normalized",
    Phase.DEGRADED: (
        "something will not fix itself: a Job failed, a container crash-loops or cannot get its image, a"
        " service of the record path is scaled to zero, or a referenced Secret is missing; the message"
        " names the child and the reason"
    ),
    Phase.SUSPENDED: "spec.suspend is true: services scaled to zero, engines running",
    Phase.FAILED: "the spec is invalid; nothing changes until it is fixed",
}


class Condition(Model):
    """A standard Kubernetes condition."""

    type: str = Field(..., description="Ready, Progressing or Degraded.")
    status: Literal["True", "False", "Unknown"] = Field(..., description="True, False or Unknown.")
    reason: str = Field(..., description="One CamelCase word for machines.")
    message: str = Field("", description="One sentence for people.")
    last_transition_time: str = Field(..., description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(None, description="metadata.generation this condition describes.")


class ComponentStatus(Model):
    """Ready versus desired Pods of one workload."""

    ready: int = Field(0, description="Pods passing readiness.")
    desired: int = Field(0, description="Pods wanted.")


class Endpoints(Model):
    """Where to reach the pipeline."""

    ingest: str | None = Field(None, description="Ingest base URL (through the Ingress when enabled).")
    query: str | None = Field(None, description="GraphQL URL.")


class ExchangePipelineStatus(Model):
    """Observed state, written by the operator."""

    observed_generation: int | None = Field(None, description="metadata.generation last reconciled.")
    phase: Phase | None = Field(
        None, description="Summary. " + "; ".join(f"{p.value}: {m}" for p, m in PHASE_MEANINGS.items()) + "."
    )
    message: str | None = Field(None, description="Why the pipeline is in this phase.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Progressing, Degraded.")
    components: dict[str, ComponentStatus] = Field(
        default_factory=dict, description="Ready/desired per service, engine and Job."
    )
    endpoints: Endpoints | None = Field(None, description="URLs of ingest and query.")


def parse_spec(raw: dict[str, Any] | Any) -> ExchangePipelineSpec:
    """Validate a CR's spec; raises pydantic.ValidationError (the handler makes it permanent)."""
    return ExchangePipelineSpec.model_validate(dict(raw or {}))
