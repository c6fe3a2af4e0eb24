"""`POST /v1/tokenize`: the request handling, checked against `contracts/api/tokenizer.v1.openapi.yaml`.

The body is read with a byte limit, counted (413 past the batch limit) before it is validated
against the contract's own JSON Schema, so a huge batch costs no schema work. Errors carry
pointers and keywords only; no attribute value is logged, counted by value or echoed.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from jsonschema import Draft202012Validator
from prometheus_client import CollectorRegistry, Counter

from exchange.core.auth import Principal, require_scope
from exchange.core.contracts import error_pointers, load_document
from exchange.core.errors import BadRequest, PayloadTooLarge, Unprocessable, UnsupportedMediaType
from exchange.core.http import read_body_limited
from exchange.core.logging import get_logger
from exchange.tokenizer.attributes import ATTRIBUTES
from exchange.tokenizer.engine import PersonAttributes, Tokenizer
from exchange.tokenizer.rules import BLANK_TOKEN, RULE_IDS
from exchange.tokenizer.settings import TokenizerSettings

CONTRACT = "api/tokenizer.v1.openapi.yaml"
SCOPE = "tokenize"
FIELDS = PersonAttributes._fields  # API names, in ATTRIBUTES order
log = get_logger(__name__)

TokenizePrincipal = Annotated[Principal, Depends(require_scope(SCOPE))]


@functools.cache
def schema_validator(name: str) -> Draft202012Validator:
    """The contract's schema `name`; `$ref`s resolve inside the contract document."""
    contract = load_document(CONTRACT)
    schema = {"$ref": f"#/components/schemas/{name}", "components": contract["components"]}
    return Draft202012Validator(schema)


def contract_operation(path: str, method: str) -> dict[str, Any]:
    """The contract's operation object, served as the route's OpenAPI (so they cannot drift)."""
    operation: dict[str, Any] = load_document(CONTRACT)["paths"][path][method]
    return operation


class TokenizeMetrics:
    """Counts without labels that could carry PII: records, attribute outcomes, blank tokens."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter("tokenizer_records_total", "People tokenized.", registry=registry)
        self.attributes = Counter(
            "tokenizer_attributes_total", "Attribute outcomes.", ["attribute", "validity"], registry=registry
        )
        self.blank_tokens = Counter(
            "tokenizer_blank_tokens_total", "Blank tokens by rule.", ["rule"], registry=registry
        )


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_batch(request: Request, settings: TokenizerSettings, validator: Draft202012Validator) -> dict[str, Any]:
    """The request's JSON object with its `records`, checked in order of cost: media type (415),
    bytes and record count (413), then the contract schema (422 with pointers, no values)."""
    if _media_type(request) != "application/json":
        raise UnsupportedMediaType("send application/json")
    body = await read_body_limited(request, settings.tokenizer_max_body_bytes)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not valid JSON") from None
    records = document.get("records") if isinstance(document, dict) else None
    if isinstance(records, list) and len(records) > settings.tokenizer_max_batch:
        raise PayloadTooLarge(f"at most {settings.tokenizer_max_batch} records per request")
    errors = error_pointers(validator, document)
    if errors:
        raise Unprocessable("the request does not match the contract", extra={"errors": errors})
    assert isinstance(document, dict)
    return document


def _tokenize(tokenizer: Tokenizer, records: list[dict[str, Any]], metrics: TokenizeMetrics) -> list[dict[str, Any]]:
    people = [PersonAttributes(*(r.get(f) for f in FIELDS)) for r in records]
    outcomes: dict[tuple[str, str], int] = {}
    blanks: dict[str, int] = {}
    results: list[dict[str, Any]] = []
    for record, result in zip(records, tokenizer.tokenize_many(people), strict=True):
        item: dict[str, Any] = {
            "tokens": dict(zip(RULE_IDS, result.tokens, strict=True)),
            "validity": dict(zip(FIELDS, result.validity, strict=True)),
        }
        if "record_id" in record:
            item = {"record_id": record["record_id"], **item}
        results.append(item)
        for field_name, flag in zip(FIELDS, result.validity, strict=True):
            outcomes[field_name, flag] = outcomes.get((field_name, flag), 0) + 1
        for rule_id, token in zip(RULE_IDS, result.tokens, strict=True):
            if token == BLANK_TOKEN:
                blanks[rule_id] = blanks.get(rule_id, 0) + 1
    metrics.records.inc(len(records))
    for (field_name, flag), n in outcomes.items():
        metrics.attributes.labels(field_name, flag).inc(n)
    for rule_id, n in blanks.items():
        metrics.blank_tokens.labels(rule_id).inc(n)
    return results


def build_router(settings: TokenizerSettings) -> APIRouter:
    """The tokenizer's routes; the app puts `tokenizer` and `tokenize_metrics` on `app.state`."""
    router = APIRouter()
    assert len(FIELDS) == len(ATTRIBUTES)

    @router.post(
        "/v1/tokenize",
        openapi_extra=contract_operation("/v1/tokenize", "post"),
        response_class=Response,
        tags=["tokenize"],
    )
    async def tokenize(request: Request, principal: TokenizePrincipal) -> Response:
        document = await read_batch(request, settings, schema_validator("TokenizeRequest"))
        records = document["records"]
        tokenizer: Tokenizer = request.app.state.tokenizer
        results = _tokenize(tokenizer, records, request.app.state.tokenize_metrics)
        log.info("tokenized", records=len(results), key_id=tokenizer.key_id, tenant=principal.tenant)
        payload = {"key_id": tokenizer.key_id, "results": results}
        return Response(orjson.dumps(payload), media_type="application/json")

    return router
