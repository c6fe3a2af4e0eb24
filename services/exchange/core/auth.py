"""JWT bearer authentication with keys from a JWKS URL.

Rules: only allow-listed asymmetric algorithms (never `none`, never HS*, so HS/RS confusion is
impossible); the key's type must match the token's algorithm; `kid` is required; `iss`, `aud`,
`exp` (with a small leeway) and `sub` are required, and a partner token may not live longer than
`JWT_MAX_LIFETIME_SECONDS` (`exp - iat`, or `exp - now` without `iat`); scopes come from `scope`
(space separated) or `scp` (list), and the wildcard scope `*` means every scope only for
`Bearer dev`; the tenant from the configured claim, falling back to `sub`, never from a body, and
it must be an identifier (TENANT_PATTERN: it becomes part of object keys and rows).
JWKS are cached and refetched at most once per unknown `kid` (rate limited, so a flood of random
kids cannot hammer the issuer). `Bearer dev` is accepted only when ENV=local.

A token that verified is remembered (`JWT_CACHE_SECONDS`, `JWT_CACHE_SIZE`) and accepted again
without re-verifying it, never past its `exp` plus the leeway: a partner sends the same token
with every request until it expires, and verifying one costs ~0.2-0.3 ms of CPU against ~3 µs for
a hit (`make bench-auth`). Only the exact token string hits; a
token that failed is verified again each time. A key removed from the JWKS stops being
accepted within `JWKS_CACHE_SECONDS` + `JWT_CACHE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, NamedTuple

import httpx
import jwt
from cachetools import TLRUCache
from fastapi import Depends, Request

from exchange.core.errors import Forbidden, ServiceUnavailable, Unauthorized
from exchange.core.logging import get_logger
from exchange.core.settings import AuthSettings

log = get_logger(__name__)

TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@|+-]{0,127}$")
"""A tenant: 1-128 characters, letters and digits first, then also `. _ : @ | + -` (which `sub`s
such as `client@clients` or `auth0|abc` use); no `/`, so it cannot climb out of its key prefix."""

_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
DEV_TOKEN = "dev"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the verified subject, its tenant, scopes and roles."""

    subject: str
    tenant: str
    scopes: frozenset[str]
    roles: frozenset[str] = field(default_factory=frozenset)
    is_dev: bool = False

    def has_scope(self, scope: str) -> bool:
        """Whether the principal holds `scope`; `*` holds every scope for `Bearer dev` only."""
        return scope in self.scopes or (self.is_dev and "*" in self.scopes)


