"""`POST /v1/transit/encode` and `/v1/transit/decode` (contract 1.2.0; ADR 0003, amendment 1).

The sender encodes its platform tokens for a named recipient with its own `TransitCodec`; the
recipient decodes with the key file that sender exported for it and re-keys into site tokens
with its own `SiteKey`. Bodies go through the same checks as `/v1/tokenize` (`read_batch`).
A batch with any token that does not open is refused whole, with the pointers of those tokens:
a partial answer would silently drop people from a linkage.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry, Counter

from exchange.core.auth import Principal, require_scope
from exchange.core.errors import Unprocessable
from exchange.core.logging import get_logger
from exchange.tokenizer.service import contract_operation, read_batch, schema_validator
from exchange.tokenizer.settings import TokenizerSettings
from exchange.tokenizer.transit import SiteKey, TransitCodec, TransitError, TransitKey, TransitReader

ENCODE_SCOPE = "transit:encode"
DECODE_SCOPE = "transit:decode"
MAX_POINTERS = 20
log = get_logger(__name__)

EncodePrincipal = Annotated[Principal, Depends(require_scope(ENCODE_SCOPE))]
DecodePrincipal = Annotated[Principal, Depends(require_scope(DECODE_SCOPE))]


class TransitMetrics:
    """Transit tokens by direction and outcome; recipients and senders are not labels (unbounded)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.tokens = Counter(
            "tokenizer_transit_tokens_total",
            "Transit tokens by direction and outcome.",
            ["direction", "outcome"],
            registry=registry,
        )


class TransitState:
    """What the routes need, built once by the app: the codec (sender side), the held keys and the
    site key (recipient side)."""

    def __init__(self, codec: TransitCodec, keys: dict[str, TransitKey], site: SiteKey) -> None:
        self.codec = codec
        self.readers = {sender: TransitReader(key) for sender, key in keys.items()}
        self.site = site


def _result(record: dict[str, Any], tokens: dict[str, str]) -> dict[str, Any]:
    """One result: the record's `record_id` when it had one, then its tokens."""
    return {"record_id": record["record_id"], "tokens": tokens} if "record_id" in record else {"tokens": tokens}


def _refused(code: str, detail: str, errors: list[dict[str, str]]) -> Unprocessable:
    return Unprocessable(detail, extra={"code": code, "errors": errors})


def decode_records(
    reader: TransitReader, site: SiteKey, records: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Site tokens per record, and the pointers of the tokens that did not open."""
    results: list[dict[str, Any]] = []
    refused: list[dict[str, str]] = []
    for index, record in enumerate(records):
        tokens: dict[str, str] = {}
        for rule_id, transit_token in record["tokens"].items():
            try:
                tokens[rule_id] = site.site_token(rule_id, reader.open(rule_id, transit_token))
            except TransitError:
                refused.append({"pointer": f"/records/{index}/tokens/{rule_id}", "reason": "authentication"})
        results.append(_result(record, tokens))
    return results, refused


def build_transit_router(settings: TokenizerSettings) -> APIRouter:
    """The transit routes; the app puts `transit` (a TransitState) and `transit_metrics` on `app.state`."""
    router = APIRouter()

    @router.post(
        "/v1/transit/encode",
        openapi_extra=contract_operation("/v1/transit/encode", "post"),
        response_class=Response,
        tags=["transit"],
    )
    async def encode(request: Request, principal: EncodePrincipal) -> Response:
        document = await read_batch(request, settings, schema_validator("TransitEncodeRequest"))
        state: TransitState = request.app.state.transit
        recipient: str = document["recipient"]
        results = []
        for record in document["records"]:
            tokens = {rule: state.codec.encode(recipient, rule, token) for rule, token in record["tokens"].items()}
            results.append(_result(record, tokens))
        count = sum(len(r["tokens"]) for r in results)
        request.app.state.transit_metrics.tokens.labels("encode", "ok").inc(count)
        transit_key_id = state.codec.recipient_key(recipient).key_id
        log.info("transit encoded", records=len(results), transit_key_id=transit_key_id, tenant=principal.tenant)
        payload = {
            "key_id": state.site.key_id,
            "recipient": recipient,
            "transit_key_id": transit_key_id,
            "results": results,
        }
        return Response(orjson.dumps(payload), media_type="application/json")

    @router.post(
        "/v1/transit/decode",
        openapi_extra=contract_operation("/v1/transit/decode", "post"),
        response_class=Response,
        tags=["transit"],
    )
    async def decode(request: Request, principal: DecodePrincipal) -> Response:
        document = await read_batch(request, settings, schema_validator("TransitDecodeRequest"))
        state: TransitState = request.app.state.transit
        metrics: TransitMetrics = request.app.state.transit_metrics
        sender: str = document["sender"]
        reader = state.readers.get(sender)
        if reader is None:
            raise _refused(
                "transit-unknown-sender",
                f"this tokenizer holds no transit key from sender {sender}",
                [{"pointer": "/sender", "reason": "unknown"}],
            )
        claimed = document.get("transit_key_id")
        if claimed is not None and claimed != reader.key_id:
            raise _refused(
                "transit-key-mismatch",
                f"the batch was sealed under transit key {claimed}; the key held for {sender} is {reader.key_id}",
                [{"pointer": "/transit_key_id", "reason": "mismatch"}],
            )
        results, refused = decode_records(reader, state.site, document["records"])
        if refused:
            metrics.tokens.labels("decode", "refused").inc(len(refused))
            log.warning("transit tokens refused", refused=len(refused), sender=sender, tenant=principal.tenant)
            raise _refused(
                "transit-token-refused",
                f"{len(refused)} transit token(s) do not open with the key held for {sender}: sealed for "
                "another recipient or rule, or altered",
                refused[:MAX_POINTERS],
            )
        metrics.tokens.labels("decode", "ok").inc(sum(len(r["tokens"]) for r in results))
        log.info("transit decoded", records=len(results), sender=sender, tenant=principal.tenant)
        payload = {"key_id": state.site.key_id, "sender": sender, "transit_key_id": reader.key_id, "results": results}
        return Response(orjson.dumps(payload), media_type="application/json")

    return router
