"""ingest's own SigV4 signer gives, byte for byte, the Authorization header botocore's S3 signer
gives for the same request (botocore is the reference implementation)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from exchange.core.settings import S3Settings
from exchange.ingest.s3put import S3Putter, SigV4


class _GivenDigest(S3SigV4Auth):  # type: ignore[misc]  # botocore ships no type hints
    def payload(self, request: AWSRequest) -> str:
        return str(request.context["payload_sha256"])


def _botocore(endpoint: str, path: str, headers: dict[str, str], digest: str, region: str) -> dict[str, str]:
    request = AWSRequest(method="PUT", url=endpoint + path, data=b"ignored", headers=dict(headers))
    request.context["payload_sha256"] = digest
    _GivenDigest(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), "s3", region).add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


@pytest.mark.parametrize(
    ("endpoint", "key", "headers", "region"),
    [
        ("http://127.0.0.1:9000", "raw/acme/ab/abcdef", {"content-type": "application/json"}, "us-east-1"),
        (
            "https://s3.eu-west-3.amazonaws.com",
            "raw/t 1/é+x",
            {"Content-Type": "application/fhir+ndjson", "x-amz-meta-sha256": "0" * 64},
            "eu-west-3",
        ),
        ("http://minio:80", "raw/a~b/c=d", {"content-type": "  application/json ;  charset=utf-8 "}, "us-east-1"),
    ],
)
def test_the_signature_is_botocores(endpoint: str, key: str, headers: dict[str, str], region: str) -> None:
    digest = hashlib.sha256(key.encode()).hexdigest()
    path = "/exchange-raw/" + quote(key, safe="/")
    reference = _botocore(endpoint, path, headers, digest, region)
    stamp = datetime.strptime(reference["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    host = reference.get("host") or endpoint.split("://", 1)[1].removesuffix(":80")
    ours = SigV4("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", region).headers(
        "PUT", host, path, headers, digest, now=stamp
    )
    assert ours["authorization"] == reference["authorization"]
    assert ours["x-amz-content-sha256"] == digest and ours["x-amz-date"] == reference["x-amz-date"]


def test_the_signing_key_is_derived_once_a_day() -> None:
    signer = SigV4("ak", "sk", "us-east-1")
    day = datetime(2026, 11, 29, 1, 2, 3, tzinfo=UTC)
    first = signer.headers("PUT", "h", "/b/k", {}, "0" * 64, now=day)["authorization"]
    key = signer._key
    signer.headers("PUT", "h", "/b/k2", {}, "0" * 64, now=day.replace(hour=23))
    assert signer._key is key  # same day: reused
    later = signer.headers("PUT", "h", "/b/k", {}, "0" * 64, now=datetime(2026, 11, 30, tzinfo=UTC))
    assert signer._key is not key and later["authorization"] != first


def test_the_putter_signs_the_path_under_the_endpoint_and_sends_the_host_it_signed() -> None:
    settings = S3Settings(S3_ENDPOINT_URL="http://gw.local:8333/s3/", S3_ACCESS_KEY_ID="ak",
                          S3_SECRET_ACCESS_KEY="sk-0123456789", S3_REGION="us-east-1")  # fmt: skip
    putter = S3Putter(settings)
    assert (putter.origin, putter.host, putter.base_path) == ("http://gw.local:8333", "gw.local:8333", "/s3")
    signed = putter.sign("/s3/b/k", {"content-type": "application/json"}, "0" * 64)
    assert signed["host"] == "gw.local:8333"
    assert "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date," in signed["authorization"]
