"""schemathesis against both OpenAPI contracts (`contracts/api`), served in production mode with
a real token: every operation and media type, generated bodies and headers, no 5xx and nothing
outside the contract's status codes. A bounded number of examples keeps the suite's run short.

The published v1 contracts declare no links (each has POST operations only, nothing to follow),
so schemathesis has no stateful sequence to walk; the stateful case that matters, a replayed
Idempotency-Key, is generated here by sending every case twice with the same key."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from exchange.core.contracts import load_document

from .conftest import SAFETY

CONTRACTS = {"ingest": "api/ingest.v1.openapi.yaml", "tokenizer": "api/tokenizer.v1.openapi.yaml"}


@schemathesis.serializer("application/x-ndjson", "application/fhir+ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(str(value), "utf-8")


@pytest.mark.parametrize("service", sorted(CONTRACTS))
def test_generated_requests_get_no_5xx_and_only_contract_statuses(platform, jwks_server, service: str) -> None:
    api = schemathesis.openapi.from_dict(load_document(CONTRACTS[service]))
    token = jwks_server.token(scope="ingest:write tokenize query:read transit:encode transit:decode")
    for operation in [result.ok() for result in api.get_all_operations()]:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            for _ in range(2):  # the second is a replay when the case carries an Idempotency-Key
                case.call_and_validate(base_url=platform[service].url, headers=headers, timeout=SAFETY,
                                       checks=[not_a_server_error, status_code_conformance])  # fmt: skip

        run()
