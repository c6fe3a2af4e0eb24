"""A lean S3 PUT for the ingest hot path: botocore's SigV4 signer over one pooled aiohttp session.

Why not the whole aiobotocore client here: its request pipeline (parameter validation,
serialisation, event hooks, checksums) costs ~0.9 ms of CPU per PutObject, about four times
s3proxy's own work per PUT and the largest cost of an ingest request on a 2-core machine.
Signing alone with botocore's `S3SigV4Auth` costs ~0.06 ms, so this keeps the library's signer
and drops the rest for the one request shape ingest sends (path-style PUT, static credentials).
Everything else (readiness, bucket creation, readers in other services) uses aiobotocore.

`x-amz-content-sha256` carries the SHA-256 the object is addressed by (computed once, by the
caller; botocore's signer would hash the body again, ~20 ms for a 7 MB bulk body), so the server
verifies the body against the digest recorded in Postgres and refuses a PUT whose body differs.
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from yarl import URL

from exchange.core.settings import S3Settings


class _KnownDigestSigner(S3SigV4Auth):  # type: ignore[misc]  # botocore ships no type hints
    """botocore's S3 SigV4 signer, given the body's SHA-256 instead of computing it."""

    def payload(self, request: AWSRequest) -> str:
        digest = request.context.get("payload_sha256")
        return str(digest) if digest else str(super().payload(request))


class S3PutError(Exception):
    """The PUT failed (status or transport); the message holds no object content."""


class S3Putter:
    """PUTs objects to one S3 endpoint with SigV4 (path-style addressing)."""

    def __init__(self, settings: S3Settings, pool_size: int = 128, retries: int = 1) -> None:
        endpoint = settings.s3_endpoint_url or f"https://s3.{settings.s3_region}.amazonaws.com"
        self.endpoint = endpoint.rstrip("/")
        self.host = URL(self.endpoint).raw_authority  # host[:port] as the client sends it
        self._signer = _KnownDigestSigner(
            Credentials(settings.s3_access_key_id.get_secret_value(), settings.s3_secret_access_key.get_secret_value()),
            "s3",
            settings.s3_region,
        )
        self.retries = retries  # the same one retry as the aiobotocore client's max_attempts=2
        self.timeout = aiohttp.ClientTimeout(sock_connect=settings.s3_timeout, sock_read=settings.s3_timeout)
        self.pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    def _session_or_new(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.pool_size, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def sign(self, url: str, body: bytes, headers: dict[str, str], payload_sha256: str) -> dict[str, str]:
        """SigV4 headers for `PUT url` (botocore's signer; Host is sent by aiohttp itself)."""
        request = AWSRequest(method="PUT", url=url, data=body, headers=headers)
        request.context["payload_sha256"] = payload_sha256
        self._signer.add_auth(request)
        return {k: v for k, v in request.headers.items() if k.lower() != "host"}

    async def put(self, bucket: str, key: str, body: bytes, sha256_hex: str, headers: dict[str, str]) -> None:
        """PUT `body` (whose SHA-256 is `sha256_hex`) to `bucket/key`; raises S3PutError."""
        path = "/" + quote(bucket, safe="") + "/" + quote(key, safe="/")
        url = URL(self.endpoint + path, encoded=True)
        for attempt in range(self.retries + 1):
            request_headers = self.sign(str(url), body, headers, sha256_hex)
            try:
                async with self._session_or_new().put(url, data=body, headers=request_headers) as resp:
                    await resp.read()
                    if resp.status == 200:
                        return
                    error = S3PutError(f"S3 PUT answered {resp.status}")
                    if resp.status < 500:
                        raise error  # 4xx (credentials, bucket): retrying will not help
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                error = S3PutError(f"S3 PUT failed: {type(exc).__name__}")
            if attempt == self.retries:
                raise error
        raise AssertionError("unreachable")
