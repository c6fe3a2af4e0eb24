"""A data partner as the fault tests see it: real records, one a request, through the ingress.

- `Records`: the Synthea FHIR sample (`../shared/data/fhir/synthea-10-patients`), one resource a
  record: every fourth a Patient (what the tokenizer works on), the other types interleaved.
  Each body is sent once per run: a resource used again gets a suffixed id, so no body is sent
  under two keys (content addressing would make the second land on the first's canonical row).
- `Partner.deliver`: POST with the record's own Idempotency-Key; every 5xx, connection error and
  timeout is retried with the SAME key after a backoff (exponential, full jitter), a 409
  `idempotency-key-in-flight` (the key's first request still running) after its Retry-After; a
  202 ends it, another 4xx (a 409 `idempotency-key-reused` too) ends it refused. Every answer is
  kept (`Delivery.outcomes`, see `outcome`; a 409 with neither, which the contract does not
  describe, is retried).
- `Partner.watch` / `settle`: which accepted records GraphQL (through the same ingress) already
  serves, and since when (`normalizedAt`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import orjson

from exchange_devtools.engines.base import REPO_ROOT

SYNTHEA = REPO_ROOT.parent / "shared" / "data" / "fhir" / "synthea-10-patients"
GRAPHQL_BATCH = 25
"""Records asked per GraphQL request (the query service allows 30 aliases a document)."""


@dataclass
class Delivery:
    """One record: its key, body, every answer it got, and what became of it."""

    key: str
    body: bytes
    sha256: str
    first_sent: float = 0.0
    outcomes: list[str] = field(default_factory=list)
    """Each attempt's HTTP status, or `connect`/`timeout`/`transport`."""
    record_id: str | None = None
    accepted_at: float | None = None
    normalized_at: float | None = None
    done: bool = False


