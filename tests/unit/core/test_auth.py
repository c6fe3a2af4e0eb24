"""The JWT verifier against a real local JWKS endpoint: every attack is a 401."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from exchange.core.auth import JWKSCache, JWTVerifier
from exchange.core.errors import ConfigError, Unauthorized
from exchange.core.settings import AuthSettings, load
from exchange_devtools.fixtures.jwks import serve_jwks


def make_verifier(jwks_server, monkeypatch, **env: str) -> JWTVerifier:
    for key, value in {**jwks_server.env(), "ENV": "production", **env}.items():
        monkeypatch.setenv(key, value)
    settings = load(AuthSettings)
    return JWTVerifier(settings, JWKSCache(jwks_server.jwks_url, min_refetch_seconds=0))


@pytest.fixture
def verifier(jwks_server, monkeypatch):
    return make_verifier(jwks_server, monkeypatch)


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Every token whose signature and claims PyJWT checked (a spy around `jwt.decode`)."""
    seen: list[str] = []
    real = jwt.decode

    def spy(token, *args, **kwargs):
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", spy)
    return seen


async def test_a_valid_rs256_token_gives_tenant_and_scopes(verifier, jwks_server):
    principal = await verifier.verify(f"Bearer {jwks_server.token()}")
    assert principal.tenant == "acme"
    assert principal.subject == "client-acme"
    assert principal.has_scope("ingest:write")
    assert not principal.is_dev


async def test_a_valid_es256_token_is_accepted(verifier, jwks_server):
    principal = await verifier.verify(f"Bearer {jwks_server.token(alg='ES256', tenant='beta')}")
    assert principal.tenant == "beta"


async def test_tenant_falls_back_to_sub(verifier, jwks_server):
    principal = await verifier.verify(f"Bearer {jwks_server.token(tenant=None, sub='partner-9')}")
    assert principal.tenant == "partner-9"


async def test_scp_list_is_read_as_scopes(verifier, jwks_server):
    principal = await verifier.verify(f"Bearer {jwks_server.token(scope=None, scp=['query:read'])}")
    assert principal.scopes == frozenset({"query:read"})


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda i: i.alg_none_token(), "algorithm not allowed"),
        (lambda i: i.hs_confusion_token(), "algorithm not allowed"),
        (lambda i: i.token(iss="https://evil.test"), "issuer"),
        (lambda i: i.token(aud="someone-else"), "audience"),
        (lambda i: i.token(exp=int(time.time()) - 3600), "expired"),
        (lambda i: i.bad_signature_token(), "rejected"),
        (lambda i: i.token(kid="nope"), "unknown signing key"),
        (lambda i: i.token(exp=None), "rejected"),
        (lambda i: "not-a-jwt", "malformed"),
    ],
    ids=[
        "alg-none",
        "hs-rs-confusion",
        "wrong-iss",
        "wrong-aud",
        "expired",
        "bad-signature",
        "unknown-kid",
        "no-exp",
        "garbage",
    ],
)
async def test_each_attack_is_unauthorized(verifier, jwks_server, make, reason):
    with pytest.raises(Unauthorized) as err:
        await verifier.verify(f"Bearer {make(jwks_server)}")
    assert reason in err.value.detail
    assert err.value.status == 401


async def test_expiry_within_leeway_is_accepted(verifier, jwks_server):
    token = jwks_server.token(exp=int(time.time()) - 5)
    assert (await verifier.verify(f"Bearer {token}")).tenant == "acme"


async def test_an_es256_header_on_an_rsa_key_is_refused(verifier, jwks_server):
    # ES256 header but pointing at the RSA kid: key type must match the algorithm.
    token = jwks_server.token(alg="ES256", kid=jwks_server.rsa_kid)
    with pytest.raises(Unauthorized, match="key type"):
        await verifier.verify(f"Bearer {token}")


async def test_dev_bearer_is_refused_outside_local(verifier):
    with pytest.raises(Unauthorized, match="outside ENV=local"):
        await verifier.verify("Bearer dev")


