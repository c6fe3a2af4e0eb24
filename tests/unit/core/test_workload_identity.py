"""Workload identity: the ServiceAccount-token policy against a local stand-in for the API server's
issuer endpoints (discovery document and JWKS, both demanding the verifier's own token), the token
file a caller re-reads as the kubelet rotates it, and the tokenizer in `SERVICE_AUTH=serviceaccount`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import jwt
import pytest

from exchange.core.errors import ConfigError, Forbidden, ServiceUnavailable, Unauthorized
from exchange.core.logging import configure_logging
from exchange.core.settings import ServiceTokenSettings, load
from exchange.core.workload_identity import ServiceAccountVerifier, TokenFile
from exchange_devtools.fixtures.jwks import TestIssuer as Issuer
from exchange_devtools.fixtures.jwks import serve_jwks

AUDIENCE = "http://demo-tokenizer.health.svc"
SUBJECT = "system:serviceaccount:health:demo-normalizer"
OWN_TOKEN = "the-tokenizers-own-pod-token"


@pytest.fixture
def api():
    """An issuer that answers like the API server: keys and discovery only with OWN_TOKEN."""
    with serve_jwks() as issuer:
        issuer.api_token = OWN_TOKEN
        yield issuer


@pytest.fixture
def own_token(tmp_path: Path) -> Path:
    path = tmp_path / "kube-token"
    path.write_text(OWN_TOKEN)
    return path


def settings(api: Issuer, own_token: Path, **env: str) -> ServiceTokenSettings:
    values = {
        "ENV": "production",
        "SERVICE_AUTH": "serviceaccount",
        "SERVICE_TOKEN_AUDIENCE": AUDIENCE,
        "SERVICE_TOKEN_SUBJECT": SUBJECT,
        "KUBERNETES_API_URL": api.url,
        "KUBERNETES_TOKEN_FILE": str(own_token),
        **env,
    }
    return load(ServiceTokenSettings, **values)


def sa_token(api: Issuer, sub: str = SUBJECT, aud: str | list[str] = AUDIENCE, **claims) -> str:
    """A token shaped like a projected ServiceAccount token (ES256, `aud` a list, no scopes)."""
    audiences = [aud] if isinstance(aud, str) else aud
    return api.token(alg="ES256", sub=sub, aud=audiences, tenant=None, scope=None, **claims)


@pytest.fixture
def verifier(api, own_token) -> ServiceAccountVerifier:
    return ServiceAccountVerifier(settings(api, own_token), scopes={"tokenize"})


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = jwt.decode

    def spy(token, *args, **kwargs):
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", spy)
    return seen


async def test_the_normalizers_token_is_accepted_with_the_services_scope(verifier, api):
    principal = await verifier.verify(f"Bearer {sa_token(api)}")
    assert principal.subject == SUBJECT
    assert principal.scopes == frozenset({"tokenize"})
    assert not principal.is_dev


async def test_the_issuer_comes_from_the_api_servers_discovery_document_read_with_the_pods_own_token(verifier, api):
    await verifier.verify(f"Bearer {sa_token(api)}")
    assert api.discoveries == 1 and api.fetches == 1  # both answered only to OWN_TOKEN


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda a: sa_token(a, aud="http://other-tokenizer.health.svc"), "audience"),
        (lambda a: sa_token(a, aud=None), "rejected"),
        (lambda a: sa_token(a, iss="https://another-cluster.example"), "issuer"),
        (lambda a: sa_token(a, exp=int(time.time()) - 3600), "expired"),
        (lambda a: a.bad_signature_token(sub=SUBJECT, aud=[AUDIENCE]), "rejected"),
        (lambda a: a.alg_none_token(sub=SUBJECT, aud=[AUDIENCE]), "algorithm"),
        (lambda a: sa_token(a, kid="a-key-the-cluster-never-had"), "unknown signing key"),
        (lambda a: "garbage", "malformed"),
    ],
    ids=[
        "wrong-audience",
        "no-audience",
        "wrong-issuer",
        "expired",
        "bad-signature",
        "alg-none",
        "unknown-key",
        "garbage",
    ],
)
async def test_anything_but_a_valid_token_for_this_audience_and_issuer_is_unauthorized(verifier, api, make, reason):
    with pytest.raises(Unauthorized, match=reason):
        await verifier.verify(f"Bearer {make(api)}")


@pytest.mark.parametrize(
    "subject",
    [
        "system:serviceaccount:health:demo-ingest",  # another ServiceAccount of the pipeline
        "system:serviceaccount:other-namespace:demo-normalizer",  # the same name elsewhere
        "system:serviceaccount:health:demo-normalizer-2",
        "demo-normalizer",
    ],
)
async def test_a_valid_token_of_any_other_subject_is_forbidden(verifier, api, subject):
    with pytest.raises(Forbidden):
        await verifier.verify(f"Bearer {sa_token(api, sub=subject)}")


async def test_the_dev_bearer_is_refused_even_when_local(api, own_token):
    verifier = ServiceAccountVerifier(settings(api, own_token, ENV="local"), scopes={"tokenize"})
    with pytest.raises(Unauthorized, match="ServiceAccount tokens only"):
        await verifier.verify("Bearer dev")


async def test_a_pinned_issuer_wins_over_discovery(api, own_token):
    pinned = ServiceAccountVerifier(
        settings(api, own_token, SERVICE_TOKEN_ISSUER="https://pinned.example"), scopes={"tokenize"}
    )
    with pytest.raises(Unauthorized, match="issuer"):
        await pinned.verify(f"Bearer {sa_token(api)}")
    assert (await pinned.verify(f"Bearer {sa_token(api, iss='https://pinned.example')}")).subject == SUBJECT
    assert api.discoveries == 0


async def test_without_its_own_token_the_keys_are_unavailable_a_503_not_an_accept(api, tmp_path):
    verifier = ServiceAccountVerifier(settings(api, tmp_path / "no-such-token"), scopes={"tokenize"})
    with pytest.raises(ServiceUnavailable):
        await verifier.verify(f"Bearer {sa_token(api)}")


async def test_a_verified_token_is_cached_until_it_expires(api, own_token, decodes):
    verifier = ServiceAccountVerifier(settings(api, own_token, JWT_CACHE_SECONDS="600"), scopes={"tokenize"})
    token = sa_token(api)
    for _ in range(3):
        assert (await verifier.verify(f"Bearer {token}")).subject == SUBJECT
    assert decodes == [token]
    short = sa_token(api, exp=int(time.time()) - 29)  # within the 30 s leeway: usable for ~1 s more
    await verifier.verify(f"Bearer {short}")
    time.sleep(1.2)
    with pytest.raises(Unauthorized, match="expired"):
        await verifier.verify(f"Bearer {short}")


async def test_a_refused_token_is_not_cached(verifier, api, decodes):
    token = sa_token(api, sub="system:serviceaccount:health:demo-ingest")
    for _ in range(2):
        with pytest.raises(Forbidden):
            await verifier.verify(f"Bearer {token}")
    assert decodes == [token, token]


async def test_a_key_rotated_away_stops_verifying_within_both_cache_times(api, own_token):
    verifier = ServiceAccountVerifier(
        settings(api, own_token, JWT_CACHE_SECONDS="1", JWKS_CACHE_SECONDS="1"), scopes={"tokenize"}
    )
    verifier.jwks.min_refetch = 0  # type: ignore[union-attr]
    token = sa_token(api)
    assert (await verifier.verify(f"Bearer {token}")).subject == SUBJECT
    api.ec_kid = "rotated-key"  # the cluster signs with a new key; the old one left the JWKS
    assert (await verifier.verify(f"Bearer {token}")).subject == SUBJECT  # within both caches
    time.sleep(1.1)
    with pytest.raises(Unauthorized, match="unknown signing key"):
        await verifier.verify(f"Bearer {token}")
    assert (await verifier.verify(f"Bearer {sa_token(api)}")).subject == SUBJECT  # the new key verifies


async def test_no_token_reaches_the_logs(verifier, api, tmp_path, capsys):
    configure_logging("tokenizer", "DEBUG", json=True)
    tokens = [sa_token(api), sa_token(api, sub="system:serviceaccount:health:demo-ingest"), sa_token(api, aud="x")]
    for token in tokens:
        try:
            await verifier.verify(f"Bearer {token}")
        except (Forbidden, Unauthorized):
            pass
    blind = ServiceAccountVerifier(settings(api, tmp_path / "missing"), scopes={"tokenize"})
    with pytest.raises(ServiceUnavailable):
        await blind.verify(f"Bearer {tokens[0]}")
    captured = capsys.readouterr()
    logs = captured.err + captured.out
    assert "issuer_discovery_failed" in logs  # the blind verifier said why, without a token
    for token in tokens:
        assert token.split(".")[1] not in logs  # not even the claims
    assert OWN_TOKEN not in logs


def test_serviceaccount_mode_needs_audience_and_subject_but_no_partner_jwt_settings(monkeypatch):
    for name in ("JWT_ISSUER", "JWT_AUDIENCE", "JWKS_URL"):
        monkeypatch.delenv(name, raising=False)
    ok = load(
        ServiceTokenSettings, ENV="production", SERVICE_AUTH="serviceaccount",
        SERVICE_TOKEN_AUDIENCE=AUDIENCE, SERVICE_TOKEN_SUBJECT=SUBJECT,
    )  # fmt: skip
    assert ok.service_auth == "serviceaccount"
    with pytest.raises(ConfigError, match="SERVICE_TOKEN_AUDIENCE and SERVICE_TOKEN_SUBJECT"):
        load(ServiceTokenSettings, ENV="production", SERVICE_AUTH="serviceaccount", SERVICE_TOKEN_AUDIENCE=AUDIENCE)
    with pytest.raises(ConfigError, match="SERVICE_TOKEN_SUBJECT"):
        load(
            ServiceTokenSettings, ENV="production", SERVICE_AUTH="serviceaccount",
            SERVICE_TOKEN_AUDIENCE=AUDIENCE, SERVICE_TOKEN_SUBJECT="demo-normalizer",
        )  # fmt: skip
    with pytest.raises(ConfigError, match="JWT_ISSUER"):  # the default mode still needs them
        load(ServiceTokenSettings, ENV="production")


def test_an_https_api_server_without_the_pods_ca_is_a_config_error(tmp_path):
    values = settings_env(tmp_path, KUBERNETES_API_URL="https://kubernetes.default.svc")
    with pytest.raises(ConfigError, match="KUBERNETES_CA_FILE"):
        ServiceAccountVerifier(load(ServiceTokenSettings, **values), scopes={"tokenize"})


def settings_env(tmp_path: Path, **env: str) -> dict[str, str]:
    return {
        "ENV": "production",
        "SERVICE_AUTH": "serviceaccount",
        "SERVICE_TOKEN_AUDIENCE": AUDIENCE,
        "SERVICE_TOKEN_SUBJECT": SUBJECT,
        "KUBERNETES_CA_FILE": str(tmp_path / "missing-ca.crt"),
        **env,
    }


# --- the caller's side: a projected token the kubelet rotates ----------------------------------


def rotate(path: Path, token: str) -> None:
    """What the kubelet does: write a new file, then swap it in atomically."""
    new = path.with_name(path.name + ".new")
    new.write_text(token)
    os.replace(new, path)


def test_the_token_file_is_read_again_only_once_it_changed(tmp_path, monkeypatch):
    path = tmp_path / "token"
    path.write_text("first\n")
    reads: list[Path] = []
    real = Path.read_text

    def counting(self, *args, **kwargs):
        reads.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    token = TokenFile(path, "TOKENIZER_TOKEN_FILE")
    assert [token() for _ in range(5)] == ["first"] * 5
    assert len(reads) == 1
    rotate(path, "second")
    assert token() == "second" and len(reads) == 2


def test_a_kubelet_style_rotation_through_the_data_symlink_is_seen_at_once(tmp_path):
    """The kubelet's atomic writer: `token -> ..data/token`, `..data -> ..<timestamp>`; a rotation
    writes a new timestamped directory and renames a new `..data` link over the old one."""
    volume = tmp_path / "projected"
    volume.mkdir()

    def publish(stamp: str, token: str) -> None:
        (volume / stamp).mkdir()
        (volume / stamp / "token").write_text(token)
        (volume / "..data_tmp").symlink_to(stamp)
        os.replace(volume / "..data_tmp", volume / "..data")

    publish("..2026_12_04_21_00_00.1", "first")
    (volume / "token").symlink_to("..data/token")
    token = TokenFile(volume / "token")
    assert token() == "first"
    publish("..2026_12_04_21_48_00.2", "second")  # same length, written within the same second
    assert token() == "second"


def test_the_token_file_is_read_again_after_max_age_even_if_it_looks_unchanged(tmp_path):
    path = tmp_path / "token"
    path.write_text("aaaa")
    token = TokenFile(path, max_age=0.0)
    assert token() == "aaaa"
    stat = path.stat()
    path.write_text("bbbb")  # same inode and size; force the same mtime as well
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert token() == "bbbb"


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_a_missing_or_empty_token_file_is_a_config_error_naming_the_variable(tmp_path, content):
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match="TOKENIZER_TOKEN_FILE"):
        TokenFile(path, "TOKENIZER_TOKEN_FILE")()


# --- the tokenizer in this mode ----------------------------------------------------------------


async def test_the_tokenizer_answers_its_normalizer_and_refuses_everyone_else(api, own_token, tmp_path, monkeypatch):
    from exchange.tokenizer.app import create_app
    from exchange.tokenizer.settings import TokenizerSettings

    secret = tmp_path / "secret"
    secret.write_text("workload-identity-secret-0123456789")
    for name in ("JWT_ISSUER", "JWT_AUDIENCE", "JWKS_URL"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "ENV": "local",  # as on the local node: even there only the normalizer's token works
        "SERVICE_AUTH": "serviceaccount",
        "SERVICE_TOKEN_AUDIENCE": AUDIENCE,
        "SERVICE_TOKEN_SUBJECT": SUBJECT,
        "KUBERNETES_API_URL": api.url,
        "KUBERNETES_TOKEN_FILE": str(own_token),
        "TOKENIZATION_SECRET_FILE": str(secret),
    }
    app = create_app(load(TokenizerSettings, **env))
    body = {"records": [{"first_name": "Ada", "last_name": "Lovelace", "birth_date": "1990-12-10"}]}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://tokenizer") as client:

        async def call(bearer: str | None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
            return await client.post("/v1/tokenize", json=body, headers=headers)

        assert (await call(sa_token(api))).status_code == 200
        for bearer, status in [
            (None, 401),
            ("dev", 401),
            (sa_token(api, aud="exchange-api"), 401),
            (sa_token(api, sub="system:serviceaccount:health:demo-query"), 403),
        ]:
            refused = await call(bearer)
            assert refused.status_code == status, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
