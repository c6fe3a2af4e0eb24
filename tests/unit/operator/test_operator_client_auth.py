"""The operator's client and kopf's login share one credential source (`apply.credentials`): a token
goes out as a bearer header, none goes out anonymous, and $KUBECONFIG is read at call time.
(A real API server checks certificates and tokens in tests/integration/operator.)"""

from __future__ import annotations

import json
from pathlib import Path

import kopf
import pytest

from exchange_operator import handlers
from exchange_operator.apply import KubeClient, credentials


def kubeconfig(path: Path, server: str, token: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ns"}}],
                "current-context": "x",
            }
        )
    )
    return path


async def test_the_token_goes_out_as_a_bearer_header() -> None:
    kube = KubeClient(lambda: kopf.ConnectionInfo(server="https://127.0.0.1:1", token="sa-token-123"), 5.0)
    try:
        assert kube._headers()["Authorization"] == "Bearer sa-token-123"
    finally:
        await kube.close()


async def test_a_client_without_credentials_sends_no_authorization_header() -> None:
    kube = KubeClient(lambda: kopf.ConnectionInfo(server="https://127.0.0.1:1"), 5.0)
    try:
        assert "Authorization" not in kube._headers()
    finally:
        await kube.close()


def test_kubeconfig_is_read_when_called_and_kopf_logs_in_with_the_same_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "a", "https://a.example:6443", "token-a")))
    assert credentials().server == "https://a.example:6443"
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "b", "https://b.example:6443", "token-b")))
    info = credentials()
    assert (info.server, info.token, info.insecure) == ("https://b.example:6443", "token-b", True)
    assert handlers.login() == info


def test_no_kubeconfig_and_no_service_account_is_a_login_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config either
    with pytest.raises(kopf.LoginError, match="no in-cluster ServiceAccount and no kubeconfig"):
        credentials()
