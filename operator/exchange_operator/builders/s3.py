"""The managed S3 server, one builder per flavor: MinIO, or s3proxy with its filesystem backend.

Both serve path-style S3 on 9000 with the generated credentials (the services' S3 keys); the
services reach it through the client Service `<pipeline>-s3`. The bucket comes from the bootstrap Job.
"""

from __future__ import annotations

from exchange_operator.builders.common import S3_PORT, Manifest, Meta
from exchange_operator.builders.engine import EnginePod, engine_statefulset, secret_env, tcp_probes
from exchange_operator.builders.secrets import s3_secret_name
from exchange_operator.spec import ExchangePipelineSpec

S3_UID = 1000
S3_DATA = "/data"


def minio_pod(meta: Meta) -> EnginePod:
    secret = s3_secret_name(meta)
    container = {
        "args": ["server", S3_DATA, "--address", f":{S3_PORT}"],
        "env": [
            secret_env("MINIO_ROOT_USER", secret, "access-key-id"),
            secret_env("MINIO_ROOT_PASSWORD", secret, "secret-access-key"),
        ],
        "ports": [{"name": "s3", "containerPort": S3_PORT}],
        "readinessProbe": {"httpGet": {"path": "/minio/health/ready", "port": "s3"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/minio/health/live", "port": "s3"}, "periodSeconds": 15},
        "volumeMounts": [{"name": "home", "mountPath": "/.minio"}],
    }
    return EnginePod(container, S3_DATA, S3_UID, [{"name": "home", "emptyDir": {}}])


def s3proxy_pod(meta: Meta) -> EnginePod:
    """The upstream s3proxy image's variables; every request must be signed (SigV2 or SigV4)."""
    secret = s3_secret_name(meta)
    container = {
        "env": [
            {"name": "S3PROXY_ENDPOINT", "value": f"http://0.0.0.0:{S3_PORT}"},
            {"name": "S3PROXY_AUTHORIZATION", "value": "aws-v2-or-v4"},
            secret_env("S3PROXY_IDENTITY", secret, "access-key-id"),
            secret_env("S3PROXY_CREDENTIAL", secret, "secret-access-key"),
            # botocore >= 1.36 sends x-amz-checksum-* headers s3proxy does not know.
            {"name": "S3PROXY_IGNORE_UNKNOWN_HEADERS", "value": "true"},
            # Not the deprecated `filesystem` backend: it lists every directory of a key as an
            # object of its own (`raw/dev/`, `raw/dev/sha256/`, ...), which `exchange verify` and
            # `exchange replay` then took for raw objects. The local engine uses nio2 too.
            {"name": "JCLOUDS_PROVIDER", "value": "filesystem-nio2"},
            {"name": "JCLOUDS_FILESYSTEM_BASEDIR", "value": S3_DATA},
        ],
        "ports": [{"name": "s3", "containerPort": S3_PORT}],
        # Anonymous requests are refused (403), so the probes are TCP, not HTTP.
        **tcp_probes("s3"),
    }
    return EnginePod(container, S3_DATA, S3_UID)


def build_s3_statefulset(spec: ExchangePipelineSpec, meta: Meta) -> Manifest | None:
    """The S3 server of the configured flavor; None when S3 is external."""
    s3 = spec.engines.s3
    if s3.mode != "managed":
        return None
    pod = s3proxy_pod(meta) if s3.managed.kind == "s3proxy" else minio_pod(meta)
    managed = s3.managed
    return engine_statefulset(
        spec, meta, "s3", managed.image_or_default(), managed.resources_or_default(), managed.storage, pod
    )
