"""Idempotency-Key handling (IETF httpapi Idempotency-Key draft, Stripe's practice).

A request claims `(tenant, key)` with an in-flight row before doing any work. The same key with
the same fingerprint later replays the stored response; with another fingerprint it is refused
(422); while the first request still runs it is refused with 409 + Retry-After. A claim whose
request crashed is taken over after `lock_seconds`; an expired key (after `ttl_seconds`) starts
afresh. The success path completes the claim inside the record transaction (see store.py);
stored errors complete it here; a 5xx releases it (the row is deleted, nothing remains). Expired
rows mean nothing any more (a new claim overwrites them), so `purge_expired` deletes them in
batches: the table, stored response bodies included, stays about one TTL of traffic in size.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from exchange.core.errors import BadRequest, Conflict, Unprocessable
from exchange.core.logging import get_logger

log = get_logger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
_KEY_RE = re.compile(r"^[\x20-\x7e]{1,255}$")


def parse_key(raw: str | None) -> str:
    """The key from the header: 1-255 printable ASCII characters, optionally an sf-string
    (`"key"`). Raises BadRequest (400) when missing or malformed."""
    if raw is None:
        raise BadRequest(f"the {HEADER} header is required")
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not value.strip() or not _KEY_RE.match(value):
        raise BadRequest(f"the {HEADER} header must be 1-{MAX_KEY_CHARS} printable ASCII characters")
    return value


def fingerprint(path: str, media_type: str, body: bytes) -> bytes:
    """What "the same request" means: same path, same media type, same body bytes."""
    digest = hashlib.sha256()
    for part in (path.encode(), b"\0", media_type.encode(), b"\0", body):
        digest.update(part)
    return digest.digest()


@dataclass(frozen=True, slots=True)
class Claim:
    """This request owns `(tenant, key)` until it completes or releases it."""

    tenant: str
    key: str
    owner: uuid.UUID
    fingerprint: bytes


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A completed request's response, replayed for the same key and body."""

    status: int
    body: bytes
    media_type: str


class KeyReused(Unprocessable):
    """422: the key was already used for a different request."""

    def __init__(self) -> None:
        super().__init__(
            f"this {HEADER} was already used for a different request", extra={"code": "idempotency-key-reused"}
        )


_CLAIM = """
INSERT INTO ingest.idempotency_keys AS k
       (tenant, key, fingerprint, owner, state, locked_until, expires_at)
VALUES ($1, $2, $3, $4, 'in_flight', now() + make_interval(secs => $5), now() + make_interval(secs => $6))
ON CONFLICT (tenant, key) DO UPDATE
   SET fingerprint = EXCLUDED.fingerprint, owner = EXCLUDED.owner, state = 'in_flight',
       status_code = NULL, response = NULL, media_type = NULL, created_at = now(),
       locked_until = EXCLUDED.locked_until, expires_at = EXCLUDED.expires_at
 WHERE k.expires_at <= now() OR (k.state = 'in_flight' AND k.locked_until <= now())
RETURNING k.owner
"""
_EXISTING = """
SELECT fingerprint, state, status_code, response, media_type
  FROM ingest.idempotency_keys WHERE tenant = $1 AND key = $2
"""
_COMPLETE = """
UPDATE ingest.idempotency_keys
   SET state = 'completed', status_code = $4, response = $5, media_type = $6, locked_until = now()
 WHERE tenant = $1 AND key = $2 AND owner = $3 AND state = 'in_flight'
"""
# Oldest first through the expires_at index; SKIP LOCKED leaves rows a claim is taking over to it,
# so several ingest replicas may purge at once. An expired in-flight row is deleted only once its
# lock has lapsed too (with a TTL longer than the lock, always).
_PURGE = """
DELETE FROM ingest.idempotency_keys
 WHERE (tenant, key) IN (
       SELECT tenant, key FROM ingest.idempotency_keys
        WHERE expires_at <= now() AND (state = 'completed' OR locked_until <= now())
        ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
"""
_RELEASE = "DELETE FROM ingest.idempotency_keys WHERE tenant = $1 AND key = $2 AND owner = $3 AND state = 'in_flight'"


class IdempotencyStore:
    """Claims, completes and releases keys in `ingest.idempotency_keys`."""

    def __init__(self, pool: asyncpg.Pool, ttl_seconds: int, lock_seconds: int, retry_after: int = 1) -> None:
        self.pool = pool
        self.ttl = float(ttl_seconds)
        self.lock = float(lock_seconds)
        self.retry_after = retry_after

    async def claim(self, tenant: str, key: str, fp: bytes) -> Claim | StoredResponse:
        """Own the key, or get the stored response to replay; raises KeyReused or Conflict."""
        owner = uuid.uuid4()
        for _ in range(3):  # a concurrent release can delete the row between the two statements
            got = await self.pool.fetchval(_CLAIM, tenant, key, fp, owner, self.lock, self.ttl)
            if got == owner:
                return Claim(tenant, key, owner, fp)
            row = await self.pool.fetchrow(_EXISTING, tenant, key)
            if row is None:
                continue
            if bytes(row["fingerprint"]) != fp:
                raise KeyReused()
            if row["state"] == "completed":
                return StoredResponse(int(row["status_code"]), bytes(row["response"]), str(row["media_type"]))
            break
        raise Conflict(
            f"a request with this {HEADER} is still being processed",
            headers={"Retry-After": str(self.retry_after)},
        )

    async def complete(self, claim: Claim, status: int, body: bytes, media_type: str) -> bool:
        """Store a final response outside a record transaction (request content errors)."""
        result = await self.pool.execute(_COMPLETE, claim.tenant, claim.key, claim.owner, status, body, media_type)
        return str(result).endswith(" 1")

    async def purge_expired(self, batch: int = 1000) -> int:
        """Delete every expired key, `batch` rows a statement (short locks); returns how many."""
        deleted = 0
        while True:
            status = await self.pool.execute(_PURGE, batch)
            count = int(str(status).rsplit(" ", 1)[-1])
            deleted += count
            if count < batch:
                return deleted

    async def purge_forever(self, every: float, purged: Callable[[int], object]) -> None:
        """`purge_expired` every `every` seconds, reporting counts to `purged` (every replica
        runs one; see `_PURGE`); Postgres errors are logged and the next round retries."""
        while True:
            try:
                purged(await self.purge_expired())
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("idempotency_purge_failed", error_class=type(exc).__name__)
            await asyncio.sleep(every)

    async def release(self, claim: Claim) -> None:
        """Forget an in-flight claim so the client may retry with the same key (after a 5xx)."""
        await self.pool.execute(_RELEASE, claim.tenant, claim.key, claim.owner)
