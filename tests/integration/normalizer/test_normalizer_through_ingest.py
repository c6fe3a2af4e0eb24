"""The real pipeline: Synthea NDJSON POSTed to the ingest service (`exchange serve ingest`, relay
in process) → record.ingested.v1 → the normalizer → canonical rows; and Postgres down mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import httpx

from exchange_devtools.engines.base import free_port

from .conftest import EXCHANGE, Stack, caught_up, synthea_lines, wait_for

TYPES = ("Patient", "Encounter", "Condition", "Immunization", "AllergyIntolerance", "Procedure")


def start_ingest(stack: Stack) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (stack.workdir / "ingest.log").open("wb")
    proc = subprocess.Popen(
        [str(EXCHANGE), "serve", "ingest"],
        env={**stack.env, "PORT": str(port), "INGEST_TOPIC": stack.topic, "INGEST_RELAY_IN_PROCESS": "true",
             "RELAY_POLL_SECONDS": "0.2"},
        stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    raise AssertionError("ingest did not become ready: " + (stack.workdir / "ingest.log").read_text()[-2000:])


async def test_synthea_posted_to_ingest_lands_in_the_canonical_schema(stack: Stack) -> None:
    ingest, url = start_ingest(stack)
    try:
        stack.start_worker()
        accepted = 0
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            for resource_type in TYPES:
                body = b"\n".join(synthea_lines(resource_type)) + b"\n"
                response = await client.post(
                    "/v1/ingest/bulk", content=body,
                    headers={"Authorization": "Bearer dev", "Content-Type": "application/fhir+ndjson",
                             "Idempotency-Key": uuid.uuid4().hex},
                )  # fmt: skip
                assert response.status_code == 202, response.text
                result = response.json()
                assert result["rejected"] == 0
                accepted += result["accepted"]

        async def all_done() -> bool:
            return await stack.count("normalizer.inbox") == accepted and await caught_up(stack)

        await wait_for(all_done, timeout=120, what="every ingested record normalized")
        assert await stack.count("canonical.records") == accepted
        counts = {t: len(synthea_lines(t)) for t in TYPES}
        assert await stack.count("canonical.encounters") == counts["Encounter"]
        assert await stack.count("canonical.procedures") == counts["Procedure"]
        linked = await stack.fetch(
            "SELECT count(*) AS n FROM canonical.patients WHERE record_id IS NOT NULL AND subject_id IS NOT NULL"
        )
        assert linked[0]["n"] == counts["Patient"]
        tenants = await stack.fetch("SELECT DISTINCT tenant FROM canonical.records")
        assert [r["tenant"] for r in tenants] == ["dev"]  # from the verified token (`Bearer dev`, local)
    finally:
        os.killpg(ingest.pid, signal.SIGTERM)
        ingest.wait(20)


async def test_a_postgres_outage_pauses_retries_and_resumes_without_dead_letters(stack: Stack, postgres) -> None:
    first = await stack.ingest_ndjson(synthea_lines("Patient", 5))
    await stack.publish(first)
    stack.start_worker()

    async def first_done() -> bool:
        return await stack.count("normalizer.inbox") == len(first)

    await wait_for(first_done, timeout=60, what="the first events")
    more = await stack.ingest_ndjson(synthea_lines("Encounter", 80))
    postgres.stop()
    try:
        await stack.publish(more)

        async def retrying() -> bool:
            return '"dependency": "postgres"' in stack.log_text()

        await wait_for(retrying, timeout=60, what="a transient Postgres failure")
    finally:
        postgres.start()

    async def all_done() -> bool:
        return await stack.count("normalizer.inbox") == len(first) + len(more) and await caught_up(stack)

    await wait_for(all_done, timeout=90, what="recovery after Postgres came back")
    from .test_normalizer_failures import dlq_count

    assert await dlq_count(stack) == 0
    assert await stack.count("canonical.encounters") == 80