class JWKSCache:
    """Fetches and caches a JWKS document; refetches once for an unknown kid."""

    def __init__(
        self,
        url: str,
        ttl_seconds: int = 300,
        min_refetch_seconds: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.ttl = ttl_seconds
        self.min_refetch = min_refetch_seconds
        self._client = client
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def _fetch(self) -> None:
        client = self._client or httpx.AsyncClient(timeout=5.0)
        try:
            resp = await client.get(self.url)
            resp.raise_for_status()
            keyset = jwt.PyJWKSet.from_dict(resp.json())
        except (httpx.HTTPError, jwt.PyJWKSetError, ValueError) as exc:
            log.warning("jwks_fetch_failed", error_class=type(exc).__name__)
            raise ServiceUnavailable("signing keys unavailable") from exc
        finally:
            if self._client is None:
                await client.aclose()
        self._keys = {k.key_id: k for k in keyset.keys if k.key_id}
        self._fetched_at = time.monotonic()

    async def get(self, kid: str) -> jwt.PyJWK:
        now = time.monotonic()
        key = self._keys.get(kid)
        if key is not None and now - self._fetched_at < self.ttl:
            return key
        async with self._lock:
            key = self._keys.get(kid)
            fresh = time.monotonic() - self._fetched_at
            if key is not None and fresh < self.ttl:
                return key
            if fresh >= self.min_refetch or not self._keys:
                await self._fetch()
            key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("unknown signing key")
        return key


class _Verified(NamedTuple):
    principal: Principal
    usable_until: float
    """Wall-clock seconds: the token's `exp` plus the leeway."""


class JWTVerifier:
    """Verifies bearer tokens into a Principal, or raises Unauthorized."""

    def __init__(self, settings: AuthSettings, jwks: JWKSCache | None = None) -> None:
        self.settings = settings
        self.algorithms = frozenset(settings.jwt_algorithms)
        self.jwks = jwks or (JWKSCache(settings.jwks_url, settings.jwks_cache_seconds) if settings.jwks_url else None)
        ttl = settings.jwt_cache_seconds

        def until(_token: str, verified: _Verified, now: float) -> float:  # monotonic, as the cache's timer
            return now + min(ttl, verified.usable_until - time.time())

        self.verified: TLRUCache[str, _Verified] | None = (
            TLRUCache(maxsize=settings.jwt_cache_size, ttu=until) if ttl > 0 else None
        )

    async def verify(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("expected a bearer token")
        if token == DEV_TOKEN:
            return self._dev_principal()
        if self.verified is not None and (hit := self.verified.get(token)) is not None:
            return hit.principal
        principal, usable_until = await self._verify(token)
        if self.verified is not None:
            self.verified[token] = _Verified(principal, usable_until)  # not kept if already past its ttu
        return principal

    def _dev_principal(self) -> Principal:
        """`Bearer dev`: every scope when ENV=local, refused elsewhere."""
        if self.settings.is_local:
            return Principal(
                subject="dev",
                tenant=self.settings.dev_tenant,
                scopes=frozenset({"*"}),
                roles=frozenset({"dev"}),
                is_dev=True,
            )
        raise Unauthorized("development token refused outside ENV=local")

    async def _verify(self, token: str) -> tuple[Principal, float]:
        """Check the token's signature and claims: its Principal, and until when it may be used."""
        claims = await self._claims(token, issuer=self.settings.jwt_issuer, audience=self.settings.jwt_audience)
        # Partner tokens only: the API server issues ServiceAccount tokens that live a year.
        lifetime = float(claims["exp"]) - float(claims.get("iat", time.time()))
        if lifetime > self.settings.jwt_max_lifetime_seconds:
            raise Unauthorized(f"token lifetime exceeds {self.settings.jwt_max_lifetime_seconds} seconds")
        return self._principal(claims), float(claims["exp"]) + self.settings.jwt_leeway_seconds

    async def _claims(self, token: str, *, issuer: str | None, audience: str | None) -> dict[str, Any]:
        """The claims of a token whose signature, algorithm, key, `iss`, `aud` and `exp` check out."""
        if self.jwks is None:
            raise Unauthorized("token verification is not configured")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("malformed token") from exc
        alg = str(header.get("alg", ""))
        if alg not in self.algorithms:
            raise Unauthorized("token algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("token has no key id")
        key = await self.jwks.get(kid)
        if _KEY_TYPES.get(alg[:2]) != key.key_type:
            raise Unauthorized("key type does not match the token algorithm")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=audience,
                issuer=issuer,
                leeway=self.settings.jwt_leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorized("token audience not accepted") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthorized("token issuer not accepted") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("token rejected") from exc
        return claims

    def _principal(self, claims: dict[str, Any]) -> Principal:
        raw_scopes = claims.get("scope", claims.get("scp", []))
        scopes = raw_scopes.split() if isinstance(raw_scopes, str) else [str(s) for s in raw_scopes]
        roles = claims.get("roles", [])
        tenant = claims.get(self.settings.jwt_tenant_claim) or claims["sub"]
        if not isinstance(tenant, str) or not TENANT_PATTERN.match(tenant):
            raise Unauthorized("token carries no usable tenant")
        return Principal(
            subject=str(claims["sub"]),
            tenant=tenant,
            scopes=frozenset(scopes),
            roles=frozenset(str(r) for r in roles) if isinstance(roles, list) else frozenset(),
        )


def require_scope(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """FastAPI dependency: a verified Principal holding `scope` (403 when it lacks it).

    The app must put a JWTVerifier on `app.state.verifier`.
    """

    async def dependency(request: Request) -> Principal:
        verifier: JWTVerifier = request.app.state.verifier
        principal = await verifier.verify(request.headers.get("authorization"))
        if not principal.has_scope(scope):
            raise Forbidden(f"missing scope {scope}")
        return principal

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency


def principal_dep(scope: str) -> Any:
    """`Annotated` alias factory: `WriterDep = principal_dep("ingest:write")`."""
    return Annotated[Principal, Depends(require_scope(scope))]
