"""Transit tokens between deployments (issue 23, point 3; ADR 0003, amendment 1).

Four tokenizers run as separate `exchange serve tokenizer` processes, each with its own secret:
sender A, the intended recipient B, another recipient C, and a sender D with another hashing
secret. B and C hold the key files A exported for them with `exchange tokenize transit key`
(B also D's), mounted as a Secret volume would be. The tests prove that the same person's tokens
from A link at B and only at B, and that every refusal is a clear problem+json without values.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from exchange.core.contracts import load_document
from exchange.tokenizer.rules import BLANK_TOKEN, RULE_IDS
from exchange_devtools.engines.base import free_ports

EXCHANGE = str(Path(sys.executable).with_name("exchange"))
CONTRACT = load_document("api/tokenizer.v1.openapi.yaml")
CANARY = {
    "first_name": "Qwertzuiopcanary",
    "last_name": "Canarysson",
    "birth_date": "1961-07-13",
    "sex": "F",
    "postal_code": "02139",
    "ssn": "876-54-3219",
}
# The same person as written by another source: other case, date format, ZIP+4, SSN without dashes.
CANARY_AGAIN = {**CANARY, "first_name": "qwertzuiopcanary ", "birth_date": "07/13/1961", "sex": "female",
                "postal_code": "02139-1234", "ssn": "876543219"}  # fmt: skip
BOB = {"first_name": "Bob", "last_name": "Builder", "birth_date": "1970-01-01", "sex": "M", "postal_code": "98004"}
ZED = {"first_name": "Zed", "last_name": "Other", "birth_date": "1980-02-02", "sex": "M", "ssn": "456-78-9012"}
PII = ("Qwertzuiopcanary", "Canarysson", "1961-07-13", "876-54-3219", "876543219")


@dataclass
class Party:
    name: str
    url: str
    metrics_url: str
    secret: str
    log: Path
    process: subprocess.Popen[bytes]


def schema(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": CONTRACT["components"]})


def serve(name: str, workdir: Path, env: dict[str, str], keys: Path | None = None) -> Party:
    """Start one tokenizer deployment (`ready` waits until it answers)."""
    port, metrics_port = free_ports(2)
    secret = f"{name}-tokenization-secret-0123456789"
    (workdir / f"{name}.secret").write_text(secret + "\n")
    env = {**env, "PORT": str(port), "METRICS_PORT": str(metrics_port),
           "TOKENIZATION_SECRET_FILE": str(workdir / f"{name}.secret"), "TOKENIZER_MAX_BATCH": "20"}  # fmt: skip
    if keys is not None:
        env["TRANSIT_KEYS_DIR"] = str(keys)
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([EXCHANGE, "serve", "tokenizer"], env=env, stdout=out, stderr=subprocess.STDOUT)
    return Party(name, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}", secret, log, process)


def ready(party: Party) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert party.process.poll() is None, f"tokenizer {party.name} exited: {party.log.read_text()[-2000:]}"
        try:
            if httpx.get(f"{party.url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"tokenizer {party.name} did not answer: {party.log.read_text()[-2000:]}")


def export_key(sender_secret: Path, recipient: str, destination: Path) -> None:
    """What the sender's operator runs once per recipient; the file then travels to the recipient."""
    result = subprocess.run(
        [EXCHANGE, "tokenize", "transit", "key", "-r", recipient, "--secret-file", str(sender_secret),
         "-o", str(destination)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def secret_volume(directory: Path, files: dict[str, Path]) -> Path:
    """A directory laid out as kubelet mounts a Secret: key files are symlinks behind `..data`."""
    data = directory / "..2026_12_05_00_00_00.000000001"
    data.mkdir(parents=True)
    for sender, source in files.items():
        (data / sender).write_bytes(source.read_bytes())
        os.symlink(f"..data/{sender}", directory / sender)
    os.symlink(data.name, directory / "..data")
    return directory


@pytest.fixture(scope="module")
def parties(jwks_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Party]]:
    work = tmp_path_factory.mktemp("transit")
    env = {**os.environ, **jwks_server.env(), "ENV": "production", "LOG_LEVEL": "DEBUG"}
    started: dict[str, Party] = {}
    try:
        for sender in ("a", "d"):
            started[sender] = serve(sender, work, env)
        export_key(work / "a.secret", "hospital-b", work / "a-for-b.key")
        export_key(work / "d.secret", "hospital-b", work / "d-for-b.key")
        export_key(work / "a.secret", "hospital-c", work / "a-for-c.key")
        keys_b = secret_volume(work / "keys-b", {"sender-a": work / "a-for-b.key", "sender-d": work / "d-for-b.key"})
        keys_c = secret_volume(work / "keys-c", {"sender-a": work / "a-for-c.key"})
        started["b"] = serve("b", work, env, keys_b)
        started["c"] = serve("c", work, env, keys_c)
        for party in started.values():
            ready(party)
        yield started
    finally:
        for party in started.values():
            party.process.terminate()
        for party in started.values():
            party.process.wait(timeout=30)


@pytest.fixture(scope="module")
def bearer(jwks_server: Any) -> Any:
    def headers(scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {jwks_server.token(scope=scope)}"}

    return headers


def tokenize(party: Party, bearer: Any, people: list[dict[str, Any]]) -> list[dict[str, str]]:
    records = [{"record_id": f"r{i}", **p} for i, p in enumerate(people)]
    r = httpx.post(f"{party.url}/v1/tokenize", json={"records": records}, headers=bearer("tokenize"))
    assert r.status_code == 200, r.text
    return [result["tokens"] for result in r.json()["results"]]


def encode(party: Party, bearer: Any, recipient: str, tokens: list[dict[str, str]]) -> dict[str, Any]:
    body = {"recipient": recipient, "records": [{"record_id": f"r{i}", "tokens": t} for i, t in enumerate(tokens)]}
    r = httpx.post(f"{party.url}/v1/transit/encode", json=body, headers=bearer("transit:encode"))
    assert r.status_code == 200, r.text
    schema("TransitEncodeResponse").validate(r.json())
    return dict(r.json())


def decode(party: Party, bearer: Any, sender: str, delivery: dict[str, Any], **extra: Any) -> httpx.Response:
    body = {"sender": sender, "records": delivery["results"], **extra}
    return httpx.post(f"{party.url}/v1/transit/decode", json=body, headers=bearer("transit:decode"))


def site_tokens(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    schema("TransitDecodeResponse").validate(response.json())
    return [result["tokens"] for result in response.json()["results"]]


def test_the_same_person_links_at_the_intended_recipient_across_batches(parties, bearer):
    a, b = parties["a"], parties["b"]
    batch_1 = encode(a, bearer, "hospital-b", tokenize(a, bearer, [CANARY, BOB]))
    batch_2 = encode(a, bearer, "hospital-b", tokenize(a, bearer, [ZED, CANARY_AGAIN]))
    assert batch_1["transit_key_id"] == batch_2["transit_key_id"]
    first = site_tokens(decode(b, bearer, "sender-a", batch_1, transit_key_id=batch_1["transit_key_id"]))
    second = site_tokens(decode(b, bearer, "sender-a", batch_2))
    assert first[0] == second[1]  # the same person, every rule
    assert all(first[0][rule] != BLANK_TOKEN for rule in RULE_IDS)
    assert first[1]["T4"] == BLANK_TOKEN  # Bob has no SSN: blank stays blank
    for rule in ("T1", "T2", "T3", "T5"):
        assert len({first[0][rule], first[1][rule], second[0][rule]}) == 3  # different people stay apart
    platform = tokenize(a, bearer, [CANARY])[0]
    assert not set(first[0].values()) & set(platform.values())  # B's own token space, not A's
    assert not set(batch_1["results"][0]["tokens"].values()) & set(platform.values())


def test_another_recipient_can_neither_decode_nor_link(parties, bearer):
    a, b, c = parties["a"], parties["b"], parties["c"]
    tokens = tokenize(a, bearer, [CANARY, BOB])
    for_b, for_c = encode(a, bearer, "hospital-b", tokens), encode(a, bearer, "hospital-c", tokens)
    assert for_b["transit_key_id"] != for_c["transit_key_id"]
    r = decode(c, bearer, "sender-a", for_b)  # B's delivery, intercepted by C
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    schema("Problem").validate(problem)
    assert problem["code"] == "transit-token-refused"
    expected = {f"/records/{i}/tokens/{rule}" for i in (0, 1) for rule in RULE_IDS} - {"/records/1/tokens/T4"}
    assert {e["pointer"] for e in problem["errors"]} == expected  # Bob's blank T4 is no secret
    assert not any(t in r.text for t in for_b["results"][0]["tokens"].values())
    at_b = site_tokens(decode(b, bearer, "sender-a", for_b))[0]
    at_c = site_tokens(decode(c, bearer, "sender-a", for_c))[0]
    assert not set(at_b.values()) & set(at_c.values())  # B and C cannot join on what they hold


def test_a_tampered_token_is_refused_and_pointed_at(parties, bearer):
    a, b = parties["a"], parties["b"]
    delivery = encode(a, bearer, "hospital-b", tokenize(a, bearer, [BOB, CANARY]))
    token = delivery["results"][1]["tokens"]["T3"]
    tampered = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    delivery["results"][1]["tokens"]["T3"] = tampered
    r = decode(b, bearer, "sender-a", delivery)
    assert r.status_code == 422
    assert r.json()["code"] == "transit-token-refused"
    assert r.json()["errors"] == [{"pointer": "/records/1/tokens/T3", "reason": "authentication"}]
    assert tampered not in r.text and token not in r.text


def test_an_unknown_sender_or_another_key_is_named(parties, bearer):
    a, b = parties["a"], parties["b"]
    delivery = encode(a, bearer, "hospital-b", tokenize(a, bearer, [CANARY]))
    r = decode(b, bearer, "sender-x", delivery)
    assert r.status_code == 422
    assert r.json()["code"] == "transit-unknown-sender" and r.json()["errors"][0]["pointer"] == "/sender"
    r = decode(b, bearer, "sender-a", delivery, transit_key_id="0badc0de")
    assert r.status_code == 422
    assert r.json()["code"] == "transit-key-mismatch"
    assert delivery["transit_key_id"] in r.json()["detail"]


def test_a_sender_with_another_hashing_secret_passes_neither_as_a_nor_links_with_a(parties, bearer):
    a, b, d = parties["a"], parties["b"], parties["d"]
    from_d = encode(d, bearer, "hospital-b", tokenize(d, bearer, [CANARY]))
    assert decode(b, bearer, "sender-a", from_d).json()["code"] == "transit-token-refused"
    via_d = site_tokens(decode(b, bearer, "sender-d", from_d))[0]
    via_a = site_tokens(decode(b, bearer, "sender-a", encode(a, bearer, "hospital-b", tokenize(a, bearer, [CANARY]))))[
        0
    ]
    # Linking across senders needs a shared hashing secret (ADR 0003, amendment 1).
    assert not set(via_d.values()) & set(via_a.values())


def test_scopes_limits_and_contract_checks(parties, bearer):
    a, b = parties["a"], parties["b"]
    tokens = tokenize(a, bearer, [CANARY])
    body = {"recipient": "hospital-b", "records": [{"tokens": tokens[0]}]}
    url = f"{a.url}/v1/transit/encode"
    assert httpx.post(url, json=body, headers=bearer("tokenize")).status_code == 403
    assert httpx.post(url, json=body).status_code == 401
    decode_url = f"{b.url}/v1/transit/decode"
    assert (
        httpx.post(decode_url, json={"sender": "sender-a", "records": []}, headers=bearer("transit:encode")).status_code
        == 403
    )
    assert (
        httpx.post(url, json={**body, "records": body["records"] * 21}, headers=bearer("transit:encode")).status_code
        == 413
    )
    bad = {"recipient": "no spaces", "records": [{"tokens": {"T1": "not-a-token", "T7": tokens[0]["T1"]}}]}
    r = httpx.post(url, json=bad, headers=bearer("transit:encode"))
    assert r.status_code == 422
    pointers = {e["pointer"] for e in r.json()["errors"]}
    assert {"/recipient", "/records/0/tokens/T1", "/records/0/tokens"} <= pointers
    assert tokens[0]["T1"] not in r.text
    r = httpx.post(url, content=b"{", headers={**bearer("transit:encode"), "content-type": "application/json"})
    assert r.status_code == 400


def test_no_pii_secret_key_or_token_in_logs_and_the_counts_in_metrics(parties, bearer):
    a, b = parties["a"], parties["b"]
    tokens = tokenize(a, bearer, [CANARY])
    delivery = encode(a, bearer, "hospital-b", tokens)
    site = site_tokens(decode(b, bearer, "sender-a", delivery))
    delivery["results"][0]["tokens"]["T1"] = delivery["results"][0]["tokens"]["T2"]  # sealed for another rule
    assert decode(b, bearer, "sender-a", delivery).status_code == 422
    metrics = httpx.get(f"{b.metrics_url}/metrics").text
    assert 'tokenizer_transit_tokens_total{direction="decode",outcome="refused"} ' in metrics
    assert 'tokenizer_transit_tokens_total{direction="decode",outcome="ok"} ' in metrics
    time.sleep(0.5)  # let the servers flush their log lines
    logs = "".join(p.log.read_text() for p in parties.values())
    assert "transit decoded" in logs and "transit tokens refused" in logs and "transit encoded" in logs
    key = (a.log.parent / "a-for-b.key").read_text().split('"key":"')[1][:40]
    values = [*PII, key, *(p.secret for p in parties.values())]
    values += [*tokens[0].values(), *delivery["results"][0]["tokens"].values(), *site[0].values()]
    leaked = [v for v in values if v != BLANK_TOKEN and v in logs]
    assert leaked == []
    assert "Traceback" not in logs


def test_a_malformed_key_file_stops_the_recipient_at_start_in_one_line(jwks_server, tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "sender-a").write_text("this is not a key file")
    (tmp_path / "secret").write_text("recipient-tokenization-secret-0123456789")
    env = {**os.environ, **jwks_server.env(), "ENV": "production", "PORT": str(free_ports(1)[0]),
           "TOKENIZATION_SECRET_FILE": str(tmp_path / "secret"),
           "TRANSIT_KEYS_DIR": str(tmp_path / "keys")}  # fmt: skip
    result = subprocess.run([EXCHANGE, "serve", "tokenizer"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"error: transit key file {tmp_path / 'keys' / 'sender-a'} is not JSON" in result.stderr
