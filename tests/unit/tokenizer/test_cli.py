"""`exchange tokenize`: OpenToken columns in, RuleId,Token,RecordId out, metadata, one-line errors."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest
import typer
from tok_oracle import Oracle
from typer.testing import CliRunner

from exchange.cli.tokenize import tokenize_command
from exchange.tokenizer.engine import PersonAttributes

SECRET = "HashingKey"  # OpenToken's sample secret; the CLI allows short secrets deliberately
ROWS = [
    # an OpenToken-style sample: clean rows, placeholders, out-of-range dates, Canadian codes
    ("a1", "2000-01-01", "John", "Doe", "980", "Male", "123-45-6789"),
    ("a2", "1951-10-22", "Joe", "Price", "15635", "Male", "172-10-0983"),
    ("a3", "", "Samuel", "Jones", "569", "Male", "475-22-8158"),
    ("a4", "2013-09-07", "Unknown", "Unknown", "00792", "Female", "192-64-6083"),
    ("a5", "1992-08-22", "Mike", "Knight IV", "26122", "Male", "510-40-8581"),
    ("a6", "1909-03-16", "George", "Howell", "65084", "Male", "017-13-7040"),
    ("a7", "2015-07-22", "Sister Joanna", "Baker", "75432", "Male", "262-61-0918"),
    ("a8", "1986-09-06", "Dr. Kevin III", "Miller", "88517", "Male", "738389875"),
    ("a9", "1951-07-15", "Andrew", "Stokes", "75740-2343", "Male", "594-67-7736"),
    ("a10", "2050-09-22", "Stephanie", "Parker", "68817", "Female", "577-89-7731"),
    ("a11", "1985-03-15", "Sarah", "MacDonald", "K1B", "Female", "234-56-7890"),
    ("a12", "1995-05-30", "David", "Singh", "t2x1v4", "m", "456-78-9012"),
    ("a13", "1963-03-27", "Jill", "Mills", "66717", "f", "765-72-14198"),
]
HEADER = ("RecordId", "BirthDate", "FirstName", "LastName", "PostalCode", "Sex", "SocialSecurityNumber")


@pytest.fixture
def app():
    cli = typer.Typer()
    cli.command("tokenize")(tokenize_command)
    cli.command("noop")(lambda: None)  # keep "tokenize" a sub-command, as in `exchange tokenize`
    return cli


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    return path


def write(path, header, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def run(app, *args):
    return CliRunner().invoke(app, ["tokenize", *map(str, args)])


def test_tokens_match_openlinktoken_and_metadata_is_written(app, tmp_path, secret_file):
    src = write(tmp_path / "people.csv", HEADER, ROWS)
    out = tmp_path / "tokens.csv"
    result = run(app, "--input", src, "--output", out, "--secret-file", secret_file, "--quiet")
    assert result.exit_code == 0, result.output
    with out.open() as f:
        got = list(csv.reader(f))
    assert got[0] == ["RuleId", "Token", "RecordId"]
    oracle = Oracle(SECRET)
    expected = []
    for rid, dob, first, last, postal, sex, ssn in ROWS:
        tokens = oracle.tokens(PersonAttributes(first, last, dob, sex, postal, ssn))
        expected += [[f"T{i + 1}", t, rid] for i, t in enumerate(tokens)]
    assert got[1:] == expected

    meta = json.loads((tmp_path / "tokens.csv.metadata.json").read_text())
    assert meta["TotalRows"] == len(ROWS)
    assert meta["HashingSecretHash"] == hashlib.sha256(SECRET.encode()).hexdigest()
    assert meta["KeyId"] == meta["HashingSecretHash"][:8]
    assert meta["InvalidAttributesByType"]["BirthDate"] == 2  # 1909 and 2050
    assert meta["MissingAttributesByType"]["BirthDate"] == 1
    assert meta["BlankTokensByRule"]["T5"] == 1  # Unknown/Unknown
    assert SECRET not in json.dumps(meta)
    assert SECRET not in result.output


def test_headers_are_case_insensitive_aliases_in_any_order(app, tmp_path, secret_file):
    header = ("ssn", "GENDER", "zipcode", "dateofbirth", "surname", "givenname", "id", "extra")
    rows = [(r[6], r[5], r[4], r[1], r[3], r[2], r[0], "ignored") for r in ROWS]
    src = write(tmp_path / "aliases.csv", header, rows)
    canonical = write(tmp_path / "canonical.csv", HEADER, ROWS)
    for name in ("aliases", "canonical"):
        source = src if name == "aliases" else canonical
        assert (
            run(app, "-i", source, "-o", tmp_path / f"{name}.out.csv", "--secret-file", secret_file, "-q").exit_code
            == 0
        )
    assert (tmp_path / "aliases.out.csv").read_text() == (tmp_path / "canonical.out.csv").read_text()


def test_a_missing_column_is_a_one_line_error(app, tmp_path, secret_file):
    src = write(tmp_path / "people.csv", HEADER[:-1], [r[:-1] for r in ROWS])
    result = run(app, "-i", src, "-o", tmp_path / "t.csv", "--secret-file", secret_file)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: missing column(s): SocialSecurityNumber (or NationalIdentificationNumber/SSN)"
    ]
    assert not (tmp_path / "t.csv").exists()


def test_an_unreadable_input_is_a_one_line_error(app, tmp_path, secret_file):
    result = run(app, "-i", tmp_path / "absent.csv", "-o", tmp_path / "t.csv", "--secret-file", secret_file)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: cannot read {tmp_path / 'absent.csv'}: no such file"]


def test_a_non_utf8_input_is_a_one_line_error_without_values(app, tmp_path, secret_file):
    src = tmp_path / "latin1.csv"
    src.write_bytes(",".join(HEADER).encode() + b"\nr1,2000-01-01,J\xe9r\xf4me,Doe,980,M,234-56-7890\n")
    result = run(app, "-i", src, "-o", tmp_path / "t.csv", "--secret-file", secret_file)
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "UTF-8" in result.output and "Doe" not in result.output
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "t.csv.partial").exists()


def test_a_missing_secret_is_a_one_line_error(app, tmp_path, monkeypatch):
    monkeypatch.delenv("TOKENIZATION_SECRET_FILE", raising=False)
    src = write(tmp_path / "people.csv", HEADER, ROWS)
    result = run(app, "-i", src, "-o", tmp_path / "t.csv")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: no secret: pass --secret-file FILE (or set TOKENIZATION_SECRET_FILE)"
    ]
    result = run(app, "-i", src, "-o", tmp_path / "t.csv", "--secret-file", tmp_path / "nope")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: tokenization secret file not found: {tmp_path / 'nope'}"]


def test_an_unwritable_output_is_a_one_line_error(app, tmp_path, secret_file):
    src = write(tmp_path / "people.csv", HEADER, ROWS)
    result = run(app, "-i", src, "-o", tmp_path / "no-such-dir" / "t.csv", "--secret-file", secret_file)
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: cannot write")


def test_streams_many_rows_in_chunks(app, tmp_path, secret_file):
    rows = [(f"r{i}", *ROWS[i % len(ROWS)][1:]) for i in range(10_000)]
    src = write(tmp_path / "big.csv", HEADER, rows)
    out = tmp_path / "big.tokens.csv"
    assert run(app, "-i", src, "-o", out, "--secret-file", secret_file, "-q").exit_code == 0
    with out.open() as f:
        assert sum(1 for _ in f) == 1 + 5 * len(rows)
