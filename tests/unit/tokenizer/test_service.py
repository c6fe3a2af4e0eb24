"""`POST /v1/tokenize` over ASGI: auth, limits, contract, and no PII anywhere it could leak."""

from __future__ import annotations

import httpx
import pytest
from jsonschema import Draft202012Validator
from prometheus_client import generate_latest

from exchange.core.contracts import load_document
from exchange.core.logging import configure_logging
from exchange.core.settings import load
from exchange.tokenizer.app import create_app
from exchange.tokenizer.engine import PersonAttributes, Tokenizer
from exchange.tokenizer.rules import BLANK_TOKEN
from exchange.tokenizer.settings import TokenizerSettings

SECRET = "service-test-secret-0123456789abcdef"
CANARY_NAME = "Qwertzuiopcanary"
CANARY_SSN = "876-54-3219"
CANARY_DOB = "1961-07-13"
CANARY = {
    "record_id": "rec-1",
    "first_name": CANARY_NAME,
    "last_name": "Canarysson",
    "birth_date": CANARY_DOB,
    "sex": "F",
    "postal_code": "02139",
    "ssn": CANARY_SSN,
}
CONTRACT = load_document("api/tokenizer.v1.openapi.yaml")


@pytest.fixture
def app(jwks_server, monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    for key, value in jwks_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("TOKENIZATION_SECRET_FILE", str(secret))
    monkeypatch.setenv("TOKENIZER_MAX_BATCH", "50")
    monkeypatch.setenv("TOKENIZER_MAX_BODY_BYTES", "65536")
    return create_app(load(TokenizerSettings))


@pytest.fixture
async def client(app):
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://tokenizer") as c:
        yield c


@pytest.fixture
def auth(jwks_server):
    return {"Authorization": f"Bearer {jwks_server.token(scope='tokenize')}"}


def schema(name):
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": CONTRACT["components"]})


async def test_tokens_per_record_and_rule_with_validity_flags(client, auth):
    records = [CANARY, {"first_name": "Ann", "birth_date": "not a date"}, {}]
    r = await client.post("/v1/tokenize", json={"records": records}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    schema("TokenizeResponse").validate(body)
    expected = Tokenizer(SECRET.encode()).tokenize(
        PersonAttributes(CANARY_NAME, "Canarysson", CANARY_DOB, "F", "02139", CANARY_SSN)
    )
    first, second, third = body["results"]
    assert first["record_id"] == "rec-1"
    assert list(first["tokens"].values()) == list(expected.tokens)
    assert set(first["validity"].values()) == {"valid"}
    assert "record_id" not in second
    assert second["validity"]["birth_date"] == "invalid" and second["validity"]["ssn"] == "missing"
    assert set(third["tokens"].values()) == {BLANK_TOKEN}
    assert (body["key_id"] and body["key_id"] in SECRET.encode().hex()) or len(body["key_id"]) == 8
    for value in (CANARY_NAME, CANARY_SSN, CANARY_DOB, "Canarysson", SECRET):
        assert value not in r.text


async def test_without_a_token_401_and_without_the_scope_403(client, jwks_server):
    r = await client.post("/v1/tokenize", json={"records": [CANARY]})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    wrong = {"Authorization": f"Bearer {jwks_server.token(scope='ingest:write')}"}
    r = await client.post("/v1/tokenize", json={"records": [CANARY]}, headers=wrong)
    assert r.status_code == 403
    r = await client.post("/v1/tokenize", json={"records": [CANARY]}, headers={"Authorization": "Bearer dev"})
    assert r.status_code == 401  # dev tokens only when ENV=local


async def test_odd_attribute_values_never_fail_the_request(client, auth):
    odd = {"first_name": "x" * 5000, "last_name": "\u0000\ud7ff", "birth_date": "13/13/1313", "sex": "?", "ssn": ""}
    r = await client.post("/v1/tokenize", json={"records": [odd]}, headers=auth)
    assert r.status_code == 200
    result = r.json()["results"][0]
    assert set(result["tokens"].values()) == {BLANK_TOKEN}
    assert result["validity"]["birth_date"] == "invalid" and result["validity"]["ssn"] == "missing"


async def test_too_many_records_or_bytes_is_413(client, auth):
    r = await client.post("/v1/tokenize", json={"records": [CANARY] * 51}, headers=auth)
    assert r.status_code == 413
    assert CANARY_NAME not in r.text
    r = await client.post("/v1/tokenize", json={"records": [{"first_name": "x" * 200}] * 40 * 10}, headers=auth)
    assert r.status_code == 413


@pytest.mark.parametrize(
    "body",
    [
        {"records": [{**CANARY, "nickname": CANARY_NAME}]},  # unknown field
        {"records": [{**CANARY, "ssn": 876543219}]},  # wrong type
        {"records": [{**CANARY, "record_id": CANARY_NAME * 30}]},  # record id too long
        {"records": []},
        {"people": [CANARY]},
        [CANARY],
    ],
)
async def test_contract_violations_are_422_with_pointers_and_no_values(client, auth, body):
    r = await client.post("/v1/tokenize", json=body, headers=auth)
    assert r.status_code == 422
    problem = r.json()
    schema("Problem").validate(problem)
    assert problem["errors"] and all(e["pointer"].startswith("/") for e in problem["errors"])
    for value in (CANARY_NAME, CANARY_SSN, CANARY_DOB, "876543219"):
        assert value not in r.text


async def test_not_json_is_400_and_wrong_media_type_415(client, auth):
    r = await client.post(
        "/v1/tokenize",
        content=b"{not json " + CANARY_SSN.encode(),
        headers={**auth, "content-type": "application/json"},
    )
    assert r.status_code == 400 and CANARY_SSN not in r.text
    r = await client.post("/v1/tokenize", content=b"records", headers={**auth, "content-type": "text/plain"})
    assert r.status_code == 415


async def test_no_pii_in_logs(client, auth, capsys):
    configure_logging("tokenizer", "DEBUG", json=True)
    await client.post("/v1/tokenize", json={"records": [CANARY]}, headers=auth)
    await client.post("/v1/tokenize", json={"records": [{**CANARY, "nickname": CANARY_NAME}]}, headers=auth)
    await client.post("/v1/tokenize", json={"records": [CANARY] * 51}, headers=auth)
    captured = capsys.readouterr()
    logs = captured.err + captured.out
    assert "tokenized" in logs
    for value in (CANARY_NAME, CANARY_SSN, CANARY_DOB, "Canarysson", SECRET):
        assert value not in logs


async def test_probes_and_metrics(app, client, auth):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    await client.post("/v1/tokenize", json={"records": [CANARY, {}]}, headers=auth)
    assert (await client.get("/metrics")).status_code == 404  # production: on METRICS_PORT only
    metrics = generate_latest(app.state.registry).decode()
    assert "tokenizer_records_total 2.0" in metrics
    assert 'tokenizer_blank_tokens_total{rule="T5"} 1.0' in metrics
    assert CANARY_NAME not in metrics


async def test_the_openapi_document_is_the_contract_and_not_served_in_production(app, client):
    assert (await client.get("/openapi.json")).status_code == 404
    assert (await client.get("/docs")).status_code == 404
    served = app.openapi()
    assert served["openapi"] == CONTRACT["openapi"]
    assert served["info"] == CONTRACT["info"]
    for path, item in CONTRACT["paths"].items():
        for method, operation in item.items():
            got = served["paths"][path][method]
            for key in ("operationId", "requestBody", "security", "parameters"):
                assert got[key] == operation[key], key
            assert dict(got["responses"]) == operation["responses"]
    assert served["components"]["schemas"] == CONTRACT["components"]["schemas"]
    assert set(served["paths"]) == set(CONTRACT["paths"])


def test_a_missing_secret_stops_the_app_at_start(monkeypatch, jwks_server):
    from exchange.core.errors import ConfigError

    for key, value in jwks_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ENV", "production")
    monkeypatch.delenv("TOKENIZATION_SECRET_FILE", raising=False)
    monkeypatch.delenv("TOKENIZATION_SECRET", raising=False)
    with pytest.raises(ConfigError, match="TOKENIZATION_SECRET_FILE"):
        create_app(load(TokenizerSettings))