async def test_dev_bearer_is_accepted_when_local(monkeypatch):
    monkeypatch.setenv("ENV", "local")
    verifier = JWTVerifier(load(AuthSettings))
    principal = await verifier.verify("Bearer dev")
    assert principal.is_dev and principal.tenant == "dev"


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Token x"])
async def test_missing_or_non_bearer_credentials_are_unauthorized(verifier, header):
    with pytest.raises(Unauthorized):
        await verifier.verify(header)


async def test_unknown_kid_refetches_the_jwks_once(verifier, jwks_server):
    await verifier.verify(f"Bearer {jwks_server.token()}")
    before = jwks_server.fetches
    with pytest.raises(Unauthorized):
        await verifier.verify(f"Bearer {jwks_server.token(kid='rotated-away')}")
    assert jwks_server.fetches == before + 1


async def test_cached_keys_are_reused(verifier, jwks_server):
    await verifier.verify(f"Bearer {jwks_server.token()}")
    before = jwks_server.fetches
    for _ in range(5):
        await verifier.verify(f"Bearer {jwks_server.token()}")
    assert jwks_server.fetches == before


def test_symmetric_algorithms_cannot_be_allow_listed(monkeypatch, jwks_server):
    for key, value in jwks_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("JWT_ALGORITHMS", '["RS256","HS256"]')
    with pytest.raises(ConfigError, match="asymmetric"):
        load(AuthSettings)


def test_jwt_settings_are_required_outside_local(monkeypatch):
    monkeypatch.setenv("ENV", "production")
    for key in ("JWT_ISSUER", "JWT_AUDIENCE", "JWKS_URL"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="JWKS_URL"):
        load(AuthSettings)


async def test_a_verified_token_is_accepted_again_without_re_verifying(verifier, jwks_server, decodes):
    token = jwks_server.token(tenant="acme", scope="ingest:write")
    first = await verifier.verify(f"Bearer {token}")
    again = [await verifier.verify(f"Bearer {token}") for _ in range(3)]
    assert decodes == [token]
    assert all(p == first for p in again)
    assert first.tenant == "acme" and first.scopes == frozenset({"ingest:write"})


async def test_a_cached_token_is_refused_once_it_expires(jwks_server, monkeypatch, decodes):
    verifier = make_verifier(jwks_server, monkeypatch, JWT_LEEWAY_SECONDS="0", JWT_CACHE_SECONDS="3600")
    exp = int(time.time()) + 3  # room for a loaded machine before the first verify
    token = jwks_server.token(exp=exp)
    assert (await verifier.verify(f"Bearer {token}")).tenant == "acme"
    time.sleep(max(0.0, exp - time.time()) + 0.05)
    with pytest.raises(Unauthorized, match="expired"):
        await verifier.verify(f"Bearer {token}")
    assert decodes == [token, token]  # the expired entry was not served


async def test_the_leeway_still_applies_to_a_cached_token(jwks_server, monkeypatch, decodes):
    verifier = make_verifier(jwks_server, monkeypatch, JWT_LEEWAY_SECONDS="30")
    token = jwks_server.token(exp=int(time.time()) - 5)  # expired, within the leeway
    for _ in range(2):
        assert (await verifier.verify(f"Bearer {token}")).tenant == "acme"
    assert decodes == [token]


async def test_a_refused_token_is_checked_again_every_time(verifier, jwks_server, decodes):
    token = jwks_server.bad_signature_token()
    for _ in range(2):
        with pytest.raises(Unauthorized, match="rejected"):
            await verifier.verify(f"Bearer {token}")
    assert decodes == [token, token]


async def test_a_tampered_copy_of_a_cached_token_is_refused(verifier, jwks_server):
    token = jwks_server.token(tenant="acme")
    await verifier.verify(f"Bearer {token}")
    header, _, signature = token.split(".")
    claims = jwks_server.claims(tenant="evil")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(Unauthorized, match="rejected"):
        await verifier.verify(f"Bearer {header}.{body}.{signature}")


