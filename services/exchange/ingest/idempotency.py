"""Idempotency-Key handling (IETF httpapi Idempotency-Key draft, Stripe's practice).

A request claims `(tenant, key)` with an in-flight row before doing any work (the claims of
concurrent requests share one statement: see `_CLAIM` and exchange.core.batching). The same key with
the same fingerprint later replays the stored response; with another fingerprint it is refused
with 409 `idempotency-key-reused` (use another key); while the first request still runs, with 409
`idempotency-key-in-flight` + Retry-After (retry the same key): see ADR 0011. A claim whose
request crashed is taken over after `lock_seconds`; an expired key (after `ttl_seconds`) starts
afresh. The success path completes the claim inside the record transaction (see store.py);
stored errors complete it here; a 5xx releases it (the row is deleted, nothing remains). Expired
rows mean nothing any more (a new claim overwrites them), so the ingest process's retention job
(`exchange.ingest.retention`, ADR 0013) deletes them in batches: the table, stored response
bodies included, stays about one TTL of traffic in size.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

import asyncpg

from exchange.core.batching import Coalescer
from exchange.core.db import delete_in_batches
from exchange.core.errors import BadRequest, Conflict
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


def request_key(values: list[str]) -> str:
    """The key from every value the header had in a request: more than one is BadRequest (400),
    since which one the client meant cannot be known; else as `parse_key`."""
    if len(values) > 1:
        raise BadRequest(f"the {HEADER} header must be sent once")
    return parse_key(values[0] if values else None)


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


class KeyReused(Conflict):
    """409 `idempotency-key-reused`: the key was already used for a different request. No
    Retry-After: retrying cannot succeed, the client needs another key (ADR 0011)."""

    def __init__(self) -> None:
        super().__init__(
            f"this {HEADER} was already used for a different request", extra={"code": "idempotency-key-reused"}
        )


class KeyInFlight(Conflict):
    """409 `idempotency-key-in-flight` + Retry-After: the key's first request is still running;
    the same request with the same key may succeed (or be replayed) later."""

    def __init__(
        self, retry_after: int, detail: str = f"a request with this {HEADER} is still being processed"
    ) -> None:
        super().__init__(
            detail,
            headers={"Retry-After": str(retry_after)},
            extra={"code": "idempotency-key-in-flight"},
        )


# One statement claims the keys of many requests (group commit, see exchange.core.batching): rows
# come sorted by (tenant, key), so concurrent batches lock rows in one order. For a key this
# batch did not win, the row as it stood when the statement began tells replay, reused or in flight; a row
# committed by another batch since then is invisible to it (NULL), and that request tries again.
_CLAIM = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::uuid[])
           WITH ORDINALITY AS i(tenant, key, fingerprint, owner, n)
), claimed AS (
    INSERT INTO ingest.idempotency_keys AS k
           (tenant, key, fingerprint, owner, state, locked_until, expires_at)
    SELECT tenant, key, fingerprint, owner, 'in_flight',
           now() + make_interval(secs => $5), now() + make_interval(secs => $6)
      FROM input ORDER BY n
    ON CONFLICT (tenant, key) DO UPDATE
       SET fingerprint = EXCLUDED.fingerprint, owner = EXCLUDED.owner, state = 'in_flight',
           status_code = NULL, response = NULL, media_type = NULL, created_at = now(),
           locked_until = EXCLUDED.locked_until, expires_at = EXCLUDED.expires_at
     WHERE k.expires_at <= now() OR (k.state = 'in_flight' AND k.locked_until <= now())
    RETURNING k.owner
)
SELECT c.owner IS NOT NULL AS won, e.fingerprint, e.state, e.status_code, e.response, e.media_type
  FROM input i
  LEFT JOIN claimed c ON c.owner = i.owner
  LEFT JOIN ingest.idempotency_keys e ON c.owner IS NULL AND e.tenant = i.tenant AND e.key = i.key
 ORDER BY i.n
"""
_COMPLETE = """
UPDATE ingest.idempotency_keys
   SET state = 'completed', status_code = $4, response = $5, media_type = $6, locked_until = now()
 WHERE tenant = $1 AND key = $2 AND owner = $3 AND state = 'in_flight'
"""
# Oldest first through the expires_at index; SKIP LOCKED leaves rows a claim is taking over to it,
# so several ingest replicas may purge at once. An expired in-flight row is deleted only once its
# lock has lapsed too (with a TTL longer than the lock, always).
_EXPIRED = "expires_at <= now() AND (state = 'completed' OR locked_until <= now())"
PURGE_SQL = f"""
DELETE FROM ingest.idempotency_keys
 WHERE (tenant, key) IN (
       SELECT tenant, key FROM ingest.idempotency_keys
        WHERE {_EXPIRED}
        ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
"""
EXPIRED_SQL = f"SELECT count(*) FROM ingest.idempotency_keys WHERE {_EXPIRED}"
_RELEASE = "DELETE FROM ingest.idempotency_keys WHERE tenant = $1 AND key = $2 AND owner = $3 AND state = 'in_flight'"


