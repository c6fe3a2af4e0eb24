"""Workload identity against a real kube-apiserver: ServiceAccounts, tokens minted by the TokenRequest
API with the tokenizer's audience, and the tokenizer's verifier reading the API server's real issuer
keys and discovery document with its own ServiceAccount token (allowed by the built-in
`system:service-account-issuer-discovery` binding, nothing granted by us)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from kubernetes import client

from exchange.core.errors import Forbidden, ServiceUnavailable, Unauthorized
from exchange.core.settings import ServiceTokenSettings, load
from exchange.core.workload_identity import ServiceAccountVerifier, TokenFile
from exchange.normalizer.model import Person
from exchange.normalizer.tokenizer_client import TokenizerClient
from exchange_devtools.engines.kube import SERVICE_ACCOUNT_ISSUER

PIPELINE = "demo"
ADA = Person("Ada", "Lovelace", "1990-12-10", "female", "02139", "123-45-6789")


class Cluster:
    """One namespace with the pipeline's ServiceAccounts; mints tokens like the kubelet asks for them."""

    def __init__(self, api_client, namespace: str) -> None:
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.audience = f"http://{PIPELINE}-tokenizer.{namespace}.svc"
        self.core.create_namespace({"metadata": {"name": namespace}})
        for component in ("normalizer", "tokenizer", "ingest"):
            self.core.create_namespaced_service_account(namespace, {"metadata": {"name": f"{PIPELINE}-{component}"}})

    def subject(self, component: str) -> str:
        return f"system:serviceaccount:{self.namespace}:{PIPELINE}-{component}"

    def token(self, component: str, audience: str | None = None, seconds: int = 600) -> str:
        """TokenRequest; no audience means the API server's own (what a Pod's automounted token has)."""
        spec: dict[str, object] = {"expirationSeconds": seconds}
        if audience:
            spec["audiences"] = [audience]
        request = self.core.create_namespaced_service_account_token(
            f"{PIPELINE}-{component}", self.namespace, {"spec": spec}
        )
        return str(request.status.token)


@pytest.fixture(scope="module")
def cluster(kube_api_client) -> Cluster:
    return Cluster(kube_api_client, f"wi-{uuid.uuid4().hex[:8]}")


def tokenizer_settings(kube_apiserver, cluster: Cluster, own_token: Path, **env: str) -> dict[str, str]:
    return {
        "ENV": "production",
        "SERVICE_AUTH": "serviceaccount",
        "SERVICE_TOKEN_AUDIENCE": cluster.audience,
        "SERVICE_TOKEN_SUBJECT": cluster.subject("normalizer"),
        "KUBERNETES_API_URL": kube_apiserver.server,
        "KUBERNETES_CA_FILE": str(kube_apiserver.pki.ca_cert),
        "KUBERNETES_TOKEN_FILE": str(own_token),
        **env,
    }


@pytest.fixture
def own_token(cluster: Cluster, tmp_path: Path) -> Path:
    """The tokenizer Pod's automounted token (audience: the API server)."""
    path = tmp_path / "token"
    path.write_text(cluster.token("tokenizer"))
    return path


@pytest.fixture
def verifier(kube_apiserver, cluster, own_token) -> ServiceAccountVerifier:
    settings = load(ServiceTokenSettings, **tokenizer_settings(kube_apiserver, cluster, own_token))
    return ServiceAccountVerifier(settings, scopes={"tokenize"})


async def test_the_normalizers_token_for_the_tokenizer_is_accepted(verifier, cluster):
    principal = await verifier.verify(f"Bearer {cluster.token('normalizer', cluster.audience)}")
    assert principal.subject == cluster.subject("normalizer")
    assert await verifier.issuer() == SERVICE_ACCOUNT_ISSUER  # learnt from the API server's discovery


async def test_another_serviceaccounts_token_for_the_tokenizer_is_forbidden(verifier, cluster):
    with pytest.raises(Forbidden):
        await verifier.verify(f"Bearer {cluster.token('ingest', cluster.audience)}")


@pytest.mark.parametrize("audience", [None, "http://demo-tokenizer.elsewhere.svc", "vault"])
async def test_the_normalizers_token_for_another_audience_is_unauthorized(verifier, cluster, audience):
    with pytest.raises(Unauthorized, match="audience"):
        await verifier.verify(f"Bearer {cluster.token('normalizer', audience)}")


async def test_a_pinned_issuer_that_is_not_the_clusters_is_unauthorized(kube_apiserver, cluster, own_token):
    env = tokenizer_settings(kube_apiserver, cluster, own_token, SERVICE_TOKEN_ISSUER="https://other.example")
    pinned = ServiceAccountVerifier(load(ServiceTokenSettings, **env), scopes={"tokenize"})
    with pytest.raises(Unauthorized, match="issuer"):
        await pinned.verify(f"Bearer {cluster.token('normalizer', cluster.audience)}")


async def test_anonymously_the_api_server_does_not_hand_out_its_keys(kube_apiserver, cluster, tmp_path):
    env = tokenizer_settings(kube_apiserver, cluster, tmp_path / "no-token")
    blind = ServiceAccountVerifier(load(ServiceTokenSettings, **env), scopes={"tokenize"})
    with pytest.raises(ServiceUnavailable):
        await blind.verify(f"Bearer {cluster.token('normalizer', cluster.audience)}")


async def test_the_normalizers_client_reaches_the_tokenizer_with_its_projected_token(
    kube_apiserver, cluster, own_token, tmp_path
):
    from exchange.tokenizer.app import create_app
    from exchange.tokenizer.settings import TokenizerSettings

    secret = tmp_path / "secret"
    secret.write_text("workload-identity-secret-0123456789")
    env = tokenizer_settings(kube_apiserver, cluster, own_token, TOKENIZATION_SECRET_FILE=str(secret))
    app = create_app(load(TokenizerSettings, **env))
    projected = tmp_path / "projected-token"

    def normalizer(path: Path) -> TokenizerClient:
        transport = httpx.ASGITransport(app=app)
        return TokenizerClient("http://tokenizer", TokenFile(path, "TOKENIZER_TOKEN_FILE"), transport=transport)

    projected.write_text(cluster.token("normalizer", cluster.audience))
    tok = normalizer(projected)
    try:
        (tokens,) = await tok.tokenize([ADA])
        assert not tokens.blank
    finally:
        await tok.aclose()

    intruder = tmp_path / "intruder-token"
    intruder.write_text(cluster.token("ingest", cluster.audience))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tokenizer") as raw:
        refused = await raw.post(
            "/v1/tokenize",
            json={"records": [{"first_name": "Ada"}]},
            headers={"Authorization": f"Bearer {intruder.read_text()}"},
        )
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
