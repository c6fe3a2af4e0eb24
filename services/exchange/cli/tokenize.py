"""`exchange tokenize`: tokenize an OpenToken-style people CSV into `RuleId,Token,RecordId` rows;
`exchange tokenize transit ...` (cli.transit) carries such tokens to another deployment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from exchange.cli.transit import transit_app
from exchange.core.errors import ExchangeError


def tokenize_command(
    ctx: typer.Context,
    input_path: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="People CSV (RecordId, FirstName, LastName, BirthDate, Sex, ...)."),
    ] = None,
    output_path: Annotated[
        Path | None, typer.Option("--output", "-o", help="Tokens CSV to write (RuleId,Token,RecordId).")
    ] = None,
    secret_file: Annotated[
        Path | None,
        typer.Option(
            "--secret-file", envvar="TOKENIZATION_SECRET_FILE", help="File holding the hashing secret (never printed)."
        ),
    ] = None,
    key_id: Annotated[
        str | None, typer.Option("--key-id", envvar="TOKENIZATION_KEY_ID", help="Key id; default: from the secret.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Tokenize a CSV with OpenToken's rules T1-T5; writes <output>.metadata.json next to it.
    `exchange tokenize transit ...` carries tokens to another deployment."""
    from exchange.tokenizer.csvio import metadata_path, tokenize_csv
    from exchange.tokenizer.engine import Tokenizer
    from exchange.tokenizer.secrets import load_secret

    if ctx.invoked_subcommand is not None:
        return  # `exchange tokenize transit ...`: this is the group's callback
    try:
        if input_path is None or output_path is None:
            raise ExchangeError("pass --input PEOPLE.csv and --output TOKENS.csv (or a sub-command: transit)")
        if secret_file is None:
            raise ExchangeError("no secret: pass --secret-file FILE (or set TOKENIZATION_SECRET_FILE)")
        # A CLI run is an operator's deliberate act: short secrets (e.g. OpenToken's samples) are allowed.
        secret = load_secret(secret_file, key_id=key_id, strict=False)
        if not input_path.is_file():
            raise ExchangeError(f"cannot read {input_path}: no such file")
        if input_path.resolve() == output_path.resolve():
            raise ExchangeError("--output must differ from --input")
        tokenizer = Tokenizer(secret.value, secret.key_id)
        size = os.path.getsize(input_path)
        console = Console(stderr=True)  # stdout stays for the summary line
        with Progress(
            TextColumn("tokenizing"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=quiet or not console.is_terminal,
            transient=True,
        ) as bar:
            task = bar.add_task("tokenize", total=size)
            stats = tokenize_csv(
                input_path,
                output_path,
                tokenizer,
                secret.fingerprint,
                progress=lambda done: bar.update(task, completed=done),
            )
    except ExchangeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:  # e.g. the output directory is missing or read-only
        typer.echo(f"error: cannot write {exc.filename or output_path}: {exc.strerror or type(exc).__name__}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{stats.rows} records -> {output_path} (key {secret.key_id}); "
        f"{stats.rows_with_invalid_attributes} with invalid attributes; metadata: {metadata_path(output_path)}"
    )


# `exchange tokenize`: the CSV command itself when given options, and the `transit` group.
tokenize_app = typer.Typer(no_args_is_help=False, pretty_exceptions_enable=False)
tokenize_app.callback(invoke_without_command=True)(tokenize_command)
tokenize_app.add_typer(transit_app, name="transit")
