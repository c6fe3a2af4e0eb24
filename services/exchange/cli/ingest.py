"""`exchange ingest ...`: bulk-upload NDJSON to a running ingest service, and run the relay.

The lead registers `app` as the `ingest` sub-command (`exchange ingest bulk FILE`) and may call
`relay_command` from `exchange serve relay`.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from tenacity import RetryCallState, Retrying, retry_if_exception_type, retry_if_result, stop_after_attempt

from exchange.core.auth import DEV_TOKEN
from exchange.core.retry import doubling

app = typer.Typer(help="Ingest records into Exchange.", no_args_is_help=True)
console = Console(stderr=True)
RETRYABLE = {409, 429, 502, 503, 504}


def _chunks(path: Path, lines_per_chunk: int) -> Iterator[tuple[int, bytes]]:
    """(line count, body) per chunk of the file; blank lines dropped."""
    buffer: list[bytes] = []
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                buffer.append(line if line.endswith(b"\n") else line + b"\n")
            if len(buffer) >= lines_per_chunk:
                yield len(buffer), b"".join(buffer)
                buffer = []
    if buffer:
        yield len(buffer), b"".join(buffer)


def _sniff_content_type(path: Path) -> str:
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                return "application/fhir+ndjson" if b'"resourceType"' in line else "application/x-ndjson"
    return "application/x-ndjson"


def _encoded(body: bytes, compress: bool) -> tuple[bytes, dict[str, str]]:
    """The chunk as sent, and its Content-Encoding header when gzip-compressed."""
    if not compress:
        return body, {}
    return gzip.compress(body, compresslevel=6), {"Content-Encoding": "gzip"}


def _post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str], attempts: int) -> httpx.Response:
    """POST with the same Idempotency-Key on every retry, so a retried chunk is never doubled. The
    last answer is returned once the attempts are spent; a transport error then propagates."""
    backoff = doubling(0.5, 10.0)

    def retryable(resp: httpx.Response) -> bool:
        # A 409 without Retry-After is `idempotency-key-reused`: retrying the same key cannot help.
        return resp.status_code in RETRYABLE and not (resp.status_code == 409 and "retry-after" not in resp.headers)

    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            with contextlib.suppress(ValueError):
                return float(outcome.result().headers.get("retry-after", ""))
        return float(backoff(state))

    def last(state: RetryCallState) -> httpx.Response:
        assert state.outcome is not None
        answer: httpx.Response = state.outcome.result()  # re-raises a transport error
        return answer

    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait,
        retry=retry_if_exception_type(httpx.TransportError) | retry_if_result(retryable),
        retry_error_callback=last,
    )
    response: httpx.Response = retrying(client.post, url, content=body, headers=headers)
    return response


@app.command("bulk")
def bulk_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="NDJSON file.")],
    url: Annotated[str, typer.Option(envvar="EXCHANGE_INGEST_URL", help="Ingest base URL.")] = "http://127.0.0.1:8080",
    token: Annotated[str, typer.Option(envvar="EXCHANGE_TOKEN", help="Bearer token (`dev` locally).")] = DEV_TOKEN,
    chunk_lines: Annotated[int, typer.Option(min=1, max=100_000, help="Lines per request.")] = 5_000,
    content_type: Annotated[
        str | None, typer.Option(help="application/x-ndjson or application/fhir+ndjson (default: sniffed).")
    ] = None,
    attempts: Annotated[int, typer.Option(min=1, help="Tries per chunk (409/429/5xx/network).")] = 5,
    compress: Annotated[
        bool, typer.Option("--gzip/--no-gzip", help="Send each chunk gzip-compressed (Content-Encoding: gzip).")
    ] = False,
) -> None:
    """Upload an NDJSON file in chunks, one idempotent request per chunk, with a progress bar."""
    media = content_type or _sniff_content_type(file)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:32]
    total = sum(1 for line in file.open("rb") if line.strip())
    accepted = rejected = 0
    failed_chunks: list[int] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with httpx.Client(timeout=120) as client, Progress(*columns, console=console) as progress:
        task = progress.add_task(file.name, total=total)
        for index, (count, body) in enumerate(_chunks(file, chunk_lines)):
            content, encoding = _encoded(body, compress)
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": media,
                # the service fingerprints the decoded body: a rerun with or without --gzip is a replay
                "Idempotency-Key": f"bulk-{digest}-{chunk_lines}-{index}",
                **encoding,
            }
            resp = _post(client, f"{url.rstrip('/')}/v1/ingest/bulk", content, headers, attempts)
            results = resp.json().get("results") if resp.status_code in (202, 422) else None
            if isinstance(results, list):
                ok = sum(1 for r in results if r.get("status") == "accepted")
                accepted, rejected = accepted + ok, rejected + len(results) - ok
            else:
                failed_chunks.append(index)
                console.print(f"[red]chunk {index}: HTTP {resp.status_code}[/red] {resp.text[:300]}")
            progress.advance(task, count)
    console.print(f"accepted {accepted}, rejected {rejected}, failed chunks {len(failed_chunks)}")
    if failed_chunks or rejected:
        raise typer.Exit(1)


@app.command("relay")
def relay_command() -> None:
    """Run the outbox relay (record.ingested.v1) until SIGTERM/SIGINT; configured by environment."""
    from exchange.ingest.relay import run

    run()
