"""The probe of issue 26 as a table: each hostile request, the service it is sent to, and the
answer it must get. Every answer is below 500, arrives before the client's patience (SAFETY)
runs out, is problem+json when it is a refusal, and carries none of the PII the payload held;
at the end neither service has logged that PII or an unhandled error."""

# ruff: noqa: E501 (the probe table keeps one probe a line)
from __future__ import annotations

import contextlib
import gzip
import socket
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from .conftest import CANARIES, SAFETY, Served

PATIENT = {
    "resourceType": "Patient", "name": [{"family": "Canaryfield", "given": ["Zebulon"]}], "birthDate": "1961-02-03",
    "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "987-65-4329"}],
    "address": [{"postalCode": "02139-canary"}],
}  # fmt: skip
PATIENT_BYTES = orjson.dumps(PATIENT)
FHIR = "application/fhir+json"
NDJSON = "application/fhir+ndjson"


def _raw(port: int, *parts: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the status, headers and body of what comes back before the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=SAFETY) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for part in parts:
                sock.sendall(part)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@dataclass
class Probe:
    """One hostile request: `send(service, tokens)` returns (status, headers, body)."""

    family: str
    service: str
    send: Callable[[Served, Any], tuple[int, dict[str, str], bytes]]
    expected: set[int] = field(default_factory=lambda: set(range(400, 500)))


def post(path: str, body: bytes, token: str | None = "valid", **headers: str) -> Callable[..., Any]:
    def send(service: Served, issuer: Any) -> tuple[int, dict[str, str], bytes]:
        sent = {"Content-Type": FHIR, "Idempotency-Key": orjson.dumps(len(body)).decode() + "-" + path[-6:], **headers}
        if token is not None:
            sent["Authorization"] = "Bearer " + (issuer.token() if token == "valid" else token_of(issuer, token))
        r = httpx.post(service.url + path, content=body, headers=sent, timeout=SAFETY)
        return r.status_code, dict(r.headers), r.content

    return send


def token_of(issuer: Any, kind: str) -> str:
    import time

    now = int(time.time())
    return {
        "alg-none": lambda: issuer.alg_none_token(),
        "hs-confusion": lambda: issuer.hs_confusion_token(),
        "bad-signature": lambda: issuer.bad_signature_token(),
        "expired": lambda: issuer.token(iat=now - 7200, exp=now - 3600),
        "tenant-traversal": lambda: issuer.token(tenant="../../other"),
        "wildcard-scope": lambda: issuer.token(scope="*"),
        "week-long": lambda: issuer.token(iat=now, exp=now + 7 * 86400),
        "garbage": lambda: "not.a.jwt",
        "dev": lambda: "dev",
    }[kind]()


def get(path: str) -> Callable[..., Any]:
    def send(service: Served, issuer: Any) -> tuple[int, dict[str, str], bytes]:
        r = httpx.get(service.url + path, timeout=SAFETY)
        return r.status_code, dict(r.headers), r.content

    return send


def raw(*parts: bytes) -> Callable[..., Any]:
    return lambda service, issuer: _raw(service.port, *parts)


def many_members(count: int) -> bytes:
    return b"".join(gzip.compress(b"\n") for _ in range(count))


def bomb() -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    return deflate.compress(b"\0" * (200 * 1024 * 1024)) + deflate.flush()


