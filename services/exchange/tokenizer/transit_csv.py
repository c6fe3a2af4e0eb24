"""Transit tokens over token CSVs: `RuleId,Token,RecordId` in (what `exchange tokenize` writes),
the same columns out with each token transformed (`exchange tokenize transit encode|decode`).

The output is written to a temporary file and renamed, so a refused token leaves no partial
output behind. Errors name row numbers and columns, never tokens or record ids.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from pathlib import Path

from exchange.tokenizer.csvio import OUTPUT_HEADER, CsvInputError, CsvOutputError
from exchange.tokenizer.rules import RULE_IDS
from exchange.tokenizer.transit import TransitError

Transform = Callable[[str, str], str]
"""(rule id, token) -> the transformed token; raises TransitError."""


def _columns(header: list[str] | None, source: Path) -> tuple[int, int, int]:
    if header is None:
        raise CsvInputError(f"{source} is empty (no header row)")
    names = [h.strip().lower() for h in header]
    missing = [c for c in OUTPUT_HEADER if c.lower() not in names]
    if missing:
        raise CsvInputError(f"missing column(s): {', '.join(missing)} (expected {','.join(OUTPUT_HEADER)})")
    rule, token, record = (names.index(c.lower()) for c in OUTPUT_HEADER)
    return rule, token, record


def transcode_csv(source: Path, destination: Path, transform: Transform) -> int:
    """Transform every token of `source` into `destination`; the number of tokens written.

    Raises CsvInputError (unreadable or malformed input, an unknown rule, a refused token: the row
    number says where) or CsvOutputError.
    """
    partial = destination.with_name(destination.name + ".partial")
    try:
        raw = source.open("rb")
    except OSError as exc:
        raise CsvInputError(f"cannot read {source}: {exc.strerror or type(exc).__name__}") from None
    count, line = 0, 1
    try:
        with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            reader = csv.reader(text)
            try:
                rule_col, token_col, record_col = _columns(next(reader, None), source)
                try:
                    out = partial.open("w", encoding="utf-8", newline="")
                except OSError as exc:
                    raise CsvOutputError(f"cannot write {destination}: {exc.strerror or type(exc).__name__}") from None
                with out:
                    writer = csv.writer(out, lineterminator="\n")
                    writer.writerow(OUTPUT_HEADER)
                    for line, row in enumerate(reader, start=2):
                        if not row:
                            continue
                        if len(row) <= max(rule_col, token_col, record_col):
                            raise CsvInputError(f"{source}: row {line} has too few columns")
                        rule_id = row[rule_col]
                        if rule_id not in RULE_IDS:
                            raise CsvInputError(f"{source}: row {line}: RuleId is not one of {', '.join(RULE_IDS)}")
                        try:
                            token = transform(rule_id, row[token_col])
                        except TransitError as exc:
                            raise CsvInputError(f"{source}: row {line}: {exc}") from None
                        writer.writerow((rule_id, token, row[record_col]))
                        count += 1
            except UnicodeDecodeError:
                raise CsvInputError(f"{source}: not valid UTF-8 near row {line + 1}") from None
            except csv.Error as exc:
                raise CsvInputError(f"{source}: malformed CSV near row {line + 1} ({type(exc).__name__})") from None
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    return count