class Records:
    """Record bodies to send, each once per run: every `patient_every`-th a Patient (the only type
    the tokenizer sees), the others the remaining types interleaved."""

    def __init__(
        self,
        patients: list[dict[str, Any]],
        others: list[dict[str, Any]],
        run: str,
        *,
        patient_every: int = 4,
        salt: str = "",
    ) -> None:
        self.streams = (patients, others)
        self.salt = salt
        self.used = [0, 0]
        self.patient_every = patient_every
        self.run = run
        self.sent = 0

    @classmethod
    def synthea(cls, run: str, *, salt: str = "", folder: Path = SYNTHEA) -> Records:
        """The sample; with `salt` every resource id carries it, so the bodies differ from those
        of another run against the same pipeline."""
        files = sorted(folder.glob("*.ndjson"))
        if not files:
            raise FileNotFoundError(f"no Synthea NDJSON in {folder}")
        per_file = [[orjson.loads(line) for line in f.read_bytes().splitlines() if line.strip()] for f in files]
        mixed = [r for group in itertools.zip_longest(*per_file) for r in group if r is not None]
        patients = [r for r in mixed if r["resourceType"] == "Patient"]
        return cls(patients, [r for r in mixed if r["resourceType"] != "Patient"], run, salt=salt)

    def next(self) -> Delivery:
        which = 0 if self.sent % self.patient_every == 0 else 1
        stream, n = self.streams[which], self.used[which]
        self.used[which] += 1
        resource = stream[n % len(stream)]
        suffix = "".join(f"-{part}" for part in (self.salt, n // len(stream)) if part)
        if suffix:  # the same resource again (or another run): another id, so another body
            resource = {**resource, "id": resource["id"] + suffix}
        body = orjson.dumps(resource)
        delivery = Delivery(f"{self.run}-{self.sent}", body, hashlib.sha256(body).hexdigest())
        self.sent += 1
        return delivery


def outcome(status: int, retry_after: str | None, content_type: str, code: str | None = None) -> str:
    """How an answer is kept: its status; `-ingress` for a 5xx the ingress controller gave itself
    (not problem+json: the backend refused the connection, or died mid-request, which Skipper
    answers 500); `409-key-reused` for the refusal of a key bound to another body (every body
    has its own key here, so it means a bug); `409-without-retry-after` for a 409 the contract
    does not describe (in flight without Retry-After)."""
    if status >= 500 and not content_type.startswith("application/problem+json"):
        return f"{status}-ingress"
    if status == 409 and code == "idempotency-key-reused":
        return "409-key-reused"
    if status == 409 and not retry_after:
        return "409-without-retry-after"
    return str(status)


def _problem_code(resp: httpx.Response) -> str | None:
    """The problem+json `code` of a 409 (reused or in flight), else None."""
    if resp.status_code != 409 or not resp.headers.get("Content-Type", "").startswith("application/problem+json"):
        return None
    with contextlib.suppress(ValueError):
        code = resp.json().get("code")
        return code if isinstance(code, str) else None
    return None


class Partner:
    """An HTTP client of one pipeline's ingress (`Host: host`, `Bearer dev`)."""

    def __init__(
        self, base_url: str, host: str, *, token: str = "dev", timeout: float = 10.0, give_up_after: float = 300.0
    ) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Host": host, "Authorization": f"Bearer {token}"},
            timeout=timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
        self.give_up_after = give_up_after

    async def __aenter__(self) -> Partner:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.client.aclose()

    async def deliver(self, d: Delivery) -> None:
        """Send until a 202 (or a refusal, or `give_up_after` seconds)."""
        d.first_sent = time.time()
        headers = {"Idempotency-Key": d.key, "Content-Type": "application/fhir+json"}
        backoff = 0.25
        while time.time() - d.first_sent < self.give_up_after:
            wait = min(backoff, 8.0) * random.random()  # full jitter
            try:
                resp = await self.client.post("/v1/ingest", content=d.body, headers=headers)
            except httpx.ConnectError:
                d.outcomes.append("connect")
            except httpx.TimeoutException:
                d.outcomes.append("timeout")
            except httpx.TransportError:
                d.outcomes.append("transport")
            else:
                status, retry_after = resp.status_code, resp.headers.get("Retry-After")
                kept = outcome(status, retry_after, resp.headers.get("Content-Type", ""), _problem_code(resp))
                d.outcomes.append(kept)
                if status == 202:
                    d.record_id, d.accepted_at = str(resp.json()["record_id"]), time.time()
                    break
                if status in (409, 429) and retry_after:
                    wait = float(retry_after)  # the key's first request is still running, or slow down
                elif (status < 500 and status != 409) or kept == "409-key-reused":
                    break  # refused for good: another key would be needed
            await asyncio.sleep(wait)
            backoff *= 2
        d.done = True

    async def stream(
        self,
        records: Records,
        deliveries: list[Delivery],
        *,
        rate: float,
        until: Callable[[], bool],
        max_seconds: float,
    ) -> None:
        """Start one delivery every 1/`rate` seconds until `until()` (checked after each start)
        or `max_seconds`; return when every delivery is done."""
        tasks: list[asyncio.Task[None]] = []
        started = time.monotonic()
        try:
            for n in itertools.count():
                await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
                d = records.next()
                deliveries.append(d)
                tasks.append(asyncio.create_task(self.deliver(d)))
                if until() or time.monotonic() - started > max_seconds:
                    break
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def normalized(self, deliveries: list[Delivery]) -> None:
        """Ask GraphQL which of `deliveries` (accepted, not yet seen normalized) it serves now."""
        waiting = [d for d in deliveries if d.record_id and d.normalized_at is None]
        for start in range(0, len(waiting), GRAPHQL_BATCH):
            batch = waiting[start : start + GRAPHQL_BATCH]
            names = [f"r{i}" for i in range(len(batch))]
            query = "query(" + ", ".join(f"${n}: ID!" for n in names) + ") {"
            query += " ".join(f"{n}: record(id: ${n}) {{ normalizedAt }}" for n in names) + " }"
            variables = {n: d.record_id for n, d in zip(names, batch, strict=True)}
            try:
                resp = await self.client.post("/graphql", json={"query": query, "variables": variables})
                data = (resp.json().get("data") or {}) if resp.status_code == 200 else {}
            except (httpx.TransportError, ValueError):
                continue
            for n, d in zip(names, batch, strict=True):
                if (found := data.get(n)) and found.get("normalizedAt"):
                    d.normalized_at = datetime.fromisoformat(found["normalizedAt"]).timestamp()

    async def watch(self, deliveries: list[Delivery], every: float = 1.0) -> None:
        """`normalized` every `every` seconds, until cancelled."""
        while True:
            with contextlib.suppress(httpx.HTTPError):
                await self.normalized(deliveries)
            await asyncio.sleep(every)

    async def settle(self, deliveries: list[Delivery], seconds: float) -> None:
        """Wait until every accepted delivery is normalized, or `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.normalized(deliveries)
            if all(d.normalized_at for d in deliveries if d.record_id):
                return
            await asyncio.sleep(1.0)
