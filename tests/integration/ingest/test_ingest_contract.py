"""The served OpenAPI is the contract, every contract operation is routed (and nothing else),
and schemathesis finds no 5xx and no response outside the contract against a real uvicorn."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.checks import not_a_server_error

from exchange.core.contracts import load_document
from exchange_devtools.engines.base import free_port

CONTRACT = "api/ingest.v1.openapi.yaml"


@schemathesis.serializer("application/x-ndjson", "application/fhir+ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """The bulk bodies are declared as strings: send them as they are (UTF-8)."""
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(str(value), "utf-8")


REPO = Path(__file__).resolve().parents[3]


async def test_the_served_openapi_is_the_contract(client):
    served = (await client.get("/openapi.json")).json()
    assert served == load_document(CONTRACT)


async def test_every_contract_operation_is_routed_and_nothing_else(client):
    contract = load_document(CONTRACT)["paths"]
    for path, operations in contract.items():
        for method in ("get", "put", "post", "patch", "delete"):
            resp = await client.request(method.upper(), path)
            # routed operations reach auth (401); others are 405
            assert resp.status_code == (401 if method in operations else 405), (method, path)
    assert (await client.post("/v1/ingest/other")).status_code == 404
    assert (await client.post("/v2/ingest")).status_code == 404


@pytest.fixture(scope="module")
def served(ingest_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`uvicorn --factory exchange.ingest.app:create_app`, as `exchange serve ingest` would run it."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("uvicorn") / "ingest.log"
    env = {**os.environ, **ingest_env, "PYTHONPATH": os.pathsep.join([str(REPO / "services"), str(REPO / "hack")])}
    argv = [sys.executable, "-m", "uvicorn", "--factory", "exchange.ingest.app:create_app", "--port", str(port),
            "--log-level", "warning"]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError(f"uvicorn did not start: {log_path.read_text()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_schemathesis_finds_no_5xx_and_no_response_outside_the_contract(served, token):
    """Every operation and media type, a bounded number of generated examples each."""
    api = schemathesis.openapi.from_dict(load_document(CONTRACT))
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) == 2
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            case.call_and_validate(base_url=served, headers={"Authorization": f"Bearer {token}"}, checks=checks)

        run()
