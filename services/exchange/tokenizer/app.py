"""The tokenizer service's ASGI app: `exchange serve tokenizer` runs `create_app()` (port 8082)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from exchange.core.auth import JWTVerifier
from exchange.core.contracts import load_document
from exchange.core.http import create_service_app
from exchange.core.settings import load
from exchange.core.workload_identity import ServiceAccountVerifier
from exchange.tokenizer.engine import Tokenizer
from exchange.tokenizer.secrets import load_secret
from exchange.tokenizer.service import CONTRACT, SCOPE, TokenizeMetrics, build_router
from exchange.tokenizer.settings import TokenizerSettings
from exchange.tokenizer.transit import SiteKey, TransitCodec
from exchange.tokenizer.transit_keys import load_keys_dir
from exchange.tokenizer.transit_service import TransitMetrics, TransitState, build_transit_router


def create_app(settings: TokenizerSettings | None = None) -> FastAPI:
    """Build the app; the secret and transit keys are loaded here, so a missing or malformed one
    stops the process at start.

    Raises ConfigError (one line, never the secret) for missing or unsafe settings.
    """
    settings = settings or load(TokenizerSettings)
    env_secret = settings.tokenization_secret.get_secret_value() if settings.tokenization_secret else None
    secret = load_secret(
        settings.tokenization_secret_file, env_secret, settings.tokenization_key_id, strict=not settings.is_local
    )
    contract = load_document(CONTRACT)
    app = create_service_app("tokenizer", version=contract["info"]["version"], settings=settings)
    app.state.settings = settings
    app.state.verifier = (
        ServiceAccountVerifier(settings, scopes={SCOPE})
        if settings.service_auth == "serviceaccount"
        else JWTVerifier(settings)
    )
    app.state.tokenizer = Tokenizer(secret.value, secret.key_id)
    app.state.tokenize_metrics = TokenizeMetrics(app.state.registry)
    transit_keys = load_keys_dir(settings.transit_keys_dir) if settings.transit_keys_dir else {}
    app.state.transit = TransitState(TransitCodec.from_secret(secret), transit_keys, SiteKey(secret))
    app.state.transit_metrics = TransitMetrics(app.state.registry)
    app.include_router(build_router(settings))
    app.include_router(build_transit_router(settings))
    _serve_contract_components(app, contract)
    return app


def _serve_contract_components(app: FastAPI, contract: dict[str, Any]) -> None:
    """Serve the contract's info, security and components next to the generated paths."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            document["openapi"] = contract["openapi"]
            document["info"] = contract["info"]
            document["security"] = contract.get("security", [])
            document["components"] = {**document.get("components", {}), **contract["components"]}
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
