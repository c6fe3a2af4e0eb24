"""`exchange ingest bulk FILE`: chunked NDJSON upload against a real uvicorn; a rerun is replayed."""

from __future__ import annotations

import asyncio
import gzip

from typer.testing import CliRunner

from exchange.cli.ingest import _encoded, app


async def test_bulk_upload_of_a_synthea_file_in_chunks_and_an_idempotent_rerun(served, token, db, synthea_dir):
    path = str(synthea_dir / "Immunization.ndjson")
    argv = ["bulk", path, "--url", served, "--token", token, "--chunk-lines", "50"]
    before = await db.fetchval("SELECT count(*) FROM ingest.outbox")
    first = await asyncio.to_thread(CliRunner().invoke, app, argv)
    assert first.exit_code == 0, first.output
    assert "accepted 161, rejected 0, failed chunks 0" in first.output
    middle = await db.fetchval("SELECT count(*) FROM ingest.outbox")
    second = await asyncio.to_thread(CliRunner().invoke, app, argv)
    assert second.exit_code == 0, second.output
    assert await db.fetchval("SELECT count(*) FROM ingest.outbox") == middle == before + 161


async def test_a_gzip_upload_is_the_same_request_as_a_plain_one(served, token, db, synthea_dir):
    path = str(synthea_dir / "AllergyIntolerance.ndjson")
    argv = ["bulk", path, "--url", served, "--token", token, "--chunk-lines", "5"]
    before = await db.fetchval("SELECT count(*) FROM ingest.outbox")
    first = await asyncio.to_thread(CliRunner().invoke, app, [*argv, "--gzip"])
    assert first.exit_code == 0, first.output
    assert "accepted 11, rejected 0, failed chunks 0" in first.output
    middle = await db.fetchval("SELECT count(*) FROM ingest.outbox")
    plain = await asyncio.to_thread(CliRunner().invoke, app, argv)  # replayed chunk by chunk
    assert plain.exit_code == 0, plain.output
    assert await db.fetchval("SELECT count(*) FROM ingest.outbox") == middle == before + 11


def test_gzip_chunks_are_compressed_and_say_so():
    body = b'{"resourceType": "Patient"}\n' * 100
    sent, headers = _encoded(body, compress=True)
    assert headers == {"Content-Encoding": "gzip"} and len(sent) < len(body) and gzip.decompress(sent) == body
    assert _encoded(body, compress=False) == (body, {})
