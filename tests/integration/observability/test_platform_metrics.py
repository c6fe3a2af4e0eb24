"""What an operator of the platform sees in Prometheus: every service scraped, a record's counters,
every dashboard panel answering, and the outbox and lag alerts going pending then firing when
Kafka or the tokenizer goes away (the shipped expressions, at `Timings.fast()`)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import orjson
from aiokafka import AIOKafkaProducer

from exchange_devtools.engines.base import EngineError
from exchange_devtools.monitoring import dashboards

from .conftest import PIPELINE, Platform

SERVICES = ("tokenizer", "ingest", "relay", "normalizer")
WAIT = 150.0


@contextlib.contextmanager
def ingesting(platform: Platform, every: float = 0.3, most: int = 800) -> Iterator[None]:
    """POST records in the background, `every` seconds apart, until the block ends (at most `most`)."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            for _ in range(most):
                if stop.is_set():
                    return
                platform.ingest(1)
                stop.wait(every)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
    assert errors == []


def _states(platform: Platform, name: str, seen: list[str]) -> bool:
    state = platform.alert_state(name)
    if state and (not seen or seen[-1] != state):
        seen.append(state)
    return state == "firing"


def test_prometheus_scrapes_every_service(platform: Platform) -> None:
    def all_up() -> bool:
        up = {r["metric"]["service"]: r["value"][1] for r in platform.prometheus.query(f'up{{pipeline="{PIPELINE}"}}')}
        return all(up.get(s) == "1" for s in SERVICES)

    platform.prometheus.wait_for("every service up", all_up, timeout=60)


def test_an_ingested_record_is_counted_along_the_whole_path(platform: Platform) -> None:
    before = platform.value(f'sum(ingest_records_total{{pipeline="{PIPELINE}"}})') or 0.0
    platform.ingest(3)

    def counted() -> bool:
        records = platform.value(f'sum(ingest_records_total{{pipeline="{PIPELINE}"}})') or 0.0
        published = platform.value(f'sum(ingest_relay_published_total{{pipeline="{PIPELINE}"}})') or 0.0
        normalized = platform.value(f'sum(normalizer_events_total{{pipeline="{PIPELINE}", outcome="normalized"}})')
        tokenized = platform.value(f'sum(tokenizer_records_total{{pipeline="{PIPELINE}"}})') or 0.0
        return records >= before + 3 and published >= 3 and (normalized or 0) >= 3 and tokenized >= 3

    platform.prometheus.wait_for("the records' counters", counted, timeout=90)
    routes = {r["metric"]["route"] for r in platform.prometheus.query('http_requests_total{service="ingest"}')}
    assert "/v1/ingest" in routes
    assert not any(r.startswith("/v1/ingest/") and r != "/v1/ingest/bulk" for r in routes), "ids in a route label"


def test_kafka_is_scraped_through_its_jmx_exporter_agent(platform: Platform) -> None:
    platform.ingest(2)
    messages_in = (
        f'sum(kafka_server_brokertopicmetrics_messagesin_total{{pipeline="{PIPELINE}", topic="record.ingested.v1"}})'
    )
    platform.prometheus.wait_for("the broker's messages-in counter", lambda: (platform.value(messages_in) or 0) >= 2,
                                 timeout=60)  # fmt: skip
    assert platform.value(f'up{{service="kafka", pipeline="{PIPELINE}"}}') == 1


def test_postgres_is_scraped_through_postgres_exporter(platform: Platform) -> None:
    platform.ingest(2)
    commits = f'sum(pg_stat_database_xact_commit{{pipeline="{PIPELINE}"}})'
    platform.prometheus.wait_for("Postgres's commit counter", lambda: (platform.value(commits) or 0) > 0, timeout=60)
    assert platform.value(f'pg_up{{service="postgres", pipeline="{PIPELINE}"}}') == 1
    assert platform.value(f'up{{service="postgres", pipeline="{PIPELINE}"}}') == 1


def test_every_dashboard_panel_query_parses_and_returns_series(platform: Platform, operator: str) -> None:
    # Load: records, one event the normalizer must dead-letter, and the operator (a process on the
    # session's API server) reconciling one pipeline and failing on another.
    platform.ingest(5)
    asyncio.run(_publish_poison(platform.kafka.bootstrap_servers))
    boards = {uid: orjson.loads(text) for uid, text in dashboards.render_all().items()}
    panels = [(uid, title, expr) for uid, board in boards.items() for title, expr in dashboards.queries(board)]
    assert len(panels) >= 25

    def empty() -> list[str]:
        missing = []
        for uid, title, expr in panels:
            if not platform.prometheus.query(expr):  # EngineError if it does not parse
                missing.append(f"{uid}: {title}: {expr}")
        return missing

    try:
        platform.prometheus.wait_for("a series for every panel", lambda: not empty(), timeout=90)
    except EngineError:
        raise AssertionError("panels without series:\n" + "\n".join(empty())) from None
    errors = 'sum(exchange_operator_reconcile_errors_total{reason="DependencyMissing"})'
    assert (platform.value(errors) or 0) > 0, "the operator's failing reconcile is not counted"


async def _publish_poison(bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait("record.ingested.v1", b"not an event", key=b"poison")
    finally:
        await producer.stop()


def test_the_lag_alert_fires_while_the_normalizer_cannot_tokenize(platform: Platform) -> None:
    seen: list[str] = []
    platform.services["tokenizer"].stop()
    try:
        with ingesting(platform):
            platform.prometheus.wait_for(
                "ExchangeConsumerLagGrowing firing",
                lambda: _states(platform, "ExchangeConsumerLagGrowing", seen),
                timeout=WAIT,
            )
            assert seen[0] == "pending", seen
            for name in ("ExchangeServiceDown", "ExchangeTokenizerErrors"):
                platform.prometheus.wait_for(
                    f"{name} firing", lambda n=name: platform.alert_state(n) == "firing", timeout=WAIT
                )
    finally:
        platform.restart("tokenizer")
    lag = f'pipeline:normalizer_consumer_lag:sum{{pipeline="{PIPELINE}"}}'
    platform.prometheus.wait_for("the normalizer caught up", lambda: platform.value(lag) == 0, timeout=WAIT)
    platform.prometheus.wait_for(
        "the lag alert resolved", lambda: platform.alert_state("ExchangeConsumerLagGrowing") is None, timeout=WAIT
    )


def test_the_outbox_alerts_fire_while_kafka_is_down_and_resolve_after(platform: Platform) -> None:
    growing: list[str] = []
    stale: list[str] = []
    platform.kafka.stop()
    try:
        with ingesting(platform):

            def both_firing() -> bool:
                backlog = _states(platform, "ExchangeOutboxBacklogGrowing", growing)
                return _states(platform, "ExchangeOutboxStale", stale) and backlog

            platform.prometheus.wait_for("both outbox alerts firing", both_firing, timeout=WAIT)
        assert growing[0] == "pending" and stale[0] == "pending", (growing, stale)
        backlog = platform.value(f'pipeline:outbox_backlog:max{{pipeline="{PIPELINE}"}}')
        assert backlog is not None and backlog > 0
    finally:
        platform.kafka.start()
    platform.prometheus.wait_for(
        "the outbox drained",
        lambda: platform.value(f'pipeline:outbox_backlog:max{{pipeline="{PIPELINE}"}}') == 0,
        timeout=WAIT,
    )
    platform.prometheus.wait_for(
        "ExchangeOutboxStale resolved", lambda: platform.alert_state("ExchangeOutboxStale") is None, timeout=WAIT
    )