async def test_with_the_cache_off_every_request_is_verified(jwks_server, monkeypatch, decodes):
    verifier = make_verifier(jwks_server, monkeypatch, JWT_CACHE_SECONDS="0")
    token = jwks_server.token()
    for _ in range(3):
        await verifier.verify(f"Bearer {token}")
    assert decodes == [token] * 3
    assert verifier.verified is None


async def test_the_cache_holds_at_most_its_size(jwks_server, monkeypatch, decodes):
    verifier = make_verifier(jwks_server, monkeypatch, JWT_CACHE_SIZE="2")
    tokens = [jwks_server.token(sub=f"client-{i}") for i in range(3)]
    for token in tokens:
        await verifier.verify(f"Bearer {token}")
    assert verifier.verified is not None and len(verifier.verified) == 2
    await verifier.verify(f"Bearer {tokens[0]}")  # the least recently used went: verified again
    assert decodes == [*tokens, tokens[0]]


@pytest.mark.parametrize(("name", "value"), [("JWT_CACHE_SECONDS", "-1"), ("JWT_CACHE_SIZE", "0")])
def test_cache_settings_must_be_sensible(monkeypatch, jwks_server, name, value):
    for key, env_value in {**jwks_server.env(), "ENV": "production", name: value}.items():
        monkeypatch.setenv(key, env_value)
    with pytest.raises(ConfigError, match=name):
        load(AuthSettings)


async def test_a_key_removed_from_the_jwks_stops_verifying_within_both_cache_times(monkeypatch):
    with serve_jwks() as issuer:  # its own issuer: the key id changes below
        for key, value in {**issuer.env(), "ENV": "production", "JWT_CACHE_SECONDS": "1"}.items():
            monkeypatch.setenv(key, value)
        verifier = JWTVerifier(load(AuthSettings), JWKSCache(issuer.jwks_url, ttl_seconds=1, min_refetch_seconds=0))
        token = issuer.token()
        assert (await verifier.verify(f"Bearer {token}")).tenant == "acme"
        issuer.rsa_kid = "rsa-rotated"  # the JWKS no longer has the token's key
        assert (await verifier.verify(f"Bearer {token}")).tenant == "acme"  # still within both caches
        time.sleep(1.1)
        with pytest.raises(Unauthorized, match="unknown signing key"):
            await verifier.verify(f"Bearer {token}")


@pytest.mark.parametrize("tenant", ["acme", "client@clients", "auth0|abc123", "system:serviceaccount:ns:a", "x" * 128])
async def test_a_tenant_that_is_an_identifier_is_accepted(verifier, jwks_server, tenant):
    assert (await verifier.verify(f"Bearer {jwks_server.token(tenant=tenant)}")).tenant == tenant


@pytest.mark.parametrize("tenant", ["../../other", "a/b", ".hidden", "-x", "with space", "x" * 129, "é", 7, ["a"]])
async def test_a_tenant_that_is_not_an_identifier_is_unauthorized(verifier, jwks_server, tenant):
    with pytest.raises(Unauthorized, match="no usable tenant"):
        await verifier.verify(f"Bearer {jwks_server.token(tenant=tenant)}")


async def test_the_wildcard_scope_holds_every_scope_for_bearer_dev_only(verifier, jwks_server, monkeypatch):
    signed = await verifier.verify(f"Bearer {jwks_server.token(scope='*')}")
    assert "*" in signed.scopes and not signed.has_scope("ingest:write")
    monkeypatch.setenv("ENV", "local")
    assert (await JWTVerifier(load(AuthSettings)).verify("Bearer dev")).has_scope("ingest:write")


async def test_a_token_living_longer_than_the_maximum_is_unauthorized(jwks_server, monkeypatch):
    verifier = make_verifier(jwks_server, monkeypatch, JWT_MAX_LIFETIME_SECONDS="3600")
    now = int(time.time())
    assert (await verifier.verify(f"Bearer {jwks_server.token(iat=now, exp=now + 3600)}")).tenant == "acme"
    for claims in ({"iat": now - 60, "exp": now + 3600}, {"iat": None, "exp": now + 3700}):
        with pytest.raises(Unauthorized, match="lifetime exceeds 3600 seconds"):
            await verifier.verify(f"Bearer {jwks_server.token(**claims)}")
