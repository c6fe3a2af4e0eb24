"""`exchange dlq replay`, `exchange replay` and `exchange verify`: the normalizer's operator commands.

Thin: parse options, load `NormalizerSettings` from the environment, call
`exchange.normalizer.commands`, print a summary. Every failure is one line and a non-zero exit.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from exchange.core.errors import ExchangeError

if TYPE_CHECKING:
    from exchange.normalizer.settings import NormalizerSettings

dlq_app = typer.Typer(name="dlq", help="Dead-letter queue of the normalizer.", no_args_is_help=True)


def _settings() -> NormalizerSettings:
    from exchange.core.settings import load
    from exchange.normalizer.settings import NormalizerSettings

    return load(NormalizerSettings)


def _when(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ExchangeError(f"{name}: not an ISO-8601 date or date-time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _fail(exc: Exception) -> typer.Exit:
    # Our own errors carry a PII-free one-liner; a library's text may echo data: only its class.
    message = str(exc) if isinstance(exc, ExchangeError) else f"{type(exc).__name__} (is the engine reachable?)"
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@dlq_app.command("replay")
def dlq_replay_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count by error class; publish and commit nothing.")
    ] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Re-publish at most this many.")] = None,
) -> None:
    """Re-publish dead-lettered events to their original topic (run after fixing the cause)."""
    from exchange.normalizer.commands import dlq_replay

    try:
        result = asyncio.run(dlq_replay(_settings(), dry_run=dry_run, limit=limit))
    except Exception as exc:
        raise _fail(exc) from None
    verb = "would replay" if dry_run else "replayed"
    classes = ", ".join(f"{k}={v}" for k, v in sorted(result.by_error_class.items())) or "none"
    typer.echo(f"{verb} {result.replayed} dead-lettered event(s) ({classes})")


def replay_command(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Tenant whose raw objects are re-emitted (default: every tenant).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="From this upload time (ISO-8601, inclusive; UTC if naive). Default: the start of the replay "
            "window (NORMALIZER_REPLAY_WINDOW_SECONDS); an earlier time is refused.",
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Until this upload time (exclusive; default: now).")
    ] = None,
    record_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only this record type (FHIR resourceType or native record_type); repeatable."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be re-emitted, publish none.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Re-emit record.ingested.v1 from the raw zone (deterministic ids: replaying twice changes nothing)."""
    from exchange.normalizer.commands import replay

    try:
        settings = _settings()
        start = _when(since, "--since") if since else None
        end = _when(until, "--until") if until else None
        types = frozenset(record_type) if record_type else None
        with Progress(
            TextColumn("counting" if dry_run else "replaying"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[events]} events"), TimeElapsedColumn(), disable=quiet, transient=False,
        ) as progress:  # fmt: skip
            task = progress.add_task("replay", total=None, events=0)

            def on_total(total: int) -> None:
                progress.update(task, total=total)

            def on_object(events: int) -> None:
                progress.update(task, advance=1, events=progress.tasks[task].fields["events"] + events)

            result = asyncio.run(
                replay(settings, tenant, start, end, record_types=types, dry_run=dry_run,
                       on_total=on_total, on_object=on_object)
            )  # fmt: skip
    except Exception as exc:
        raise _fail(exc) from None
    verb = "would replay" if dry_run else "replayed"
    typer.echo(
        f"{verb} {result.events} event(s) from {result.objects} raw object(s) uploaded"
        f" {result.since.isoformat()} to {result.until.isoformat()}; skipped {result.skipped_lines}"
    )


def verify_command(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant (default: all).")] = None,
    show: Annotated[int, typer.Option("--show", min=0, help="List at most this many of each finding.")] = 20,
) -> None:
    """Raw objects without canonical records and records whose raw object is missing; exit 1 when any."""
    from exchange.normalizer.commands import verify

    try:
        report = asyncio.run(verify(_settings(), tenant))
    except Exception as exc:
        raise _fail(exc) from None
    typer.echo(f"raw objects: {report.raw_objects}, canonical records: {report.records}")
    typer.echo(f"raw objects without canonical records: {len(report.raw_without_records)}")
    for key in report.raw_without_records[:show]:
        typer.echo(f"  {key}")
    typer.echo(f"canonical records whose raw object is missing: {len(report.records_without_raw)}")
    for record_id, key in report.records_without_raw[:show]:
        typer.echo(f"  {record_id} {key}")
    typer.echo(f"resources kept raw-only (accounted for): {sum(report.raw_only.values())}")
    for resource_type, count in report.raw_only.items():
        typer.echo(f"  {resource_type}: {count}")
    if not report.ok:
        raise typer.Exit(1)
