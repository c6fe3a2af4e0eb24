"""The ingest endpoints behind JWT auth, end to end against a local JWKS: every attack is 401,
a missing scope is 403, `Bearer dev` only when ENV=local. Nothing is recorded for any of them."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager

from exchange.ingest.app import create_app
from exchange.ingest.settings import IngestSettings

ATTACKS = {
    "alg_none": lambda j: j.alg_none_token(),
    "hs_rs_confusion": lambda j: j.hs_confusion_token(),
    "wrong_issuer": lambda j: j.token(iss="https://evil.example"),
    "wrong_audience": lambda j: j.token(aud="another-api"),
    "expired": lambda j: j.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
    "bad_signature": lambda j: j.bad_signature_token(),
    "unknown_kid": lambda j: j.token(kid="nobody"),
    "garbage": lambda j: "not.a.jwt",
    "dev_outside_local": lambda j: "dev",
    "tenant_climbing_out_of_its_prefix": lambda j: j.token(tenant="../../other"),
    "tenant_with_a_slash": lambda j: j.token(tenant="acme/other"),
    "sub_as_tenant_not_an_identifier": lambda j: j.token(tenant=None, sub="a b"),
    "lifetime_over_the_maximum": lambda j: j.token(exp=int(time.time()) + 2 * 86_400),
    "no_iat_and_expiring_too_late": lambda j: j.token(iat=None, exp=int(time.time()) + 30 * 86_400),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("path", ["/v1/ingest", "/v1/ingest/bulk"])
async def test_each_attack_is_401_problem_json(client, auth, samples, jwks_server, attack, path, db):
    key = f"auth-{attack}-{path}"
    headers = auth("application/json" if path == "/v1/ingest" else "application/x-ndjson", key=key)
    headers["Authorization"] = f"Bearer {ATTACKS[attack](jwks_server)}"
    resp = await client.post(path, content=orjson.dumps(samples.native_v1()), headers=headers)
    assert resp.status_code == 401, (attack, resp.text)
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert await db.fetchval("SELECT count(*) FROM ingest.idempotency_keys WHERE key = $1", key) == 0


async def test_a_missing_token_is_401(client, auth, samples):
    headers = auth()
    del headers["Authorization"]
    resp = await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=headers)
    assert resp.status_code == 401


async def test_an_es256_token_is_accepted(client, auth, samples, jwks_server):
    headers = auth() | {"Authorization": f"Bearer {jwks_server.token(alg='ES256')}"}
    resp = await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=headers)
    assert resp.status_code == 202


async def test_a_token_without_the_ingest_scope_is_403(client, auth, samples, jwks_server):
    headers = auth() | {"Authorization": f"Bearer {jwks_server.token(scope='query:read')}"}
    resp = await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=headers)
    assert resp.status_code == 403
    assert resp.headers["content-type"] == "application/problem+json"


async def test_the_wildcard_scope_in_a_signed_token_grants_nothing(client, auth, samples, jwks_server):
    headers = auth() | {"Authorization": f"Bearer {jwks_server.token(scope='*')}"}
    resp = await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=headers)
    assert resp.status_code == 403
    assert resp.headers["content-type"] == "application/problem+json"


async def test_bearer_dev_is_accepted_when_env_is_local(ingest_env, samples):
    settings = IngestSettings(**{**ingest_env, "ENV": "local", "DB_POOL_MAX": "2"})
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://local.test") as local:
            headers = {
                "Authorization": "Bearer dev",
                "Idempotency-Key": "dev-local-1",
                "Content-Type": "application/json",
            }
            resp = await local.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=headers)
    assert resp.status_code == 202, resp.text
