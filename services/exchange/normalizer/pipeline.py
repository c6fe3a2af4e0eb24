"""One batch of consumed messages → outcomes to write and poison to dead-letter.

Pure of Kafka: the worker hands in messages and gets back what to write and what to DLQ.
Transient failures (S3, tokenizer) raise `DependencyError` for the whole batch; a poison
message is set aside with its `PoisonError`, the rest go on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from exchange.core.errors import PoisonError
from exchange.core.kafka import header_map, traceparent
from exchange.core.logging import new_correlation_id
from exchange.normalizer.deid import CanonicalIds
from exchange.normalizer.events import IngestedEvent, parse_ingested
from exchange.normalizer.mapping import bind_subjects, map_record
from exchange.normalizer.model import Mapped, Outcome, TokenSet
from exchange.normalizer.raw import RawObjects
from exchange.normalizer.tokenizer_client import TokenizerClient


@dataclass(slots=True, eq=False)
class Message:
    """What the pipeline needs of a consumed Kafka record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any
    traceparent: str | None = None
    """The context of this message's consume span (tracing on): its outgoing event continues it."""


@dataclass(slots=True)
class Prepared:
    outcomes: list[Outcome]
    poison: list[tuple[Message, PoisonError]]
    skipped: int


class Pipeline:
    def __init__(self, raw: RawObjects, tokenizer: TokenizerClient, id_key: bytes) -> None:
        self.raw = raw
        self.tokenizer = tokenizer
        self.id_key = id_key
        self._ids: dict[str, CanonicalIds] = {}

    def ids(self, tenant: str) -> CanonicalIds:
        found = self._ids.get(tenant)
        if found is None:
            found = self._ids[tenant] = CanonicalIds(self.id_key, tenant)
        return found

    async def prepare(self, messages: list[Message], seen: set[uuid.UUID]) -> Prepared:
        """Parse, fetch, map and tokenize; `seen` event ids (already in the inbox) are skipped."""
        poison: list[tuple[Message, PoisonError]] = []
        events: list[tuple[Message, IngestedEvent]] = []
        for message in messages:
            try:
                events.append((message, parse_ingested(message.value)))
            except PoisonError as exc:
                poison.append((message, exc))
        todo = [(m, e) for m, e in events if e.event_id not in seen]
        poisoned_keys = await self.raw.prefetch([e for _, e in todo])
        today = datetime.now(UTC).date()
        mapped: list[tuple[Message, IngestedEvent, Mapped]] = []
        for message, event in todo:
            try:
                if event.key in poisoned_keys:
                    raise poisoned_keys[event.key]
                mapped.append((message, event, self.map(event, await self.raw.document(event), today)))
            except PoisonError as exc:
                poison.append((message, exc))
        token_sets = await self._tokenize(mapped, poison)
        outcomes = []
        for message, event, result in mapped:
            if message in token_sets:
                outcomes.append(self._outcome(message, event, result, token_sets[message]))
        return Prepared(outcomes, poison, len(events) - len(todo))

    def map(self, event: IngestedEvent, document: Any, today: date) -> Mapped:
        try:
            return map_record(
                document,
                source_format=event.source_format,
                ids=self.ids(event.tenant),
                fallback_id=fallback_id(event),
                today=today,
            )
        except PoisonError:
            raise
        except Exception as exc:  # a mapping bug: dead-letter it (replayable after the fix), never crash-loop
            raise PoisonError("unmappable", f"mapping failed ({type(exc).__name__})") from None

    async def _tokenize(
        self, mapped: list[tuple[Message, IngestedEvent, Mapped]], poison: list[tuple[Message, PoisonError]]
    ) -> dict[Message, list[TokenSet | None]]:
        people = [link.person for _, _, m in mapped for link in m.persons]
        out: dict[Message, list[TokenSet | None]] = {}
        try:
            sets = await self.tokenizer.tokenize(people) if people else []
        except PoisonError:
            # The tokenizer refused the batch: find the record(s) it refuses, one at a time.
            for message, _, m in mapped:
                try:
                    out[message] = list(await self.tokenizer.tokenize([link.person for link in m.persons]))
                except PoisonError as exc:
                    poison.append((message, exc))
            return out
        finally:
            del people
        it = iter(sets)
        for message, _, m in mapped:
            out[message] = [next(it) for _ in m.persons]
        return out

    def _outcome(self, message: Message, event: IngestedEvent, result: Mapped, sets: list[TokenSet | None]) -> Outcome:
        bind_subjects(result, sets, self.ids(event.tenant), fallback_id(event))
        result.persons = []  # PII no longer needed: drop it before anything is written
        headers = header_map(message.headers)
        return Outcome(
            event_id=event.event_id,
            record_id=event.record_id,
            tenant=event.tenant,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            record={
                "tenant": event.tenant,
                "source_format": event.source_format,
                "record_type": event.record_type,
                "schema_version": event.schema_version,
                "canonical_version": result.canonical_version,
                "object_bucket": event.bucket,
                "object_key": event.key,
                "object_sha256": event.sha256,
                "line": event.line or 0,
                "received_at": event.received_at,
            },
            mapped=result,
            correlation_id=event.correlation_id or headers.get("correlation_id") or new_correlation_id(),
            traceparent=message.traceparent or headers.get("traceparent") or traceparent(),
        )


def fallback_id(event: IngestedEvent) -> str:
    """Names resources without their own id by their bytes: the object digest and line."""
    return f"object:{event.sha256}:{event.line or 0}"
