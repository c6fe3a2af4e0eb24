"""One record's whole journey as one trace in a real Jaeger: `exchange serve` ingest, relay,
tokenizer and normalizer, each exporting OTLP to the `jaeger` fixture; the test ingests a record
(PII canaries in it), finds its trace through the query API by the record id, and checks every
service's spans are in it with the right parents and links, and that no span holds the PII."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from exchange_devtools.engines.base import free_port
from exchange_devtools.engines.jaeger import JaegerServer

from .conftest import EXCHANGE, Stack, wait_for
from .test_normalizer_end_to_end import CANARIES, CANARY

SERVICES = ("ingest", "relay", "normalizer", "tokenizer")


def otel_env(jaeger: JaegerServer) -> dict[str, str]:
    # Spans leave each process within 200 ms (the SDK's default is 5 s).
    return {**jaeger.env(), "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_TRACES_SAMPLER": "parentbased_always_on"}


def serve(stack: Stack, component: str, env: dict[str, str], ready_url: str | None) -> subprocess.Popen[bytes]:
    log = stack.workdir / f"{component}.log"
    stack.logs.append(log)  # kept for the canary check and printed when the test fails
    with log.open("wb") as out:
        proc = subprocess.Popen([str(EXCHANGE), "serve", component], env=env, stdout=out, stderr=out,
                                start_new_session=True)  # fmt: skip
    stack.procs.append(proc)
    if ready_url is None:
        return proc
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{component} did not become ready: " + log.read_text()[-2000:])


@pytest.fixture
def traced(stack: Stack, jaeger: JaegerServer) -> Iterator[str]:
    """The four processes of the pipeline, tracing to `jaeger`; yields ingest's URL."""
    otel = otel_env(jaeger)
    tokenizer_port, ingest_port = free_port(), free_port()
    serve(stack, "tokenizer", {**stack.env, **otel, "PORT": str(tokenizer_port),
                               "TOKENIZATION_SECRET": "trace-test-secret-0123456789abcdef"},
          f"http://127.0.0.1:{tokenizer_port}/readyz")  # fmt: skip
    stack.env["TOKENIZER_URL"] = f"http://127.0.0.1:{tokenizer_port}"
    ingest_env = {**stack.env, **otel, "INGEST_TOPIC": stack.topic, "RELAY_POLL_SECONDS": "0.2"}
    serve(stack, "ingest", {**ingest_env, "PORT": str(ingest_port), "INGEST_RELAY_IN_PROCESS": "false"},
          f"http://127.0.0.1:{ingest_port}/readyz")  # fmt: skip
    serve(stack, "relay", ingest_env, None)
    serve(stack, "normalizer", {**stack.env, **otel}, None)
    yield f"http://127.0.0.1:{ingest_port}"
    for proc in stack.procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)


