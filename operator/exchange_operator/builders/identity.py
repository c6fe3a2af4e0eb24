"""Workload identity (ADR 0008): one ServiceAccount per service, and the normalizer's token for the
tokenizer.

- Every service runs as its own ServiceAccount `<pipeline>-<component>`, none with an API token
  mounted except the tokenizer, which reads the cluster's service-account issuer keys with it
  (`system:service-account-issuer-discovery`, bound to every ServiceAccount by the cluster's
  default RBAC: no Role, RoleBinding or ClusterRoleBinding is created for it).
- The normalizer gets a projected ServiceAccount token whose audience is the tokenizer, rotated by
  the kubelet, at TOKENIZER_TOKEN_FILE.
- The tokenizer accepts exactly that: SERVICE_AUTH=serviceaccount, the audience and the subject
  `system:serviceaccount:<namespace>:<pipeline>-normalizer` (the issuer is the API server's own).
"""

from __future__ import annotations

from typing import Any

from exchange_operator.builders.common import Manifest, Meta, object_meta
from exchange_operator.spec import COMPONENTS, ExchangePipelineSpec

TOKENIZER_TOKEN_DIR = "/var/run/secrets/exchange/tokenizer"
TOKENIZER_TOKEN_FILE = f"{TOKENIZER_TOKEN_DIR}/token"
TOKEN_EXPIRATION_SECONDS = 3600
"""Lifetime of the normalizer's token; the kubelet renews it at 80 %. Not 3607: the API server
stretches that value to a year (--service-account-extend-token-expiration)."""
API_TOKEN_COMPONENTS = frozenset({"tokenizer"})
"""Services whose Pods get an API token: they read the issuer's keys from the API server."""


def service_account_name(meta: Meta, component: str) -> str:
    return meta.child(component)


def tokenizer_audience(meta: Meta) -> str:
    """The audience of tokens for this pipeline's tokenizer: its in-cluster URL (TOKENIZER_URL),
    so a token minted for one pipeline's tokenizer is worthless at any other."""
    return f"http://{meta.service_host('tokenizer')}"


def normalizer_subject(meta: Meta) -> str:
    """The one caller the tokenizer accepts."""
    return f"system:serviceaccount:{meta.namespace}:{service_account_name(meta, 'normalizer')}"


def build_service_account(meta: Meta, component: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": object_meta(meta, service_account_name(meta, component), component, "service"),
        # Pods opt in (the tokenizer); a token never lands in a Pod by default.
        "automountServiceAccountToken": False,
    }


def build_service_accounts(spec: ExchangePipelineSpec, meta: Meta) -> list[Manifest]:
    return [build_service_account(meta, c) for c in COMPONENTS]


def pod_identity(meta: Meta, component: str) -> dict[str, Any]:
    """Pod-spec fields: which ServiceAccount, and whether its API token is mounted."""
    return {
        "serviceAccountName": service_account_name(meta, component),
        "automountServiceAccountToken": component in API_TOKEN_COMPONENTS,
    }


def identity_env(meta: Meta, component: str) -> list[dict[str, Any]]:
    """The caller's token file (normalizer), or what the callee accepts (tokenizer)."""
    if component == "normalizer":
        return [{"name": "TOKENIZER_TOKEN_FILE", "value": TOKENIZER_TOKEN_FILE}]
    if component == "tokenizer":
        return [
            {"name": "SERVICE_AUTH", "value": "serviceaccount"},
            {"name": "SERVICE_TOKEN_AUDIENCE", "value": tokenizer_audience(meta)},
            {"name": "SERVICE_TOKEN_SUBJECT", "value": normalizer_subject(meta)},
        ]
    return []


def identity_volumes(meta: Meta, component: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts): the normalizer's projected token for the tokenizer; nothing for the others."""
    if component != "normalizer":
        return [], []
    token = {
        "audience": tokenizer_audience(meta),
        "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
        "path": "token",
    }
    volume = {"name": "tokenizer-token", "projected": {"sources": [{"serviceAccountToken": token}]}}
    mount = {"name": "tokenizer-token", "mountPath": TOKENIZER_TOKEN_DIR, "readOnly": True}
    return [volume], [mount]
