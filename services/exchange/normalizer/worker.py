"""The normalizer worker: `record.ingested.v1` → canonical rows, exactly once in effect.

Per batch of consumed messages: validate each event, fetch and verify its raw object, map it,
tokenize the people (one HTTP call), then ONE transaction writes canonical rows, inbox rows and
`record.normalized.v1` outbox rows; only then are the offsets committed. A crash anywhere before
the commit redelivers the batch, and the inbox turns what was already written into a no-op.

- Transient failure (Postgres, S3, tokenizer, Kafka for the DLQ): every assigned partition is
  paused, the batch is retried with exponential backoff and jitter (tenacity) for as long as it
  takes; while paused the consumer keeps polling so it stays in its group. Nothing is
  dead-lettered. Resumes by itself.
- Poison (schema-invalid event, unmappable record, checksum mismatch, missing raw object): the
  message goes to `record.ingested.v1.dlq` with its original headers plus where it came from and
  a PII-free reason, its offset is committed with the batch, `normalizer_dlq_total` counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from exchange.core import tracing
from exchange.core.db import DB_ERRORS, create_pool, pool_readiness
from exchange.core.errors import DependencyError, PoisonError
from exchange.core.kafka import bootstrap_readiness, header_map, make_consumer, make_producer
from exchange.core.logging import bind_correlation_id, get_logger
from exchange.core.probes import ProbeServer, waiting_for
from exchange.core.retention import Pruner
from exchange.core.retry import until_stopped
from exchange.core.settings import load
from exchange.core.storage import bucket_readiness, s3_client
from exchange.normalizer import migrations
from exchange.normalizer.events import dlq_headers
from exchange.normalizer.metrics import NormalizerMetrics
from exchange.normalizer.model import Outcome
from exchange.normalizer.pipeline import Message, Pipeline
from exchange.normalizer.raw import RawObjects
from exchange.normalizer.relay import OutboxRelay
from exchange.normalizer.retention import inbox_rule
from exchange.normalizer.settings import NormalizerSettings
from exchange.normalizer.store import write_batch
from exchange.normalizer.tokenizer_client import TokenizerClient

log = get_logger(__name__)
T = TypeVar("T")
LAG_EVERY = 2.0
"""Seconds between two consumer-lag readings (one ListOffsets request to the broker)."""
LAG_TIMEOUT = 2.0
"""Longest a lag reading may hold the loop (Kafka away: the gauges keep their last values)."""
Batch = dict[TopicPartition, list[Any]]
_SEEN = "SELECT event_id FROM normalizer.inbox WHERE event_id = ANY($1::uuid[])"


class Worker:
    def __init__(
        self,
        settings: NormalizerSettings,
        pool: asyncpg.Pool,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        pipeline: Pipeline,
        metrics: NormalizerMetrics,
        relay: OutboxRelay,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.consumer = consumer
        self.producer = producer
        self.pipeline = pipeline
        self.metrics = metrics
        self.relay = relay
        self._lag_due = 0.0
        self._lag_partitions: set[tuple[str, str]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Two batches in flight: the next one is read, mapped and tokenized while the one before
        is written; writes and offset commits stay one batch after the other, in order."""
        previous: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                batch = await self.consumer.getmany(timeout_ms=500, max_records=self.settings.normalizer_batch)
                if batch:
                    previous, waiting = asyncio.create_task(self._timed(batch, previous)), previous
                    if waiting is not None:
                        await waiting
                elif previous is not None and previous.done():
                    done: asyncio.Task[None] = previous
                    previous = None
                    await done
                await self._observe_lag()
            if previous is not None:
                await previous
        finally:
            if previous is not None and not previous.done():
                previous.cancel()
                with contextlib.suppress(asyncio.CancelledError, _Abandoned):
                    await previous

    async def _timed(self, batch: Batch, after: asyncio.Task[None] | None) -> None:
        started = time.perf_counter()
        await self.handle(batch, after)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def handle(self, batch: Batch, after: asyncio.Task[None] | None = None) -> None:
        """Process one batch until it succeeds (transient failures wait), then commit its offsets;
        its write waits for `after` (the batch before) to be written and committed."""
        messages = [
            Message(r.topic, r.partition, r.offset, r.key, r.value, r.headers)
            for records in batch.values()
            for r in records
        ]
        paused = await self._retrying(lambda: self._process(messages, after))
        await self._retrying(lambda: self._commit(batch))
        if paused[0]:
            self.consumer.resume(*self.consumer.assignment())
            self.metrics.paused.set(0)
            log.info("normalizer_resumed")
        self.relay.wake.set()

    async def _process(self, messages: list[Message], after: asyncio.Task[None] | None = None) -> None:
        with bind_correlation_id(), _consume_spans(messages):
            seen = await self._db(lambda conn: conn.fetch(_SEEN, [_event_id(m) for m in messages if _event_id(m)]))
            prepared = await self.pipeline.prepare(messages, {r["event_id"] for r in seen})
            if after is not None:
                await asyncio.wait([after])
                if after.cancelled() or after.exception() is not None:
                    # Committing this batch's offsets would skip the unwritten one before it.
                    raise _Abandoned
            fresh = await self._write(prepared.outcomes, prepared.poison, messages)
            await self._dead_letter(prepared.poison)
            raw_only = sum(1 for o in fresh if o.mapped.raw_only)
            self.metrics.events.labels("normalized").inc(len(fresh) - raw_only)
            self.metrics.events.labels("raw-only").inc(raw_only)
            self.metrics.events.labels("duplicate").inc(len(messages) - len(fresh) - len(prepared.poison))
            log.info(
                "batch_normalized", messages=len(messages), normalized=len(fresh), raw_only=raw_only,
                poison=len(prepared.poison),
            )  # fmt: skip

    async def _write(
        self, outcomes: list[Outcome], poison: list[tuple[Message, PoisonError]], messages: list[Message]
    ) -> list[Outcome]:
        topic = self.settings.normalizer_out_topic
        try:
            with tracing.span("canonical write", {"exchange.records": len(outcomes)}):
                return await self._db(lambda conn: _in_tx(conn, lambda: write_batch(conn, outcomes, topic)))
        except _RowsRejected:
            pass
        # Postgres refused a value (too long, out of range): find the record(s), one at a time.
        fresh: list[Outcome] = []
        by_event = {(m.partition, m.offset): m for m in messages}
        for outcome in outcomes:

            async def one(conn: asyncpg.Connection, o: Outcome = outcome) -> list[Outcome]:
                async with conn.transaction():
                    return await write_batch(conn, [o], topic)

            try:
                fresh += await self._db(one)
            except _RowsRejected as exc:
                message = by_event[(outcome.partition or 0, outcome.offset or 0)]
                poison.append((message, PoisonError("unmappable", f"canonical row refused ({exc.args[0]})")))
        return fresh

    async def _db(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        try:
            async with self.pool.acquire(timeout=10) as conn:
                return await fn(conn)
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            raise _RowsRejected(type(exc).__name__) from None
        except DB_ERRORS as exc:
            raise DependencyError("postgres", type(exc).__name__) from None

    async def _dead_letter(self, poison: list[tuple[Message, PoisonError]]) -> None:
        if not poison:
            return
        try:
            futures = [
                await self.producer.send(
                    self.settings.normalizer_dlq_topic,
                    value=m.value,
                    key=m.key,
                    headers=dlq_headers(
                        m.headers,
                        topic=m.topic,
                        partition=m.partition,
                        offset=m.offset,
                        error_class=exc.error_class,
                        message=str(exc),
                    ),
                )
                for m, exc in poison
            ]
            await asyncio.gather(*futures)
        except KafkaError as err:
            raise DependencyError("kafka", type(err).__name__) from None
        for m, error in poison:
            self.metrics.dlq.labels(error.error_class).inc()
            with bind_correlation_id(header_map(m.headers).get("correlation_id")):
                log.warning(
                    "dead_lettered", error_class=error.error_class, reason=str(error), topic=m.topic,
                    partition=m.partition, offset=m.offset,
                )  # fmt: skip

    async def _commit(self, batch: Batch) -> None:
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:
            if isinstance(exc, (CommitFailedError, IllegalStateError)):
                # Rebalanced away: the new owner redelivers, and the inbox makes that a no-op.
                log.warning("commit_skipped_after_rebalance", error_class=type(exc).__name__)
                return
            raise DependencyError("kafka", type(exc).__name__) from None

    async def _retrying(self, fn: Callable[[], Awaitable[None]]) -> list[bool]:
        paused = [False]

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            dependency = getattr(exc, "dependency", "unknown")
            self.metrics.retries.labels(dependency).inc()
            if not paused[0]:
                self.consumer.pause(*self.consumer.assignment())
                self.metrics.paused.set(1)
                paused[0] = True
            log.warning(
                "transient_failure", dependency=dependency, reason=str(exc), attempt=state.attempt_number,
                retry_in=round(state.next_action.sleep if state.next_action else 0, 2),
            )  # fmt: skip

        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(DependencyError),
            wait=wait_exponential_jitter(initial=0.2, max=self.settings.normalizer_backoff_max, jitter=1.0),
            sleep=self._paused_sleep,
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                await fn()
        return paused

    async def _paused_sleep(self, seconds: float) -> None:
        """Wait while polling (so the group keeps us); records of newly assigned partitions are put back."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            got = await self.consumer.getmany(timeout_ms=max(1, int(min(left, 1.0) * 1000)))
            for tp, records in got.items():
                if records:
                    self.consumer.seek(tp, records[0].offset)
            if got:
                self.consumer.pause(*got)
            self.consumer.pause(*self.consumer.assignment())
            await self._observe_lag()

    async def _observe_lag(self) -> None:
        """Per assigned partition: messages between the log end and our position (the earliest record
        not yet handled while paused), every LAG_EVERY seconds; partitions no longer ours are dropped.
        The end offsets are asked of the broker, so the lag grows while the worker is stuck."""
        now = time.monotonic()
        if now < self._lag_due:
            return
        self._lag_due = now + LAG_EVERY
        assigned = self.consumer.assignment()
        try:
            async with asyncio.timeout(LAG_TIMEOUT):
                ends = await self.consumer.end_offsets(list(assigned))
                lags = {tp: max(0, end - await self.consumer.position(tp)) for tp, end in ends.items()}
        except Exception as exc:  # Kafka away or a rebalance: keep the last values
            log.debug("consumer_lag_unknown", error_class=type(exc).__name__)
            return
        for tp, lag in lags.items():
            self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
        for topic, partition in self._lag_partitions - {(tp.topic, str(tp.partition)) for tp in lags}:
            with contextlib.suppress(KeyError):
                self.metrics.lag.remove(topic, partition)
        self._lag_partitions = {(tp.topic, str(tp.partition)) for tp in lags}


@contextlib.contextmanager
def _consume_spans(messages: list[Message]) -> Iterator[None]:
    """While tracing is on: one consumer span per message, the child of the context its headers
    carry (the relay's send), open while its batch is processed, and the batch's own span
    (`tracing.batch_span`: the child of a lone message's span, else linked to each) around the
    work done for all of them (raw objects, tokenizer, canonical write)."""
    if not tracing.enabled():
        yield
        return
    tracer = tracing.tracer()
    spans, contexts = [], []
    for m in messages:
        traceparent = header_map(m.headers).get("traceparent")
        parent = tracing.span_context(traceparent)
        if tracing.unsampled(parent):  # no span; the outgoing event continues the unsampled context
            m.traceparent = traceparent
            contexts.append(parent)
            continue
        span = tracer.start_span(
            f"{m.topic} process", context=tracing.parent_context(parent), kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "kafka", "messaging.operation.type": "process",
                        "messaging.destination.name": m.topic, "messaging.destination.partition.id": str(m.partition),
                        "messaging.kafka.offset": m.offset},
        )  # fmt: skip
        m.traceparent = tracing.traceparent_of(span)
        spans.append(span)
        contexts.append(span.get_span_context())
    try:
        with tracing.failures_marked(*spans):
            with tracing.batch_span("normalize batch", contexts):
                yield
    finally:
        for span in spans:
            span.end()


class _RowsRejected(Exception):
    """Postgres refused a value of the batch (not transient)."""


class _Abandoned(Exception):
    """The batch before failed for good: this one is not written either (the run loop raises
    the first one's error; both are redelivered after a restart)."""


async def _in_tx(conn: asyncpg.Connection, fn: Callable[[], Awaitable[T]]) -> T:
    async with conn.transaction():
        return await fn()


def _event_id(message: Message) -> str | None:
    for key, value in message.headers or ():
        if key == "event_id":
            text = value.decode("ascii", "replace")
            return text if len(text) == 36 else None
    return None


async def _until_up(what: str, fn: Callable[[], Awaitable[T]], stop: asyncio.Event) -> T | None:
    """Start-up: retry `fn` with backoff until it works (engines may start after us)."""

    def waiting(error: BaseException, delay: float) -> None:
        log.warning("dependency_unavailable_at_start", dependency=what, error_class=type(error).__name__)

    return await until_stopped(
        fn, stop, retry_on=(DependencyError, OSError, KafkaError, asyncpg.PostgresError), on_retry=waiting
    )


async def run() -> None:
    """`exchange serve normalizer`: settings from the environment; runs until SIGTERM/SIGINT."""
    settings = load(NormalizerSettings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)


async def serve(settings: NormalizerSettings, stop: asyncio.Event, registry: CollectorRegistry | None = None) -> None:
    """Run the worker (and its outbox relay) until `stop` is set.

    With NORMALIZER_METRICS_PORT, `/healthz`, `/readyz` and `/metrics` are served from the start:
    ready means Postgres, Kafka, S3 and the tokenizer all answer (what a batch needs)."""
    registry = registry or CollectorRegistry()
    metrics = NormalizerMetrics(registry)
    tokenizer = TokenizerClient(
        settings.tokenizer_url, settings.tokenizer_credentials(), timeout=settings.tokenizer_timeout,
        batch_size=settings.tokenizer_batch,
        observe=lambda outcome, seconds: metrics.tokenizer_seconds.labels(outcome).observe(seconds),
    )  # fmt: skip
    closers: list[Callable[[], Awaitable[Any]]] = [tokenizer.aclose]
    probes = None
    if settings.normalizer_metrics_port:
        readiness = {
            "postgres": waiting_for("postgres"),
            "kafka": bootstrap_readiness(settings.kafka_bootstrap_servers),
            "s3": waiting_for("s3"),
            "tokenizer": tokenizer.ready,
        }
        probes = await ProbeServer(
            "normalizer", settings.host, settings.normalizer_metrics_port, registry, readiness
        ).start()
        closers.append(probes.stop)
    try:
        await _work(settings, stop, metrics, tokenizer, probes, closers)
    finally:
        for closer in reversed(closers):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closer(), timeout=10)
        log.info("normalizer_stopped")


async def _work(
    settings: NormalizerSettings,
    stop: asyncio.Event,
    metrics: NormalizerMetrics,
    tokenizer: TokenizerClient,
    probes: ProbeServer | None,
    closers: list[Callable[[], Awaitable[Any]]],
) -> None:
    dsn = settings.database_url.get_secret_value()
    if settings.migrate_on_start and await _until_up("postgres", lambda: migrations.upgrade(dsn), stop) is None:
        return
    pool = await _until_up("postgres", lambda: create_pool(settings), stop)
    if pool is None:
        return
    closers.append(pool.close)
    if probes is not None:
        probes.readiness["postgres"] = pool_readiness(pool)
    producer = make_producer(settings)
    consumer = make_consumer(
        settings, settings.normalizer_topic, group_id=settings.normalizer_group,
        max_poll_records=settings.normalizer_batch, max_partition_fetch_bytes=4 * 1024 * 1024,
    )  # fmt: skip
    closers += [producer.stop, consumer.stop]
    async with s3_client(settings) as s3:
        if probes is not None:
            probes.readiness["s3"] = bucket_readiness(s3, settings.s3_bucket_raw)
        await _until_up("kafka", producer.start, stop)
        await _until_up("kafka", consumer.start, stop)
        if stop.is_set():
            return
        relay = OutboxRelay(
            pool,
            producer,
            poll=settings.relay_poll_seconds,
            retention=settings.outbox_retention_seconds or None,
            prune=settings.prune_seconds,
            metrics=metrics,
        )
        inbox = inbox_rule(settings)
        pruner = Pruner(pool, [inbox] if inbox else [], settings.prune_seconds, metrics=metrics.tables)
        http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=4 * settings.s3_timeout, connect=settings.s3_timeout),
            connector=aiohttp.TCPConnector(limit=64),
        )
        closers.append(http.close)
        raw = RawObjects(s3, settings.normalizer_object_cache_bytes, http)
        pipeline = Pipeline(raw, tokenizer, settings.id_key)
        worker = Worker(settings, pool, consumer, producer, pipeline, metrics, relay)
        relay_task = asyncio.create_task(relay.run(stop))
        pruner_task = asyncio.create_task(pruner.run(stop)) if pruner.rules else None
        log.info("normalizer_started", topic=settings.normalizer_topic, group=settings.normalizer_group)
        try:
            await worker.run(stop)
        finally:
            stop.set()
            await relay_task
            if pruner_task is not None:
                await pruner_task
