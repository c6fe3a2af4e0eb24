"""`exchange retention run ingest|normalizer [--dry-run]`: enforce a service's table retention once.

The services enforce it themselves every minute or so (ADR 0013); this is the same job for an
operator: after a long outage, before a migration, or as a scheduled Job. Thin: load the service's
retention settings from the environment, run `exchange.core.retention.enforce` with its rules,
print one line per table. Every failure is one line and a non-zero exit.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from exchange.core.errors import ExchangeError

if TYPE_CHECKING:
    from exchange.core.retention import Rule
    from exchange.core.settings import DatabaseSettings

app = typer.Typer(name="retention", help="Bounded tables: delete rows past their retention.", no_args_is_help=True)


class Service(StrEnum):
    ingest = "ingest"
    normalizer = "normalizer"


def _rules(service: Service) -> tuple[DatabaseSettings, list[Rule]]:
    """The service's retention settings (from the environment) and its rules."""
    from exchange.core.settings import load

    if service is Service.ingest:
        from exchange.ingest import retention as ingest
        from exchange.ingest import settings as ingest_settings

        ingest_config = load(ingest_settings.RetentionSettings)
        return ingest_config, ingest.all_rules(ingest_config)
    from exchange.normalizer import retention as normalizer
    from exchange.normalizer import settings as normalizer_settings

    normalizer_config = load(normalizer_settings.RetentionSettings)
    return normalizer_config, normalizer.all_rules(normalizer_config)


async def _run(service: Service, dry_run: bool) -> dict[str, tuple[int, float]]:
    from exchange.core.db import create_pool
    from exchange.core.retention import enforce

    settings, rules = _rules(service)
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        counts = await enforce(pool, rules, dry_run=dry_run)
    finally:
        await pool.close()
    return {rule.table: (counts[rule.table], rule.retention_seconds) for rule in rules}


@app.command("run")
def run_command(
    service: Annotated[Service, typer.Argument(help="Whose tables (its DATABASE_URL and retention settings).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count the expired rows; delete nothing.")] = False,
) -> None:
    """Delete the rows of SERVICE's tables older than their retention, in short batches."""
    try:
        found = asyncio.run(_run(service, dry_run))
    except Exception as exc:
        # Our own errors carry a PII-free one-liner; a library's text may echo data: only its class.
        message = str(exc) if isinstance(exc, ExchangeError) else f"{type(exc).__name__} (is Postgres reachable?)"
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None
    verb = "would delete" if dry_run else "deleted"
    for table, (count, keep) in found.items():
        typer.echo(f"{table}: {verb} {count} row(s) older than {keep / 86_400:g} days")
    if not found:
        typer.echo("nothing to do: every table keeps its rows (retention 0)")
