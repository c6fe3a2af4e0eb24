"""`exchange`: the one CLI for people — serve a service, migrate, tokenize a CSV, bulk-ingest.

This module is the composition root: it names services by import path and loads them lazily,
so the services never import each other and `exchange --help` starts fast. Every failure prints
one line and exits non-zero.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from exchange.cli import bootstrap, ingest, normalizer, retention, tokenize
from exchange.core.errors import ConfigError, ExchangeError

if TYPE_CHECKING:
    from exchange.core.settings import DatabaseSettings

app = typer.Typer(
    name="exchange",
    help="Exchange: secure healthcare data exchange.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _quiet_libraries() -> None:
    """Commands print their own one-line results; library loggers stay silent unless `serve`
    reconfigures logging for a long-running process."""
    import logging

    logging.getLogger().addHandler(logging.NullHandler())
    logging.getLogger().setLevel(logging.CRITICAL)


class Component(StrEnum):
    ingest = "ingest"
    query = "query"
    tokenizer = "tokenizer"
    normalizer = "normalizer"
    relay = "relay"


# HTTP services: ASGI app factory and default port.
HTTP_SERVICES: dict[str, tuple[str, int]] = {
    "ingest": ("exchange.ingest.app:create_app", 8080),
    "query": ("exchange.query.app:create_app", 8081),
    "tokenizer": ("exchange.tokenizer.app:create_app", 8082),
}
# Workers: a `run()` each (sync, or a coroutine function), reading settings from the environment.
WORKERS: dict[str, str] = {
    "relay": "exchange.ingest.relay:run",
    "normalizer": "exchange.normalizer.worker:run",
}
# Schema migrations, applied in this order by `exchange migrate`: `upgrade(dsn)` each.
MIGRATIONS: list[str] = [
    "exchange.ingest.migrations:upgrade",
    "exchange.normalizer.migrations:upgrade",
]
# Role and grant set-up that needs the migrated schema; each reads its settings from the environment.
GRANTS: list[str] = [
    "exchange.ingest.migrations:grant_role_from_env",
    "exchange.normalizer.migrations:grant_role_from_env",
    "exchange.query.roles:ensure_readonly_role_from_env",
]


def resolve(target: str) -> Callable[..., Any]:
    """Import `module:attribute` when the command needs it; a missing dependency is a one-line ConfigError."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{module_name} is not available: {exc.name} missing") from exc
    fn: Callable[..., Any] = getattr(module, attr)
    return fn


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command()
def serve(
    component: Annotated[Component, typer.Argument(help="What to run.")],
    host: Annotated[str | None, typer.Option(envvar="HOST", help="Bind address (HTTP services).")] = None,
    port: Annotated[int | None, typer.Option(envvar="PORT", help="Port (HTTP services).")] = None,
    workers: Annotated[int, typer.Option(envvar="WEB_CONCURRENCY", help="Server processes.")] = 1,
) -> None:
    """Run one service (HTTP: ingest, query, tokenizer) or worker (relay, normalizer)."""
    from exchange.core.logging import configure_logging
    from exchange.core.settings import ServiceSettings, load
    from exchange.core.tracing import configure_tracing

    try:
        settings = load(ServiceSettings)
        configure_logging(component.value, settings.log_level, settings.log_json)
        configure_tracing(component.value)  # on when an OTLP endpoint is set (OTEL_* variables)
        if component.value in WORKERS:
            runner = resolve(WORKERS[component.value])
            assert runner is not None
            result = runner()
            if asyncio.iscoroutine(result):
                from exchange.core import aio

                aio.run(result)
            return
        factory, default_port = HTTP_SERVICES[component.value]
        multiprocess_dir = None
        if workers > 1:  # before any metric exists: /metrics adds up every worker's samples
            from exchange.core.metrics import use_multiprocess_dir

            multiprocess_dir = use_multiprocess_dir()
        resolve(factory)  # fail fast with one line if the service is not built
        import uvicorn

        from exchange.core.server import uvicorn_options

        # uvloop, httptools and the connection limits that hold before auth (exchange.core.server)
        options = uvicorn_options()
        try:
            uvicorn.run(factory, factory=True, host=host or settings.host, port=port or default_port,
                        workers=workers, **options)  # fmt: skip
        finally:
            if multiprocess_dir is not None:
                import shutil

                shutil.rmtree(multiprocess_dir, ignore_errors=True)
    except ExchangeError as exc:
        raise fail(str(exc)) from None


async def _postgres_answers(settings: DatabaseSettings) -> None:
    from exchange.core.db import create_pool

    pool = await create_pool(settings, min_size=1, max_size=1)
    await pool.close()


@app.command()
def migrate() -> None:
    """Apply every service's database migrations (idempotent), once Postgres answers (up to
    STARTUP_WAIT_SECONDS: the migrate Job starts with the database)."""
    from exchange.core.settings import DatabaseSettings, ServiceSettings, load
    from exchange.core.startup import until_up

    try:
        settings = load(DatabaseSettings)
        asyncio.run(
            until_up("postgres", lambda: _postgres_answers(settings), load(ServiceSettings).startup_wait_seconds)
        )
        dsn = settings.database_url.get_secret_value()
        for target in MIGRATIONS:
            result = resolve(target)(dsn)
            if asyncio.iscoroutine(result):
                asyncio.run(result)
            typer.echo(f"migrated: {target.split(':')[0]}")
        for target in GRANTS:
            done = resolve(target)()
            state = "skipped (role absent)" if done is False else "granted"
            typer.echo(f"{state}: {target.split(':')[0]}")
    except ExchangeError as exc:
        raise fail(str(exc)) from None


app.command("bootstrap")(bootstrap.bootstrap_command)
app.add_typer(tokenize.tokenize_app, name="tokenize")
app.add_typer(ingest.app, name="ingest")
app.add_typer(normalizer.dlq_app, name="dlq")
app.command("replay")(normalizer.replay_command)
app.command("verify")(normalizer.verify_command)
app.add_typer(retention.app, name="retention")


def main() -> None:
    try:
        app()
    except ExchangeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
