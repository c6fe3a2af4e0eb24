"""Streaming CSV tokenization with OpenToken's input columns and output layout.

Input: a header naming (case-insensitively, any order) a record id and the six attributes by
OpenToken's names or aliases; extra columns are ignored. Output: `RuleId,Token,RecordId`, five
rows per record (T1-T5), plus `<output>.metadata.json` with counts and the secret's SHA-256 (never
the secret). Rows are read, tokenized and written in chunks, so memory stays flat on any size.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import Any

import orjson

from exchange.core.errors import ExchangeError
from exchange.tokenizer.attributes import ATTRIBUTES
from exchange.tokenizer.engine import PersonAttributes, Tokenizer, Validity
from exchange.tokenizer.rules import BLANK_TOKEN, RULE_IDS

RECORD_ID = "RecordId"
# Canonical column -> accepted header names (compared case-insensitively).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    RECORD_ID: ("RecordId", "Id"),
    "FirstName": ("FirstName", "GivenName"),
    "LastName": ("LastName", "Surname"),
    "BirthDate": ("BirthDate", "DateOfBirth"),
    "Sex": ("Sex", "Gender"),
    "PostalCode": ("PostalCode", "ZipCode", "ZIP3", "ZIP4", "ZIP5"),
    "SocialSecurityNumber": ("SocialSecurityNumber", "NationalIdentificationNumber", "SSN"),
}
_PERSON_COLUMNS = tuple(a.value for a in ATTRIBUTES)  # PersonAttributes field order
OUTPUT_HEADER = ("RuleId", "Token", "RecordId")
CHUNK_ROWS = 4096
METADATA_SUFFIX = ".metadata.json"


class CsvInputError(ExchangeError):
    """The input CSV cannot be tokenized: unreadable, not UTF-8, malformed, or missing columns.

    Messages name columns and row numbers, never cell values.
    """


class CsvOutputError(ExchangeError):
    """The output (or its metadata) cannot be written."""


@dataclass
class TokenizeStats:
    """What one run did; the body of the metadata file."""

    rows: int = 0
    rows_with_invalid_attributes: int = 0
    invalid_attributes: Counter[str] = field(default_factory=Counter)
    missing_attributes: Counter[str] = field(default_factory=Counter)
    blank_tokens_by_rule: Counter[str] = field(default_factory=Counter)

    def metadata(self, tokenizer: Tokenizer, fingerprint: str, **extra: Any) -> dict[str, Any]:
        return {
            "Format": "OpenToken-compatible hash-only tokens (RuleId,Token,RecordId)",
            "Rules": list(RULE_IDS),
            "KeyId": tokenizer.key_id,
            "HashingSecretHash": fingerprint,
            "TotalRows": self.rows,
            "TotalRowsWithInvalidAttributes": self.rows_with_invalid_attributes,
            "InvalidAttributesByType": {a: self.invalid_attributes[a] for a in _PERSON_COLUMNS},
            "MissingAttributesByType": {a: self.missing_attributes[a] for a in _PERSON_COLUMNS},
            "BlankTokensByRule": {r: self.blank_tokens_by_rule[r] for r in RULE_IDS},
            "GeneratedAt": datetime.now(UTC).isoformat(timespec="seconds"),
            **extra,
        }


def resolve_columns(header: list[str]) -> dict[str, int]:
    """Map each canonical column to its index in `header`; when several aliases are present the
    first in `COLUMN_ALIASES` order wins. Raises CsvInputError naming every missing column."""
    by_name: dict[str, int] = {}
    for index, name in enumerate(header):
        by_name.setdefault(name.strip().lower(), index)
    resolved: dict[str, int] = {}
    missing: list[str] = []
    for canonical, aliases in COLUMN_ALIASES.items():
        found = [by_name[a.lower()] for a in aliases if a.lower() in by_name]
        if found:
            resolved[canonical] = found[0]
        else:
            missing.append(f"{canonical} (or {'/'.join(aliases[1:])})")
    if missing:
        raise CsvInputError(f"missing column(s): {'; '.join(missing)}")
    return resolved


def tokenize_csv(
    source: Path,
    destination: Path,
    tokenizer: Tokenizer,
    fingerprint: str,
    progress: Callable[[int], None] | None = None,
) -> TokenizeStats:
    """Tokenize `source` into `destination` and write `<destination>.metadata.json`.

    `progress` receives the bytes of input consumed so far, once per chunk. The output is written
    to a temporary file and renamed, so a failed run leaves no partial output behind.
    Raises CsvInputError.
    """
    stats = TokenizeStats()
    partial = destination.with_name(destination.name + ".partial")
    try:
        raw = source.open("rb")
    except OSError as exc:
        raise CsvInputError(f"cannot read {source}: {exc.strerror or type(exc).__name__}") from None
    try:
        with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            reader = csv.reader(text)
            try:
                header = next(reader, None)
            except (UnicodeDecodeError, csv.Error) as exc:
                raise CsvInputError(f"{source}: header is not valid UTF-8 CSV ({type(exc).__name__})") from None
            if header is None:
                raise CsvInputError(f"{source} is empty (no header row)")
            columns = resolve_columns(header)
            try:
                out = partial.open("w", encoding="utf-8", newline="")
            except OSError as exc:
                raise CsvOutputError(f"cannot write {destination}: {exc.strerror or type(exc).__name__}") from None
            with out:
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(OUTPUT_HEADER)
                for chunk in _chunks(reader, columns, source):
                    _write_chunk(chunk, tokenizer, writer, stats)
                    if progress is not None:
                        progress(raw.tell())
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    meta = stats.metadata(tokenizer, fingerprint, InputFile=source.name, OutputFile=destination.name)
    metadata_path(destination).write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2) + b"\n")
    return stats


def metadata_path(destination: Path) -> Path:
    return destination.with_name(destination.name + METADATA_SUFFIX)


def _chunks(
    reader: Iterator[list[str]], columns: dict[str, int], source: Path
) -> Iterator[list[tuple[str, PersonAttributes]]]:
    id_col = columns[RECORD_ID]
    person_cols = [columns[c] for c in _PERSON_COLUMNS]
    width = max(columns.values()) + 1
    chunk: list[tuple[str, PersonAttributes]] = []
    line = 1
    try:
        for line, row in enumerate(reader, start=2):  # noqa: B007 - line is reported on error
            if not row:
                continue  # blank line
            if len(row) < width:
                row = row + [""] * (width - len(row))
            chunk.append((row[id_col], PersonAttributes(*[row[i] for i in person_cols])))
            if len(chunk) >= CHUNK_ROWS:
                yield chunk
                chunk = []
    except UnicodeDecodeError:
        raise CsvInputError(f"{source}: not valid UTF-8 near row {line + 1}") from None
    except csv.Error as exc:
        raise CsvInputError(f"{source}: malformed CSV near row {line + 1} ({type(exc).__name__})") from None
    if chunk:
        yield chunk


def _write_chunk(
    chunk: list[tuple[str, PersonAttributes]], tokenizer: Tokenizer, writer: Any, stats: TokenizeStats
) -> None:
    record_ids = [record_id for record_id, _ in chunk]
    results = list(tokenizer.tokenize_many(person for _, person in chunk))
    if not results:
        return
    rows: list[tuple[str, str, str]] = []
    extend = rows.extend
    for record_id, result in zip(record_ids, results, strict=True):
        extend(zip(RULE_IDS, result.tokens, repeat(record_id)))
    writer.writerows(rows)
    # Counting column by column keeps the per-record Python work to the loop above.
    token_columns = list(zip(*(r.tokens for r in results), strict=True))
    for rule_id, column in zip(RULE_IDS, token_columns, strict=True):
        stats.blank_tokens_by_rule[rule_id] += column.count(BLANK_TOKEN)
    validity_rows = [r.validity for r in results]
    for name, column in zip(_PERSON_COLUMNS, zip(*validity_rows, strict=True), strict=True):
        stats.invalid_attributes[name] += column.count(Validity.INVALID)
        stats.missing_attributes[name] += column.count(Validity.MISSING)
    stats.rows += len(results)
    stats.rows_with_invalid_attributes += sum(Validity.INVALID in v for v in validity_rows)
