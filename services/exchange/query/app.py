"""Wiring of the query service: settings → pool → GraphQL at /graphql. No logic here."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import strawberry
from fastapi import Depends, FastAPI, Request
from graphql import GraphQLError
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from exchange.core.auth import JWTVerifier, Principal, require_scope
from exchange.core.db import pool_readiness
from exchange.core.errors import PayloadTooLarge
from exchange.core.http import create_service_app
from exchange.core.logging import get_logger
from exchange.core.settings import load
from exchange.core.startup import until_up
from exchange.query.db import Database, open_pool
from exchange.query.limits import extensions
from exchange.query.loaders import Loaders
from exchange.query.repo import Repo
from exchange.query.router import QueryRouter
from exchange.query.schema import Context, Query
from exchange.query.settings import SCOPE, QuerySettings

log = get_logger(__name__)


class QuerySchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        # The class only: messages of unexpected errors may carry SQL or values.
        for error in errors:
            original = error.original_error
            log.info("graphql_error", error_class=type(original or error).__name__, path=error.path)


def build_schema(settings: QuerySettings) -> strawberry.Schema:
    """The strawberry schema with the limits of `settings` (printed, it must equal the contract)."""
    kinds: dict[str, str] = {}
    # Suggestions ("Did you mean ...?") would reveal the schema that introspection hides outside local.
    config = StrawberryConfig(disable_field_suggestions=not settings.is_local)
    schema = QuerySchema(query=Query, extensions=extensions(settings, kinds), config=config)
    from exchange.query.limits import field_kinds

    kinds.update(field_kinds(schema._schema))
    return schema


class BodyLimit:
    """Refuses request bodies over `limit` bytes (declared or streamed) with 413, before parsing."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise PayloadTooLarge(f"body exceeds {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


def create_app(settings: QuerySettings | None = None) -> FastAPI:
    """The query FastAPI app; the pool is opened by its lifespan."""
    settings = settings or load(QuerySettings)
    schema = build_schema(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await until_up("postgres", lambda: open_pool(settings), settings.startup_wait_seconds)
        try:
            app.state.repo = Repo(Database(pool, app.state.registry))
            app.state.readiness.update(postgres=pool_readiness(pool))
            yield
        finally:
            await pool.close()

    async def context(request: Request, principal: Principal = Depends(require_scope(SCOPE))) -> Context:
        return Context(principal, Loaders(request.app.state.repo, principal.tenant), settings)

    router = QueryRouter(
        schema,
        path="/graphql",
        context_getter=context,
        graphql_ide="graphiql" if settings.is_local else None,
        allow_queries_via_get=False,
        multipart_uploads_enabled=False,
    )
    app = create_service_app("exchange-query", lifespan=lifespan, settings=settings)
    app.state.verifier = JWTVerifier(settings)
    app.include_router(router)
    app.add_middleware(BodyLimit, limit=settings.query_max_body_bytes)
    return app