@dataclass(frozen=True, slots=True)
class _Ask:
    tenant: str
    key: str
    fingerprint: bytes
    owner: uuid.UUID


_Answer = Claim | StoredResponse | None  # None: the row vanished meanwhile; ask again


class IdempotencyStore:
    """Claims, completes and releases keys in `ingest.idempotency_keys`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        ttl_seconds: int,
        lock_seconds: int,
        retry_after: int = 1,
        *,
        max_batch: int = 128,
        max_concurrent: int = 1,  # one claim statement at a time per process: larger batches
    ) -> None:
        self.pool = pool
        self.ttl = float(ttl_seconds)
        self.lock = float(lock_seconds)
        self.retry_after = retry_after
        self.claims: Coalescer[_Ask, _Answer] = Coalescer(
            self._claim_batch, max_weight=max_batch, max_concurrent=max_concurrent, key=lambda a: (a.tenant, a.key)
        )

    def _in_flight(self) -> KeyInFlight:
        return KeyInFlight(self.retry_after)

    async def claim(self, tenant: str, key: str, fp: bytes) -> Claim | StoredResponse:
        """Own the key, or get the stored response to replay; raises KeyReused or KeyInFlight."""
        ask = _Ask(tenant, key, fp, uuid.uuid4())
        for _ in range(3):  # a concurrent release can delete the row between claim and read
            answer = await self.claims.submit(ask)  # raises KeyReused or KeyInFlight
            if answer is not None:
                return answer
        raise self._in_flight()

    async def _claim_batch(self, asks: list[_Ask]) -> list[_Answer | BaseException]:
        """One statement for the claims of concurrent requests (distinct keys, see Coalescer)."""
        order = sorted(range(len(asks)), key=lambda i: (asks[i].tenant, asks[i].key))
        sorted_asks = [asks[i] for i in order]
        rows = await self.pool.fetch(
            _CLAIM,
            [a.tenant for a in sorted_asks],
            [a.key for a in sorted_asks],
            [a.fingerprint for a in sorted_asks],
            [a.owner for a in sorted_asks],
            self.lock,
            self.ttl,
        )
        answers: list[_Answer | BaseException] = [None] * len(asks)
        for index, ask, row in zip(order, sorted_asks, rows, strict=True):
            answers[index] = self._answer(ask, row)
        return answers

    def _answer(self, ask: _Ask, row: asyncpg.Record) -> _Answer | BaseException:
        if row["won"]:
            return Claim(ask.tenant, ask.key, ask.owner, ask.fingerprint)
        if row["state"] is None:
            return None
        if bytes(row["fingerprint"]) != ask.fingerprint:
            return KeyReused()
        if row["state"] == "completed":
            return StoredResponse(int(row["status_code"]), bytes(row["response"]), str(row["media_type"]))
        return self._in_flight()

    async def complete(self, claim: Claim, status: int, body: bytes, media_type: str) -> bool:
        """Store a final response outside a record transaction (request content errors)."""
        result = await self.pool.execute(_COMPLETE, claim.tenant, claim.key, claim.owner, status, body, media_type)
        return str(result).endswith(" 1")

    async def purge_expired(self, batch: int = 1000) -> int:
        """Delete every expired key, `batch` rows a statement (short locks); returns how many. The
        ingest process's retention job runs the same statement (`exchange.ingest.retention`)."""
        return await delete_in_batches(self.pool, PURGE_SQL, batch=batch)

    async def release(self, claim: Claim) -> None:
        """Forget an in-flight claim so the client may retry with the same key (after a 5xx)."""
        await self.pool.execute(_RELEASE, claim.tenant, claim.key, claim.owner)
