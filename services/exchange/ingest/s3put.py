"""A lean S3 PUT for the ingest hot path: an AWS SigV4 signature over pooled keep-alive connections.

Not the aiobotocore client: its request pipeline cost ~0.9 ms of CPU a PutObject, the largest
cost of an ingest request (ADR 0002, decision 8). `SigV4` signs the one request shape ingest sends
(path-style PUT, static credentials) with the day's signing key cached; botocore stays the
reference: a unit test checks both produce the same Authorization header, and the real S3 server
checks every signature in the integration tests.

Why not aiohttp's client under it: its per-request machinery cost ~20 % of ingest's CPU per
request; `exchange.core.s3_http` sends the head and body in one write and parses the answer with
httptools (see there).

`x-amz-content-sha256` carries the SHA-256 the object is addressed by (computed once, by the
caller), so the server verifies the body against the digest recorded in Postgres and refuses a PUT
whose body differs.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import quote

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt
from yarl import URL

from exchange.core.s3_http import Http1Client, HttpError
from exchange.core.settings import S3Settings

ALGORITHM = "AWS4-HMAC-SHA256"


class SigV4:
    """AWS Signature Version 4 for a path-style S3 request without a query string."""

    def __init__(self, access_key: str, secret_key: str, region: str, service: str = "s3") -> None:
        self.access_key, self.region, self.service = access_key, region, service
        self._secret = ("AWS4" + secret_key).encode()
        self._day = ""
        self._key = b""

    def _signing_key(self, day: str) -> bytes:
        if day != self._day:  # one derivation a day, not one a request
            key = self._secret
            for part in (day, self.region, self.service, "aws4_request"):
                key = hmac.digest(key, part.encode(), "sha256")
            self._day, self._key = day, key
        return self._key

    def headers(
        self,
        method: str,
        host: str,
        path: str,
        headers: dict[str, str],
        payload_sha256: str,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """`headers` plus `host`, `x-amz-date`, `x-amz-content-sha256` and `authorization`, every
        header signed: send exactly these. `path` is already URI-encoded."""
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        out = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
        out["host"] = host
        out["x-amz-date"] = stamp
        out["x-amz-content-sha256"] = payload_sha256
        signed = sorted(out)
        canonical_headers = "".join(f"{name}:{out[name]}\n" for name in signed)
        signed_headers = ";".join(signed)
        canonical = f"{method}\n{path}\n\n{canonical_headers}\n{signed_headers}\n{payload_sha256}"
        scope = f"{stamp[:8]}/{self.region}/{self.service}/aws4_request"
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(stamp[:8]), to_sign.encode(), "sha256").hexdigest()
        out["authorization"] = (
            f"{ALGORITHM} Credential={self.access_key}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
        )
        return out


class S3PutError(Exception):
    """The PUT failed (status or transport); the message holds no object content. `retryable`:
    a transport error or a 5xx (a 4xx, credentials or bucket, will not change by retrying)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def _retryable(error: BaseException) -> bool:
    return isinstance(error, S3PutError) and error.retryable


class S3Putter:
    """PUTs objects to one S3 endpoint with SigV4 (path-style addressing)."""

    def __init__(self, settings: S3Settings, pool_size: int = 128, retries: int = 1) -> None:
        endpoint = settings.s3_endpoint_url or f"https://s3.{settings.s3_region}.amazonaws.com"
        self.endpoint = endpoint.rstrip("/")
        parsed = URL(self.endpoint)
        self.origin = f"{parsed.scheme}://{parsed.raw_authority}"
        self.host = parsed.raw_authority  # host[:port], sent and signed as the Host header
        self.base_path = parsed.raw_path.rstrip("/")  # an endpoint may sit under a path
        self._signer = SigV4(
            settings.s3_access_key_id.get_secret_value(),
            settings.s3_secret_access_key.get_secret_value(),
            settings.s3_region,
        )
        self.retries = retries  # the same one retry as the aiobotocore client's max_attempts=2
        self.client = Http1Client(
            self.origin, limit=pool_size, connect_timeout=settings.s3_timeout, timeout=settings.s3_timeout
        )

    async def close(self) -> None:
        await self.client.close()

    def sign(self, path: str, headers: dict[str, str], payload_sha256: str) -> dict[str, str]:
        """The signed headers of `PUT path` (URI-encoded, from the endpoint's root), Host included."""
        return self._signer.headers("PUT", self.host, path, headers, payload_sha256)

    async def put(self, bucket: str, key: str, body: bytes, sha256_hex: str, headers: dict[str, str]) -> None:
        """PUT `body` (whose SHA-256 is `sha256_hex`) to `bucket/key`; raises S3PutError."""
        path = self.base_path + "/" + quote(bucket, safe="") + "/" + quote(key, safe="/")
        try:
            await self._put_once(path, body, sha256_hex, headers)
        except S3PutError as error:
            if not error.retryable or not self.retries:
                raise
            # tenacity only once a PUT failed: building its retrier costs ~16 µs, too much for every PUT.
            retrying = AsyncRetrying(stop=stop_after_attempt(self.retries), retry=retry_if_exception(_retryable),
                                     reraise=True)  # fmt: skip
            await retrying(self._put_once, path, body, sha256_hex, headers)

    async def _put_once(self, path: str, body: bytes, sha256_hex: str, headers: dict[str, str]) -> None:
        # The signer folds whitespace (CR and LF included) out of every value it signs.
        signed = self.sign(path, headers, sha256_hex)
        head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in signed.items())
        head += f"content-length: {len(body)}\r\n\r\n"
        try:
            answer = await self.client.request(head.encode(), body)
        except HttpError as exc:
            raise S3PutError(f"S3 PUT failed: {exc}", retryable=True) from None
        if answer.status != 200:
            raise S3PutError(f"S3 PUT answered {answer.status}", retryable=answer.status >= 500)
