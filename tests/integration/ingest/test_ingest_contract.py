"""The served OpenAPI is the contract, every contract operation is routed (and nothing else),
and schemathesis finds no 5xx and no response outside the contract against a real uvicorn."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from exchange.core.contracts import load_document

CONTRACT = "api/ingest.v1.openapi.yaml"


@schemathesis.serializer("application/x-ndjson", "application/fhir+ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """The bulk bodies are declared as strings: send them as they are (UTF-8)."""
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(str(value), "utf-8")


async def test_the_openapi_document_is_the_contract_and_not_served_outside_local(client, ingest_app):
    assert ingest_app.openapi() == load_document(CONTRACT)
    for path in ("/openapi.json", "/docs", "/redoc", "/metrics"):
        assert (await client.get(path)).status_code == 404, path


async def test_every_contract_operation_is_routed_and_nothing_else(client):
    contract = load_document(CONTRACT)["paths"]
    for path, operations in contract.items():
        for method in ("get", "put", "post", "patch", "delete"):
            resp = await client.request(method.upper(), path)
            # routed operations reach auth (401); others are 405
            assert resp.status_code == (401 if method in operations else 405), (method, path)
    assert (await client.post("/v1/ingest/other")).status_code == 404
    assert (await client.post("/v2/ingest")).status_code == 404


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
