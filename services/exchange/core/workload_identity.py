"""Workload identity between services: Kubernetes ServiceAccount tokens (ADR 0008).

The caller (the normalizer) sends the audience-bound token the kubelet projects into its Pod and
rotates; `TokenFile` re-reads it only when the file changed. The callee (the tokenizer) verifies it
locally with `ServiceAccountVerifier`: the cluster's service-account issuer keys come from the API
server (`/openid/v1/jwks`, read with the callee's own Pod token and the cluster CA; the built-in
`system:service-account-issuer-discovery` role is bound to every ServiceAccount), the issuer from
its discovery document unless `SERVICE_TOKEN_ISSUER` pins it. Accepted: signature by a current
key, the expected `iss` and `aud`, not expired, and `sub` exactly `SERVICE_TOKEN_SUBJECT`.
A wrong subject is a 403, anything else a 401. Verified tokens are cached until their `exp` like
any JWT (the JWTVerifier machinery: JWT_CACHE_SECONDS, JWKS_CACHE_SECONDS). No token is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import Callable, Generator, Iterable
from pathlib import Path

import httpx

from exchange.core.auth import JWKSCache, JWTVerifier, Principal
from exchange.core.errors import ConfigError, Forbidden, ServiceUnavailable, Unauthorized
from exchange.core.logging import get_logger
from exchange.core.settings import ServiceTokenSettings

log = get_logger(__name__)

JWKS_PATH = "/openid/v1/jwks"
DISCOVERY_PATH = "/.well-known/openid-configuration"


class TokenFile:
    """A bearer token in a file someone else rotates (the kubelet, for a projected token).

    Calling it returns the token. The file is read again when it changed (inode, mtime or size:
    the kubelet swaps a symlink to a new file) and at least every `max_age` seconds, so a call
    costs one stat(), not a read. Raises ConfigError naming `variable`, never the content, when
    the file is missing, unreadable or empty (a caller treats that as transient).
    """

    def __init__(self, path: Path, variable: str = "token file", max_age: float = 60.0) -> None:
        self.path = path
        self.variable = variable
        self.max_age = max_age
        self._seen: tuple[int, int, int] | None = None
        self._read_at = 0.0
        self._token = ""

    def __call__(self) -> str:
        try:
            st = os.stat(self.path)
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
            now = time.monotonic()
            if seen != self._seen or now - self._read_at >= self.max_age:
                token = self.path.read_text().strip()
                if not token:
                    raise ConfigError(f"{self.variable} is empty")
                self._token, self._seen, self._read_at = token, seen, now
        except OSError as exc:
            raise ConfigError(f"{self.variable} unreadable ({type(exc).__name__})") from None
        return self._token


class BearerFromFile(httpx.Auth):
    """httpx auth: `Authorization: Bearer <token>` from a TokenFile on every request; without a
    readable token the request goes anonymous and the server's 401/403 says why."""

    def __init__(self, token: Callable[[], str]) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        with contextlib.suppress(ConfigError):
            request.headers["Authorization"] = f"Bearer {self._token()}"
        yield request


def kubernetes_api_client(settings: ServiceTokenSettings) -> httpx.AsyncClient:
    """An HTTP client for the API server: its CA, this Pod's own (rotating) token.

    Raises ConfigError when an https API server's CA file is missing (no ServiceAccount token
    mounted: `automountServiceAccountToken` is off for this Pod).
    """
    verify: ssl.SSLContext | bool = True
    if settings.kubernetes_api_url.startswith("https://"):
        if not settings.kubernetes_ca_file.is_file():
            raise ConfigError(
                f"KUBERNETES_CA_FILE {settings.kubernetes_ca_file} not found: SERVICE_AUTH=serviceaccount reads the "
                "issuer keys from the API server with this Pod's ServiceAccount token and CA"
            )
        verify = ssl.create_default_context(cafile=str(settings.kubernetes_ca_file))
    auth = BearerFromFile(TokenFile(settings.kubernetes_token_file, "KUBERNETES_TOKEN_FILE"))
    return httpx.AsyncClient(verify=verify, auth=auth, timeout=httpx.Timeout(5.0))


class IssuerDiscovery:
    """The service-account issuer the API server signs with: its discovery document's `issuer`,
    fetched again every `ttl` seconds; the last value is kept while a refresh fails (retried after
    `retry` seconds). Raises ServiceUnavailable (503) while none was ever fetched."""

    def __init__(self, url: str, client: httpx.AsyncClient, ttl: float = 300.0, retry: float = 10.0) -> None:
        self.url = url
        self.ttl = ttl
        self.retry = retry
        self._client = client
        self._issuer: str | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def __call__(self) -> str:
        if self._issuer is not None and time.monotonic() - self._fetched_at < self.ttl:
            return self._issuer
        async with self._lock:
            if self._issuer is None or time.monotonic() - self._fetched_at >= self.ttl:
                await self._refresh()
        if self._issuer is None:
            raise ServiceUnavailable("service-account issuer unavailable")
        return self._issuer

    async def _refresh(self) -> None:
        try:
            resp = await self._client.get(self.url)
            resp.raise_for_status()
            issuer = resp.json()["issuer"]
            if not isinstance(issuer, str) or not issuer:
                raise ValueError("no issuer")
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("issuer_discovery_failed", error_class=type(exc).__name__)
            self._fetched_at = time.monotonic() - self.ttl + self.retry  # try again after `retry`
            return
        self._issuer, self._fetched_at = issuer, time.monotonic()


class FixedIssuer:
    """SERVICE_TOKEN_ISSUER: the issuer named by configuration."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    async def __call__(self) -> str:
        return self.issuer


class ServiceAccountVerifier(JWTVerifier):
    """Verifies ServiceAccount tokens of exactly one ServiceAccount into a Principal holding `scopes`.

    `Bearer dev` is refused even when ENV=local: a service in this mode runs on a real cluster.
    """

    def __init__(
        self,
        settings: ServiceTokenSettings,
        scopes: Iterable[str],
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not (settings.service_token_audience and settings.service_token_subject):
            raise ConfigError("SERVICE_TOKEN_AUDIENCE and SERVICE_TOKEN_SUBJECT are required")
        api = settings.kubernetes_api_url.rstrip("/")
        client = client or kubernetes_api_client(settings)
        super().__init__(settings, JWKSCache(api + JWKS_PATH, settings.jwks_cache_seconds, client=client))
        self.issuer: IssuerDiscovery | FixedIssuer = (
            FixedIssuer(settings.service_token_issuer)
            if settings.service_token_issuer
            else IssuerDiscovery(api + DISCOVERY_PATH, client, settings.jwks_cache_seconds)
        )
        self.audience = settings.service_token_audience
        self.subject = settings.service_token_subject
        self.scopes = frozenset(scopes)

    def _dev_principal(self) -> Principal:
        raise Unauthorized("this service accepts ServiceAccount tokens only")

    async def _verify(self, token: str) -> tuple[Principal, float]:
        claims = await self._claims(token, issuer=await self.issuer(), audience=self.audience)
        if claims["sub"] != self.subject:
            raise Forbidden("this ServiceAccount may not call this service")
        principal = Principal(subject=self.subject, tenant=self.subject, scopes=self.scopes)
        return principal, float(claims["exp"]) + self.settings.jwt_leeway_seconds
