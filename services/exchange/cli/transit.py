"""`exchange tokenize transit`: carry tokens to another deployment (ADR 0003, amendment 1).

    sender:    exchange tokenize transit key    --recipient R --secret-file S -o R.key   (once per recipient)
               exchange tokenize transit encode --recipient R --secret-file S -i tokens.csv -o for-R.csv
    recipient: exchange tokenize transit decode --key-file R.key --secret-file OWN -i for-R.csv -o site.csv

CSVs are `RuleId,Token,RecordId`, as `exchange tokenize` writes them. Local only, like
`exchange tokenize`: the secrets come from files and nothing goes over the network. Every
failure prints one line and exits 1; no token, key or secret is ever printed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from exchange.core.errors import ExchangeError

if TYPE_CHECKING:
    from exchange.tokenizer.secrets import TokenizationSecret

transit_app = typer.Typer(
    help="Transit tokens: encrypt tokens for one recipient, or turn received ones into site tokens.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

SecretFile = Annotated[
    Path | None,
    typer.Option(
        "--secret-file",
        envvar="TOKENIZATION_SECRET_FILE",
        help="This deployment's tokenization secret (never printed).",
    ),
]
Recipient = Annotated[str, typer.Option("--recipient", "-r", help="The recipient's id (bound into its tokens).")]
InputCsv = Annotated[Path, typer.Option("--input", "-i", help="Tokens CSV (RuleId,Token,RecordId).")]
OutputCsv = Annotated[Path, typer.Option("--output", "-o", help="Tokens CSV to write (RuleId,Token,RecordId).")]


def _run(action: Callable[[], str]) -> None:
    """Run `action`, echo its summary line; any failure is one line on stderr and exit 1."""
    try:
        summary = action()
    except ExchangeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(summary)


def _secret(secret_file: Path | None) -> TokenizationSecret:
    from exchange.tokenizer.secrets import load_secret

    if secret_file is None:
        raise ExchangeError("no secret: pass --secret-file FILE (or set TOKENIZATION_SECRET_FILE)")
    # As with `exchange tokenize`, a CLI run is an operator's deliberate act: short secrets are allowed.
    return load_secret(secret_file, strict=False)


def _paths(input_path: Path, output_path: Path) -> None:
    if not input_path.is_file():
        raise ExchangeError(f"cannot read {input_path}: no such file")
    if input_path.resolve() == output_path.resolve():
        raise ExchangeError("--output must differ from --input")


@transit_app.command("key")
def key_command(
    recipient: Recipient,
    output_path: Annotated[Path, typer.Option("--output", "-o", help="Key file to write (mode 0600).")],
    secret_file: SecretFile = None,
) -> None:
    """Sender: export the recipient's transit key file, to hand over on a secure channel once."""

    def action() -> str:
        from exchange.tokenizer.transit import TransitCodec, check_recipient
        from exchange.tokenizer.transit_keys import write_key_file

        check_recipient(recipient)
        key = TransitCodec.from_secret(_secret(secret_file)).recipient_key(recipient)
        write_key_file(output_path, key)
        return (
            f"transit key for {recipient} (transit key id {key.key_id}) -> {output_path}; the recipient mounts it "
            "as TRANSIT_KEYS_DIR/<its id for you>"
        )

    _run(action)


@transit_app.command("encode")
def encode_command(
    recipient: Recipient,
    input_path: InputCsv,
    output_path: OutputCsv,
    secret_file: SecretFile = None,
) -> None:
    """Sender: encrypt this deployment's tokens for one recipient."""

    def action() -> str:
        from exchange.tokenizer.transit import TransitCodec, check_recipient
        from exchange.tokenizer.transit_csv import transcode_csv

        check_recipient(recipient)
        codec = TransitCodec.from_secret(_secret(secret_file))
        _paths(input_path, output_path)
        count = transcode_csv(input_path, output_path, lambda rule, token: codec.encode(recipient, rule, token))
        key_id = codec.recipient_key(recipient).key_id
        return f"{count} tokens -> {output_path} (for {recipient}, transit key id {key_id})"

    _run(action)


@transit_app.command("decode")
def decode_command(
    key_file: Annotated[Path, typer.Option("--key-file", "-k", help="The key file the sender exported for us.")],
    input_path: InputCsv,
    output_path: OutputCsv,
    secret_file: SecretFile = None,
) -> None:
    """Recipient: turn a sender's transit tokens into this deployment's site tokens."""

    def action() -> str:
        from exchange.tokenizer.transit import SiteKey, TransitReader
        from exchange.tokenizer.transit_csv import transcode_csv
        from exchange.tokenizer.transit_keys import load_key_file

        reader = TransitReader(load_key_file(key_file))
        site = SiteKey(_secret(secret_file))
        _paths(input_path, output_path)
        count = transcode_csv(input_path, output_path, lambda rule, tok: site.site_token(rule, reader.open(rule, tok)))
        return f"{count} site tokens -> {output_path} (key {site.key_id}, transit key id {reader.key_id})"

    _run(action)
