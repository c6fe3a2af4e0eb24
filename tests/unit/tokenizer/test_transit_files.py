"""Transit key files and token CSVs: formats, the Secret-volume layout, one-line errors without values."""

from __future__ import annotations

import csv
import os
import stat

import pytest

from exchange.core.errors import ConfigError
from exchange.tokenizer.csvio import CsvInputError
from exchange.tokenizer.rules import BLANK_TOKEN
from exchange.tokenizer.secrets import TokenizationSecret
from exchange.tokenizer.transit import TransitCodec, TransitError
from exchange.tokenizer.transit_csv import transcode_csv
from exchange.tokenizer.transit_keys import dump_key, load_key_file, load_keys_dir, parse_key, write_key_file

CODEC = TransitCodec.from_secret(TokenizationSecret.from_bytes(b"sender-secret-for-key-file-tests"))
KEY = CODEC.recipient_key("hospital-b")
TOKEN = "q" * 43 + "="


def test_a_written_key_file_reads_back_is_private_and_never_overwritten(tmp_path):
    path = tmp_path / "b.key"
    write_key_file(path, KEY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key_file(path) == KEY
    with pytest.raises(ConfigError, match="exists"):
        write_key_file(path, CODEC.recipient_key("hospital-c"))
    assert load_key_file(path) == KEY


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "is not JSON"),
        (b'{"format": "other/v1", "recipient": "b", "key": "AA"}', "is not an exchange-transit-key/v1"),
        (b'{"format": "exchange-transit-key/v1", "recipient": "b"}', "needs string fields"),
        (b'{"format": "exchange-transit-key/v1", "recipient": "b", "key": "!!!"}', "not base64url"),
        (b'{"format": "exchange-transit-key/v1", "recipient": "b", "key": "QUJD"}', "64 bytes"),
        (b'{"format": "exchange-transit-key/v1", "recipient": "no spaces", "key": "QUJD"}', "recipient id"),
    ],
)
def test_a_bad_key_file_is_a_config_error_naming_the_file(data, message):
    with pytest.raises(ConfigError, match=message) as caught:
        parse_key(data, "keys/sender-a")
    assert "keys/sender-a" in str(caught.value)


def test_a_key_file_error_never_shows_key_bytes():
    broken = dump_key(KEY).replace(b"hospital-b", b"hospital b")
    with pytest.raises(ConfigError) as caught:
        parse_key(broken, "f")
    assert KEY.key.hex() not in str(caught.value)
    assert dump_key(KEY).split(b'"key":"')[1][:20].decode() not in str(caught.value)


def test_a_secret_volume_directory_gives_one_key_per_sender(tmp_path):
    # The layout kubelet writes: files are symlinks into a timestamped directory behind ..data.
    versions = tmp_path / "..2026_12_05_00_00_00.1"
    versions.mkdir()
    (versions / "sender-a").write_bytes(dump_key(KEY))
    (versions / "sender.b").write_bytes(dump_key(CODEC.recipient_key("hospital-b")))
    os.symlink(versions.name, tmp_path / "..data")
    for name in ("sender-a", "sender.b"):
        os.symlink(f"..data/{name}", tmp_path / name)
    keys = load_keys_dir(tmp_path)
    assert sorted(keys) == ["sender-a", "sender.b"]
    assert keys["sender-a"] == KEY


def test_a_bad_keys_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        load_keys_dir(tmp_path / "absent")
    (tmp_path / "sender a").write_bytes(dump_key(KEY))
    with pytest.raises(ConfigError, match="not a sender id"):
        load_keys_dir(tmp_path)


def write_tokens(path, rows, header=("RuleId", "Token", "RecordId")):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_transcoding_keeps_rule_and_record_and_skips_blank_lines(tmp_path):
    src = write_tokens(tmp_path / "in.csv", [("T1", TOKEN, "r1"), (), ("T4", BLANK_TOKEN, "r2")])
    out = tmp_path / "out.csv"
    count = transcode_csv(src, out, lambda rule, token: CODEC.encode("hospital-b", rule, token))
    assert count == 2
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["RuleId", "Token", "RecordId"]
    assert rows[1] == ["T1", CODEC.encode("hospital-b", "T1", TOKEN), "r1"]
    assert rows[2] == ["T4", BLANK_TOKEN, "r2"]


def test_columns_are_found_by_name_in_any_order(tmp_path):
    src = write_tokens(tmp_path / "in.csv", [("r1", TOKEN, "T2")], header=("recordid", "TOKEN", "ruleid"))
    transcode_csv(src, tmp_path / "out.csv", lambda rule, token: rule + token)
    assert list(csv.reader((tmp_path / "out.csv").open()))[1] == ["T2", "T2" + TOKEN, "r1"]


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        ([("T1", TOKEN, "r1")], ("Rule", "Token", "RecordId"), "missing column(s): RuleId"),
        ([("T9", TOKEN, "r1")], ("RuleId", "Token", "RecordId"), "row 2: RuleId is not one of"),
        ([("T1", TOKEN, "r1"), ("T1",)], ("RuleId", "Token", "RecordId"), "row 3 has too few columns"),
        ([("T1", TOKEN, "r1"), ("T2", "secret-looking-value", "r2")], ("RuleId", "Token", "RecordId"), "row 3: "),
    ],
)
def test_bad_rows_fail_by_row_number_without_values_or_partial_output(tmp_path, rows, header, message):
    src = write_tokens(tmp_path / "in.csv", rows, header)
    out = tmp_path / "out.csv"
    with pytest.raises(CsvInputError) as caught:
        transcode_csv(src, out, lambda rule, token: CODEC.encode("hospital-b", rule, token))
    assert message in str(caught.value)
    assert "secret-looking-value" not in str(caught.value) and TOKEN not in str(caught.value)
    assert not out.exists() and not (tmp_path / "out.csv.partial").exists()


def test_a_transform_error_is_reported_as_input_error(tmp_path):
    def refuse(rule: str, token: str) -> str:
        raise TransitError("transit token does not belong to this recipient and rule")

    src = write_tokens(tmp_path / "in.csv", [("T1", TOKEN, "r1")])
    with pytest.raises(CsvInputError, match="row 2: transit token does not belong"):
        transcode_csv(src, tmp_path / "out.csv", refuse)
