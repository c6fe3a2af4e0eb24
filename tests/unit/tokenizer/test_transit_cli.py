"""`exchange tokenize transit key|encode|decode`: two parties with their own secrets, through the real CLI."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from exchange.cli.main import app

PEOPLE_HEADER = ("RecordId", "FirstName", "LastName", "BirthDate", "Sex", "PostalCode", "SSN")
CANARY_SSN = "876-54-3219"
BATCH_1 = [
    ("a1", "Qwertzuiop", "Canarysson", "1961-07-13", "F", "02139", CANARY_SSN),
    ("a2", "Bob", "Builder", "1970-01-01", "M", "98004", "345-67-8901"),
]
# The same first person again, spelled and formatted differently, next to someone new.
BATCH_2 = [
    ("b1", "Zed", "Other", "1980-02-02", "M", "10001", "456-78-9012"),
    ("b2", "qwertzuiop ", "CANARYSSON", "07/13/1961", "female", "02139-1234", "876543219"),
]


def exchange(*args):
    return CliRunner().invoke(app, list(map(str, args)))


def write_people(path, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(PEOPLE_HEADER)
        w.writerows(rows)
    return path


def read_tokens(path):
    with path.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["RuleId", "Token", "RecordId"]
    return {(rule, record): token for rule, token, record in rows[1:]}


@pytest.fixture
def parties(tmp_path):
    """Secret files of sender A, recipient B and another recipient C."""
    secrets = {}
    for name in ("a", "b", "c"):
        secrets[name] = tmp_path / f"{name}.secret"
        secrets[name].write_text(f"party-{name}-secret-0123456789abcdef\n")
    return secrets


@pytest.fixture
def delivered(tmp_path, parties):
    """A tokenizes two batches, exports B's key, and encodes both batches for B."""
    assert (
        exchange(
            "tokenize", "transit", "key", "-r", "hospital-b", "--secret-file", parties["a"], "-o", tmp_path / "b.key"
        ).exit_code
        == 0
    )
    for n, rows in ((1, BATCH_1), (2, BATCH_2)):
        people = write_people(tmp_path / f"people{n}.csv", rows)
        result = exchange("tokenize", "-i", people, "-o", tmp_path / f"t{n}.csv", "--secret-file", parties["a"], "-q")
        assert result.exit_code == 0, result.output
        result = exchange(
            "tokenize", "transit", "encode", "-r", "hospital-b", "--secret-file", parties["a"],
            "-i", tmp_path / f"t{n}.csv", "-o", tmp_path / f"for-b{n}.csv",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert result.output.startswith("10 tokens -> ")
    return tmp_path


def decode(tmp_path, key, secret, n, out):
    return exchange(
        "tokenize", "transit", "decode", "-k", key, "--secret-file", secret,
        "-i", tmp_path / f"for-b{n}.csv", "-o", tmp_path / out,
    )  # fmt: skip


def test_the_same_person_links_at_the_intended_recipient_across_batches(delivered, parties):
    for n in (1, 2):
        result = decode(delivered, delivered / "b.key", parties["b"], n, f"site{n}.csv")
        assert result.exit_code == 0, result.output
        assert result.output.startswith("10 site tokens -> ")
    site1, site2 = read_tokens(delivered / "site1.csv"), read_tokens(delivered / "site2.csv")
    platform1 = read_tokens(delivered / "t1.csv")
    for rule in ("T1", "T2", "T3", "T4", "T5"):
        assert site1[rule, "a1"] == site2[rule, "b2"]  # same person, two batches
        assert site1[rule, "a1"] != site1[rule, "a2"]  # different people stay apart
        assert site1[rule, "a1"] != platform1[rule, "a1"]  # the recipient's own token space
    transit = read_tokens(delivered / "for-b1.csv")
    assert not set(transit.values()) & set(platform1.values())


def test_another_recipients_key_refuses_the_delivery_in_one_line(delivered, parties):
    key_c = delivered / "c.key"
    assert (
        exchange("tokenize", "transit", "key", "-r", "hospital-c", "--secret-file", parties["a"], "-o", key_c).exit_code
        == 0
    )
    result = decode(delivered, key_c, parties["c"], 1, "site-c.csv")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: {delivered / 'for-b1.csv'}: row 2: transit token does not belong to this recipient and rule"
    ]
    assert not (delivered / "site-c.csv").exists()


def test_a_tampered_token_is_refused_by_row(delivered, parties):
    path = delivered / "for-b1.csv"
    lines = path.read_text().splitlines()
    rule, token, record = lines[3].split(",")
    flipped = ("A" if token[10] != "A" else "B").join((token[:10], token[11:]))
    lines[3] = ",".join((rule, flipped, record))
    path.write_text("\n".join(lines) + "\n")
    result = decode(delivered, delivered / "b.key", parties["b"], 1, "site.csv")
    assert result.exit_code == 1
    assert "row 4: transit token does not belong" in result.output and flipped not in result.output


def test_no_secret_key_or_token_is_ever_printed(delivered, parties):
    key_text = (delivered / "b.key").read_text()
    outputs = [decode(delivered, delivered / "b.key", parties["b"], 1, "s.csv").output]
    outputs.append(
        exchange(
            "tokenize", "transit", "key", "-r", "hospital-b", "--secret-file", parties["a"], "-o", delivered / "b.key"
        ).output
    )
    outputs.append(
        exchange(
            "tokenize",
            "transit",
            "encode",
            "-r",
            "bad id",
            "--secret-file",
            parties["a"],
            "-i",
            delivered / "t1.csv",
            "-o",
            delivered / "x.csv",
        ).output
    )
    tokens = set(read_tokens(delivered / "t1.csv").values()) | set(read_tokens(delivered / "s.csv").values())
    for output in outputs:
        assert len(output.strip().splitlines()) == 1
        assert key_text.split('"key":"')[1][:20] not in output
        assert "secret-0123456789" not in output
        assert not any(t in output for t in tokens)
    assert outputs[1].startswith("error: ") and "exists" in outputs[1]
    assert outputs[2].startswith("error: recipient id must be")


ENC = "encode -r hospital-b -o {t}/x.csv --secret-file {a} -i"
DEC = "decode -i {t}/for-b1.csv -o {t}/x.csv --secret-file {a} -k"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (ENC + " {t}/absent.csv", "no such file"),
        ("encode -r hospital-b --secret-file {a} -i {t}/t1.csv -o {t}/t1.csv", "must differ"),
        (ENC + " {t}/people1.csv", "missing column(s): RuleId, Token"),
        (DEC + " {t}/absent.key", "transit key file not found"),
        (DEC + " {t}/t1.csv", "is not JSON"),
        ("key -r hospital-b -o {t}/new.key", "no secret: pass --secret-file"),
    ],
)
def test_mistakes_are_one_line_errors(delivered, parties, monkeypatch, args, message):
    monkeypatch.delenv("TOKENIZATION_SECRET_FILE", raising=False)
    result = exchange("tokenize", "transit", *args.format(t=delivered, a=parties["a"]).split())
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output


def test_tokenize_without_options_or_sub_command_says_what_to_pass():
    result = exchange("tokenize")
    assert result.exit_code == 1
    assert result.output.strip() == "error: pass --input PEOPLE.csv and --output TOKENS.csv (or a sub-command: transit)"
