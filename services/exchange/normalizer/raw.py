"""The raw zone: fetch a record's object from S3, verify its SHA-256, cut out its line.

Objects are content-addressed and immutable, so a verified object is cached (bounded by bytes,
least recently used first): a bulk NDJSON object is fetched once for its many events. The cache
holds raw records (PII) in process memory only, where they are anyway while being normalized.

With an aiohttp session, a GET is a URL presigned by botocore (local computation, same signing)
fetched with aiohttp: a third of the CPU of a full `get_object` call, which matters when every
record is its own object (single-record ingest).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import OrderedDict
from typing import Any

import aiohttp
import orjson
from botocore.exceptions import BotoCoreError, ClientError

from exchange.core.errors import DependencyError, PoisonError
from exchange.normalizer.events import IngestedEvent

MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket"})
"""S3 error codes that make a record poison; any other answer is an outage to wait out. Ingest PUTs
the object before its event exists, and a 404 without S3's code comes from something else: a proxy
answering for the S3 Service between two pods dead-lettered a stored record (botocore names a
body-less 404 "404")."""
_CODE = re.compile(rb"<Code>([A-Za-z]+)</Code>")
FRESH_CONNECTIONS_SECONDS = 30.0
"""After an answer that was not S3's, GETs use each connection once for this long."""
_CLOSE = {"Connection": "close"}


class RawObjects:
    """Verified raw objects by key, with an LRU byte budget."""

    def __init__(self, s3: Any, budget_bytes: int, http: aiohttp.ClientSession | None = None) -> None:
        self.s3 = s3
        self.http = http
        self.budget = budget_bytes
        self._cache: OrderedDict[str, list[bytes]] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._digests: dict[str, str] = {}
        self._used = 0
        self._fresh_until = 0.0

    async def lines(self, event: IngestedEvent) -> list[bytes]:
        """The object's lines (one element for a single record). Raises DependencyError/PoisonError."""
        cached = self._cache.get(event.key)
        if cached is not None and self._digests.get(event.key) == event.sha256:
            self._cache.move_to_end(event.key)
            return cached
        data = await self._get(event)
        digest = hashlib.sha256(data).hexdigest()
        if digest != event.sha256:
            raise PoisonError("checksum-mismatch", "raw object SHA-256 differs from the event's")
        lines = data.split(b"\n") if event.line is not None else [data]
        self._remember(event.key, digest, lines, len(data))
        return lines

    async def prefetch(self, events: list[IngestedEvent], concurrency: int = 16) -> dict[str, PoisonError]:
        """Fetch every distinct object of `events` concurrently; poison by key (DependencyError raises)."""
        gate = asyncio.Semaphore(concurrency)
        poisoned: dict[str, PoisonError] = {}
        first = {e.key: e for e in reversed(events)}

        async def one(event: IngestedEvent) -> None:
            async with gate:
                try:
                    await self.lines(event)
                except PoisonError as exc:
                    poisoned[event.key] = exc

        await asyncio.gather(*(one(e) for e in first.values()))
        return poisoned

    async def document(self, event: IngestedEvent) -> Any:
        """The parsed record the event points at."""
        lines = await self.lines(event)
        index = (event.line or 1) - 1
        if index >= len(lines):
            raise PoisonError("unmappable", "event line is beyond the raw object")
        try:
            return orjson.loads(lines[index])
        except orjson.JSONDecodeError:
            raise PoisonError("unmappable", "raw record is not JSON") from None

    async def _get(self, event: IngestedEvent) -> bytes:
        if self.http is not None:
            return await self._get_presigned(event, self.http)
        try:
            response = await self.s3.get_object(Bucket=event.bucket, Key=event.key)
            async with response["Body"] as body:
                data: bytes = await body.read()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in MISSING_CODES:
                raise PoisonError("raw-missing", "raw object not found") from None
            raise DependencyError("s3", f"get_object failed ({code or 'error'})") from None
        except (BotoCoreError, OSError, TimeoutError) as exc:
            raise DependencyError("s3", type(exc).__name__) from None
        return data

    async def _get_presigned(self, event: IngestedEvent, http: aiohttp.ClientSession) -> bytes:
        try:
            url = await self.s3.generate_presigned_url(
                "get_object", Params={"Bucket": event.bucket, "Key": event.key}, ExpiresIn=300
            )
            fresh = time.monotonic() < self._fresh_until
            async with http.get(url, headers=_CLOSE if fresh else None) as response:
                if response.status == 200:
                    return await response.read()
                error = await response.content.read(4096)  # an S3 error document is small
                code = _CODE.search(error)
                if response.status == 404 and code is not None and code.group(1).decode() in MISSING_CODES:
                    raise PoisonError("raw-missing", "raw object not found")
                # Whoever answered may not be S3, and aiohttp has pooled its connection already:
                # for a while every GET closes the connection it used, which drains the pool.
                self._fresh_until = time.monotonic() + FRESH_CONNECTIONS_SECONDS
                raise DependencyError("s3", f"GET answered HTTP {response.status}")
        except (aiohttp.ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            raise DependencyError("s3", type(exc).__name__) from None

    def _remember(self, key: str, digest: str, lines: list[bytes], size: int) -> None:
        if size > self.budget:
            return
        while self._used + size > self.budget and self._cache:
            old, _ = self._cache.popitem(last=False)
            self._used -= self._sizes.pop(old)
            self._digests.pop(old, None)
        self._cache[key] = lines
        self._sizes[key] = size
        self._digests[key] = digest
        self._used += size