GZIP = {"Content-Encoding": "gzip"}
PROBES = [
    # HTTP framing, before auth
    Probe("header too large", "ingest", raw(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: " + b"a" * 40_000 + b"\r\n\r\n"), {431}),
    Probe("too many headers", "tokenizer", raw(b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n"), {431}),
    Probe("endless header", "ingest", raw(b"GET / HTTP/1.1\r\nX-A: ", *[b"a" * 8192] * 1024), {431}),
    Probe("not HTTP", "tokenizer", raw(b"\x16\x03\x01\x02\x00 hello\r\n\r\n"), {400}),
    Probe("bad request line", "ingest", raw(b"POST /v1/ingest\x00 HTTP/1.1\r\nHost: t\r\n\r\n"), {400}),
    Probe("stalled head", "ingest", raw(b"POST /v1/ingest HTTP/1.1\r\nHost: t\r\n"), {408}),
    Probe("stalled body after auth", "tokenizer", lambda service, issuer: _raw(service.port, b"POST /v1/tokenize HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{" % issuer.token().encode()), {408}),
    Probe("bad content-length", "ingest", raw(b"POST /v1/ingest HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n"), {400}),
    # tokens
    Probe("no token", "ingest", post("/v1/ingest", PATIENT_BYTES, token=None), {401}),
    Probe("alg none", "ingest", post("/v1/ingest", PATIENT_BYTES, token="alg-none"), {401}),
    Probe("HS/RS confusion", "ingest", post("/v1/ingest", PATIENT_BYTES, token="hs-confusion"), {401}),
    Probe("bad signature", "tokenizer", post("/v1/tokenize", b"{}", token="bad-signature"), {401}),
    Probe("expired", "ingest", post("/v1/ingest", PATIENT_BYTES, token="expired"), {401}),
    Probe("tenant traversal", "ingest", post("/v1/ingest", PATIENT_BYTES, token="tenant-traversal"), {401}),
    Probe("wildcard scope", "ingest", post("/v1/ingest", PATIENT_BYTES, token="wildcard-scope"), {403}),
    Probe("week-long token", "ingest", post("/v1/ingest", PATIENT_BYTES, token="week-long"), {401}),
    Probe("garbage token", "tokenizer", post("/v1/tokenize", b"{}", token="garbage"), {401}),
    Probe("Bearer dev in production", "ingest", post("/v1/ingest", PATIENT_BYTES, token="dev"), {401}),
    # bodies
    Probe("JSON null", "ingest", post("/v1/ingest", b"null"), {400, 422}),
    Probe("JSON string", "tokenizer", post("/v1/tokenize", b'"Zebulon Canaryfield"', **{"Content-Type": "application/json"}), {400, 422}),
    Probe("not JSON", "ingest", post("/v1/ingest", b"{Zebulon 987-65-4329"), {400}),
    Probe("duplicate keys", "ingest", post("/v1/ingest", b'{"resourceType":"Patient","resourceType":"Patient","birthDate":"1961-02-03"}'), {400}),
    Probe("integer beyond 32 bits", "ingest", post("/v1/ingest", orjson.dumps({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueInteger": 2**40})), {422}),
    Probe("deep nesting", "ingest", post("/v1/ingest", b"[" * 100_000 + b"]" * 100_000), {400, 413, 422}),
    Probe("record too large", "ingest", post("/v1/ingest", b'{"resourceType":"Patient","text":"' + b"a" * (2 * 1024 * 1024) + b'"}'), {413}),
    Probe("gzip bomb", "ingest", post("/v1/ingest/bulk", bomb(), **{"Content-Type": NDJSON}, **GZIP), {413}),
    Probe("many gzip members", "ingest", post("/v1/ingest/bulk", many_members(5000), **{"Content-Type": NDJSON}, **GZIP), {413}),
    Probe("broken gzip", "ingest", post("/v1/ingest/bulk", b"\x1f\x8b\x08\x00garbage", **{"Content-Type": NDJSON}, **GZIP), {400}),
    Probe("unknown coding", "ingest", post("/v1/ingest", PATIENT_BYTES, **{"Content-Encoding": "br"}), {415}),
    Probe("unknown media type", "ingest", post("/v1/ingest", PATIENT_BYTES, **{"Content-Type": "text/xml"}), {415}),
    Probe("two Idempotency-Keys", "ingest", raw(b"POST /v1/ingest HTTP/1.1\r\nHost: t\r\nIdempotency-Key: a\r\nIdempotency-Key: b\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"), {400, 401}),
    Probe("tokenizer batch too large", "tokenizer", post("/v1/tokenize", orjson.dumps({"records": [{"first_name": "Zebulon"}] * 5000}), **{"Content-Type": "application/json"}), {413}),
    # the production surface
    *[Probe(f"{path} in production", service, get(path), {404}) for path in ("/metrics", "/docs", "/redoc", "/openapi.json") for service in ("ingest", "tokenizer")],
]  # fmt: skip


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: f"{p.service}: {p.family}")
def test_a_hostile_request_is_refused_cleanly(platform, jwks_server, probe: Probe) -> None:
    status, headers, body = probe.send(platform[probe.service], jwks_server)
    assert status in probe.expected, (status, body[:300])
    assert headers.get("content-type") == "application/problem+json", headers
    problem = orjson.loads(body)
    assert problem["status"] == status
    for canary in CANARIES:
        assert canary.encode() not in body


def test_a_hostile_bulk_line_is_rejected_in_the_results_and_the_rest_accepted(platform, jwks_server) -> None:
    lines = [PATIENT_BYTES, b'{"resourceType":"Patient","text":"' + b"a" * (2 * 1024 * 1024) + b'"}',
             b'{"resourceType":"Patient","resourceType":"Patient"}', b"null", b"{not json"]  # fmt: skip
    status, _, body = post("/v1/ingest/bulk", b"\n".join(lines), **{"Content-Type": NDJSON})(
        platform["ingest"], jwks_server
    )
    assert status < 500
    for canary in CANARIES:
        assert canary.encode() not in body


def test_nothing_logged_the_pii_or_an_unhandled_error(platform, logs) -> None:
    text = logs()
    assert "unhandled_error" not in text
    for canary in CANARIES:
        assert canary not in text, canary
