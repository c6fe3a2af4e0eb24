"""Generated Secrets: Postgres roles, S3 credentials, the tokenization secret.

Random material (passwords, keys) is created ONCE. A reconcile reads the existing Secret,
keeps every value it already holds, generates only what is missing (a key added by a newer
operator), and rebuilds derived keys (DSNs) from the kept material. So a reconcile never rotates a
password Postgres already stores or the secret that makes tokens deterministic.
"""

from __future__ import annotations

import base64
import secrets as random_source
import string
from collections.abc import Callable, Mapping
from urllib.parse import quote

from exchange_operator.builders.common import POSTGRES_PORT, S3_PORT, Manifest, Meta, object_meta
from exchange_operator.spec import ExchangePipelineSpec

Generator = Callable[[int], str]
"""Returns a random URL-safe string of the given length (injected in tests)."""

POSTGRES_ROLES = ("migrate", "ingest", "normalizer", "query")
"""One login role per service (query: read-only); `migrate` owns the schema."""
POSTGRES_DB = "exchange"
TOKENIZATION_KEY = "secret"
NORMALIZER_ID_KEY = "normalizer-id-key"


def random_token(length: int) -> str:
    """Cryptographically random letters and digits (safe in URLs and DSNs without quoting)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(random_source.choice(alphabet) for _ in range(length))


def postgres_secret_name(meta: Meta) -> str:
    return meta.child("postgres-credentials")


def s3_secret_name(meta: Meta) -> str:
    return meta.child("s3-credentials")


def platform_secret_name(meta: Meta) -> str:
    return meta.child("platform")


def tokenization_secret_name(meta: Meta) -> str:
    return meta.child("tokenization")


def decode(data: Mapping[str, str] | None) -> dict[str, str]:
    """A Secret's `data` (base64) as text."""
    return {k: base64.b64decode(v).decode() for k, v in (data or {}).items()}


def keep_or_generate(existing: Mapping[str, str], sizes: Mapping[str, int], generate: Generator) -> dict[str, str]:
    """Existing values win; only missing keys are generated."""
    return {key: existing.get(key) or generate(size) for key, size in sizes.items()}


def _secret(meta: Meta, name: str, component: str, values: Mapping[str, str]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": object_meta(meta, name, component, "config"),
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())},
    }


def build_postgres_secret(meta: Meta, existing: Mapping[str, str], generate: Generator = random_token) -> Manifest:
    """Superuser and per-role passwords plus one DSN per role (the external-Secret contract)."""
    sizes = {"superuser-password": 32, **{f"{role}-password": 32 for role in POSTGRES_ROLES}}
    values = keep_or_generate(existing, sizes, generate)
    host = meta.service_host("postgres")
    for role in POSTGRES_ROLES:
        password = quote(values[f"{role}-password"], safe="")
        values[f"{role}-url"] = f"postgresql://exchange_{role}:{password}@{host}:{POSTGRES_PORT}/{POSTGRES_DB}"
    return _secret(meta, postgres_secret_name(meta), "postgres", values)


def build_s3_secret(meta: Meta, existing: Mapping[str, str], generate: Generator = random_token) -> Manifest:
    """The managed S3 server's credentials (MinIO's root user, s3proxy's identity), which the
    services use as their S3 keys, and the endpoint (the client Service, whatever the flavor)."""
    values = keep_or_generate(existing, {"access-key-id": 20, "secret-access-key": 40}, generate)
    values["endpoint-url"] = f"http://{meta.service_host('s3')}:{S3_PORT}"
    values["region"] = existing.get("region") or "us-east-1"
    return _secret(meta, s3_secret_name(meta), "s3", values)


def build_tokenization_secret(meta: Meta, existing: Mapping[str, str], generate: Generator = random_token) -> Manifest:
    """The tokenization secret (64 random characters); only the tokenizer mounts it."""
    values = keep_or_generate(existing, {TOKENIZATION_KEY: 64}, generate)
    return _secret(meta, tokenization_secret_name(meta), "tokenizer", values)


def build_platform_secret(meta: Meta, existing: Mapping[str, str], generate: Generator = random_token) -> Manifest:
    """Platform keys that are not engine credentials: the normalizer's canonical-id key (HMAC of
    source ids, so MRNs are never stored); only the normalizer reads it."""
    values = keep_or_generate(existing, {NORMALIZER_ID_KEY: 48}, generate)
    return _secret(meta, platform_secret_name(meta), "normalizer", values)


def generated_secret_names(spec: ExchangePipelineSpec, meta: Meta) -> list[str]:
    """Names of the Secrets this spec makes the operator generate."""
    names = []
    if spec.engines.postgres.mode == "managed":
        names.append(postgres_secret_name(meta))
    if spec.engines.s3.mode == "managed":
        names.append(s3_secret_name(meta))
    if spec.tokenization.secret_ref is None:
        names.append(tokenization_secret_name(meta))
    names.append(platform_secret_name(meta))
    return names


def build_generated_secrets(
    spec: ExchangePipelineSpec,
    meta: Meta,
    existing: Mapping[str, Mapping[str, str] | None],
    generate: Generator = random_token,
) -> list[Manifest]:
    """Every generated Secret; `existing` maps a Secret name to its current `data` (base64) or None."""
    builders = {
        postgres_secret_name(meta): build_postgres_secret,
        s3_secret_name(meta): build_s3_secret,
        tokenization_secret_name(meta): build_tokenization_secret,
        platform_secret_name(meta): build_platform_secret,
    }
    return [builders[name](meta, decode(existing.get(name)), generate) for name in generated_secret_names(spec, meta)]


def unchanged(current_data: Mapping[str, str] | None, desired: Manifest) -> bool:
    """True when the Secret already holds exactly the desired data (no write needed)."""
    return bool(dict(current_data or {}) == desired["data"])