def by_name(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [s for s in spans if s["operationName"] == name]
    assert len(found) == 1, f"{len(found)} spans named {name!r}: {sorted(s['operationName'] for s in spans)}"
    return found[0]


def parent_of(span: dict[str, Any]) -> str | None:
    refs = [r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
    return refs[0] if refs else None


def links_of(span: dict[str, Any]) -> set[tuple[str, str]]:
    return {(r["traceID"], r["spanID"]) for r in span.get("references", []) if r["refType"] == "FOLLOWS_FROM"}


def service_of(trace: dict[str, Any], span: dict[str, Any]) -> str:
    return str(trace["processes"][span["processID"]]["serviceName"])


async def test_a_record_is_one_trace_from_ingest_to_its_canonical_rows(stack: Stack, jaeger: JaegerServer, traced):
    async with httpx.AsyncClient(base_url=traced, timeout=30) as client:
        response = await client.post(
            "/v1/ingest", content=orjson.dumps(CANARY),
            headers={"Authorization": "Bearer dev", "Content-Type": "application/json",
                     "Idempotency-Key": uuid.uuid4().hex},
        )  # fmt: skip
    assert response.status_code == 202, response.text
    record_id = response.json()["record_id"]
    tags = json.dumps({"exchange.record_id": record_id})
    found: dict[str, Any] = {}

    async def whole_trace() -> bool:
        traces = jaeger.traces("ingest", tags=tags, lookback="1h")
        if traces:
            trace = jaeger.trace(traces[0]["traceID"]) or {}
            spans = trace.get("spans", [])
            found.update(trace)
            names = {s["operationName"] for s in spans}
            return (
                {service_of(trace, s) for s in spans} >= set(SERVICES)
                and "canonical write" in names
                and (f"{stack.out_topic} publish" in names)
            )
        return False

    await wait_for(whole_trace, timeout=90, what="the record's trace with the spans of every service")
    spans, trace_id = found["spans"], found["traceID"]
    server = by_name(spans, "POST /v1/ingest")
    outbox = by_name(spans, "outbox write")
    send = by_name(spans, f"{stack.topic} publish")
    consume = by_name(spans, f"{stack.topic} process")
    batch = by_name(spans, "normalize batch")
    tokenize = by_name(spans, "POST /v1/tokenize")
    # parents: request → outbox row → relay's send → normalizer's consume → its batch (of one) →
    # tokenizer call (httpx client span, then the tokenizer's server span) and canonical write
    assert parent_of(server) is None and service_of(found, server) == "ingest"
    assert parent_of(outbox) == server["spanID"]
    assert parent_of(by_name(spans, "s3 PUT")) == server["spanID"]
    assert parent_of(by_name(spans, "ingest group commit")) == outbox["spanID"]
    assert parent_of(send) == outbox["spanID"] and service_of(found, send) == "relay"
    assert send["tags"] and {t["key"]: t["value"] for t in send["tags"]}["exchange.record_id"] == record_id
    assert parent_of(consume) == send["spanID"] and service_of(found, consume) == "normalizer"
    assert parent_of(batch) == consume["spanID"]
    assert parent_of(by_name(spans, "canonical write")) == batch["spanID"]
    client_call = next(s for s in spans if s["spanID"] == parent_of(tokenize))
    assert parent_of(client_call) == batch["spanID"] and service_of(found, client_call) == "normalizer"
    assert service_of(found, tokenize) == "tokenizer"
    assert parent_of(by_name(spans, f"{stack.out_topic} publish")) == consume["spanID"]
    # links: the relay's batch is a trace of its own, linked to the row; the send links back to it
    ((batch_trace, batch_span),) = links_of(send)
    assert batch_trace != trace_id
    relay_batch = jaeger.trace(batch_trace)
    assert relay_batch is not None
    publish = next(s for s in relay_batch["spans"] if s["spanID"] == batch_span)
    assert publish["operationName"] == "outbox publish"
    assert (trace_id, outbox["spanID"]) in links_of(publish)
    # no PII in any exported span, nor in the logs, which carry the trace's id
    exported = json.dumps(found) + json.dumps(relay_batch)
    for canary in CANARIES:
        assert canary not in exported, "PII in an exported span"
        assert canary not in stack.log_text(), "PII in a log"
    assert trace_id in stack.log_text()


async def test_an_unsampled_record_leaves_no_span(stack: Stack, jaeger: JaegerServer, traced):
    """A caller's unsampled `traceparent` travels with the record to the normalizer's outgoing
    event, and no service records a span of that trace."""
    unsampled = uuid.uuid4().hex
    async with httpx.AsyncClient(base_url=traced, timeout=30) as client:
        response = await client.post(
            "/v1/ingest", content=orjson.dumps(CANARY),
            headers={"Authorization": "Bearer dev", "Content-Type": "application/json",
                     "Idempotency-Key": uuid.uuid4().hex, "traceparent": f"00-{unsampled}-{'5' * 16}-00"},
        )  # fmt: skip
    assert response.status_code == 202, response.text

    async def normalized() -> bool:
        rows = await stack.fetch(
            "SELECT traceparent FROM normalizer.outbox WHERE traceparent LIKE $1", f"00-{unsampled}-%"
        )
        return bool(rows) and all(r["traceparent"].endswith("-00") for r in rows)

    await wait_for(normalized, timeout=90, what="the record's outgoing event, in its unsampled trace")
    await asyncio.sleep(1)  # spans leave within 200 ms (otel_env)
    assert jaeger.trace(unsampled) is None
