"""The tokenizer over HTTP: people in batches → token sets. PII is only in memory for the call.

Requests carry the people's attributes and an opaque per-batch index as `record_id`; responses
carry tokens and validity flags only. Errors keep no response text (it could only be a problem
body, but nothing from the exchange is echoed into exceptions or logs either way).

- The tokenizer unreachable, timing out, 5xx, 429, or rejecting our credentials (401/403: a
  rotated secret, fixed by redeploying) → `DependencyError` (transient: the worker backs off).
- A 4xx that says the request itself is wrong (400/413/415/422) is a bug of ours or a record the
  contract cannot carry → `PoisonError("tokenizer-rejected")` for the whole batch; the worker
  retries record by record to find the culprit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from exchange.core.errors import ConfigError, DependencyError, PoisonError
from exchange.core.logging import current_correlation_id
from exchange.normalizer.model import Person, TokenSet

RULES = ("T1", "T2", "T3", "T4", "T5")
TRANSIENT_STATUS = frozenset({401, 403, 408, 425, 429, 500, 502, 503, 504})


class TokenizerClient:
    """Batched `POST /v1/tokenize` with timeouts; one instance per worker (connection pooling)."""

    def __init__(
        self,
        base_url: str,
        bearer: str | Callable[[], str],
        *,
        timeout: float = 5.0,
        batch_size: int = 500,
        transport: httpx.AsyncBaseTransport | None = None,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        """`observe(outcome, seconds)` is told of every call: outcome `ok`, `transient` or `rejected`."""
        self._observe = observe or (lambda outcome, seconds: None)
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            transport=transport,
        )
        self._bearer = bearer
        self.batch_size = batch_size

    async def aclose(self) -> None:
        await self._client.aclose()

    async def ready(self) -> None:
        """A readiness check: the tokenizer's own `/readyz` answers 200; raises otherwise."""
        response = await self._client.get("/readyz")
        if response.status_code != 200:
            raise DependencyError("tokenizer", f"HTTP {response.status_code}")

    async def tokenize(self, people: Sequence[Person]) -> list[TokenSet]:
        """One token set per person, in order. Raises DependencyError or PoisonError (see module)."""
        out: list[TokenSet] = []
        for start in range(0, len(people), self.batch_size):
            out.extend(await self._call(people[start : start + self.batch_size]))
        return out

    async def _call(self, people: Sequence[Person]) -> list[TokenSet]:
        body = {"records": [p.as_request(str(i)) for i, p in enumerate(people)]}
        try:
            bearer = self._bearer() if callable(self._bearer) else self._bearer
        except ConfigError:  # a token file mid-rotation: try again later
            raise DependencyError("tokenizer", "credentials unavailable") from None
        headers = {"Authorization": f"Bearer {bearer}"}
        cid = current_correlation_id()
        if cid:
            headers["X-Correlation-ID"] = cid
        started = time.perf_counter()
        try:
            response = await self._client.post("/v1/tokenize", json=body, headers=headers)
        except httpx.HTTPError as exc:
            self._observe("transient", time.perf_counter() - started)
            raise DependencyError("tokenizer", type(exc).__name__) from None
        finally:
            del body  # the request's PII goes with this frame; nothing else references it
        seconds = time.perf_counter() - started
        if response.status_code in TRANSIENT_STATUS or response.status_code >= 500:
            self._observe("transient", seconds)
            raise DependencyError("tokenizer", f"HTTP {response.status_code}")
        if response.status_code != 200:
            self._observe("rejected", seconds)
            raise PoisonError("tokenizer-rejected", f"tokenizer answered HTTP {response.status_code}")
        self._observe("ok", seconds)
        return _parse(response, len(people))


def _parse(response: httpx.Response, expected: int) -> list[TokenSet]:
    try:
        document: Any = response.json()
        key_id = document["key_id"]
        results = document["results"]
        if not isinstance(key_id, str) or not isinstance(results, list) or len(results) != expected:
            raise ValueError("shape")
        sets = []
        for i, result in enumerate(results):
            if result.get("record_id", str(i)) != str(i):
                raise ValueError("order")
            tokens = result["tokens"]
            sets.append(TokenSet(key_id, tuple(str(tokens[r]) for r in RULES)))  # type: ignore[arg-type]
    except (ValueError, KeyError, TypeError, AttributeError):
        # A tokenizer answering off-contract is a deployment problem, not a bad record.
        raise DependencyError("tokenizer", "response off contract") from None
    return sets
