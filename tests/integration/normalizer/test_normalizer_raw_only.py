"""Resources of types not modelled go through the real pipeline (ingest service → Kafka → the
normalizer worker → Postgres) as raw-only: a record and a `raw_resources` row each, counted as
outcome `raw-only`, never dead-lettered, and `exchange verify` accounts for them by type
(issue 22, point 3)."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import httpx
import orjson

from exchange_devtools.testdata import unmodelled_resources

from .conftest import Stack, caught_up, cli, synthea_lines, wait_for
from .test_normalizer_through_ingest import start_ingest

HEADERS = {"Authorization": "Bearer dev"}


async def test_unmodelled_types_in_bulk_and_in_a_transaction_are_raw_only_and_verify_is_clean(stack: Stack) -> None:
    patient = synthea_lines("Patient", 1)[0]
    patient_id = orjson.loads(patient)["id"]
    resources = unmodelled_resources(patient_id)
    ingest, url = start_ingest(stack)
    try:
        stack.start_worker()
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            bulk = b"\n".join([patient, *synthea_lines("Encounter", 5), *(orjson.dumps(r) for r in resources)])
            response = await client.post("/v1/ingest/bulk", content=bulk, headers={
                **HEADERS, "Content-Type": "application/fhir+ndjson", "Idempotency-Key": uuid.uuid4().hex})  # fmt: skip
            assert response.status_code == 202 and response.json()["rejected"] == 0, response.text
            accepted = response.json()["accepted"]
            other = [{**r, "id": f"{r['id']}-tx"} for r in resources[:2]]  # a MedicationAdministration and a Flag
            condition = orjson.loads(synthea_lines("Condition", 1)[0])
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": f"urn:uuid:{r['id']}", "resource": r, "request": {"method": "POST", "url": "x"}}
                for r in (*other, condition)]}  # fmt: skip
            response = await client.post("/v1/ingest", content=orjson.dumps(bundle), headers={
                **HEADERS, "Content-Type": "application/fhir+json", "Idempotency-Key": uuid.uuid4().hex})  # fmt: skip
            assert response.status_code == 202 and response.json()["accepted"] == 3, response.text
            accepted += 3

        async def all_done() -> bool:
            return await stack.count("normalizer.inbox") == accepted and await caught_up(stack)

        await wait_for(all_done, timeout=120, what="every ingested record normalized")
        assert await stack.count("canonical.records") == accepted  # none dead-lettered
        rows = await stack.fetch(
            "SELECT r.resource_type, count(*) AS n, count(r.patient_id) AS about, count(p.subject_id) AS linked "
            "FROM canonical.raw_resources r LEFT JOIN canonical.patients p ON p.id = r.patient_id "
            "GROUP BY 1 ORDER BY 1"
        )
        assert [tuple(r) for r in rows] == [
            ("Basic", 1, 1, 1), ("Flag", 2, 2, 2), ("MedicationAdministration", 2, 2, 2), ("Provenance", 1, 0, 0)
        ]  # fmt: skip
        assert await stack.count("canonical.conditions") == 1  # the modelled entry of the transaction
        types = await stack.fetch("SELECT record_type, count(*) AS n FROM canonical.records GROUP BY 1")
        assert {r["record_type"]: r["n"] for r in types}["Flag"] == 2

        logged = [orjson.loads(line) for line in stack.log_text().splitlines() if '"batch_normalized"' in line]
        assert sum(entry["raw_only"] for entry in logged) == 6  # outcome raw-only: 4 in bulk, 2 in the Bundle
        assert sum(entry["poison"] for entry in logged) == 0

        report = await asyncio.to_thread(cli, stack, "verify")
        assert report.exit_code == 0, report.output
        assert "raw objects without canonical records: 0" in report.output
        assert "resources kept raw-only (accounted for): 6" in report.output
        assert "  Basic: 1\n  Flag: 2\n  MedicationAdministration: 2\n  Provenance: 1\n" in report.output
    finally:
        os.killpg(ingest.pid, signal.SIGTERM)
        ingest.wait(20)
