"""The operator's own API client sends the in-cluster ServiceAccount token (it went out anonymous:
every Secret read was 403 `system:anonymous` on a real cluster)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.config.incluster_config import InClusterConfigLoader

from exchange_operator.apply import KubeClient


async def test_the_in_cluster_service_account_token_is_sent(tmp_path: Path) -> None:
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("sa-token-123")
    ca.write_text("not read here")
    cfg = client.Configuration()
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    InClusterConfigLoader(str(token), str(ca), environ=env).load_and_set(cfg)  # type: ignore[no-untyped-call]
    kube = KubeClient(cfg.host, ssl.create_default_context(), cfg, 5.0)
    try:
        assert kube._headers()["Authorization"] == "bearer sa-token-123"
    finally:
        await kube.close()


async def test_a_client_without_credentials_sends_no_authorization_header() -> None:
    cfg = client.Configuration()
    cfg.host = "https://127.0.0.1:1"
    kube = KubeClient(cfg.host, False, cfg, 5.0)
    try:
        assert "Authorization" not in kube._headers()
    finally:
        await kube.close()


pytestmark = pytest.mark.asyncio
