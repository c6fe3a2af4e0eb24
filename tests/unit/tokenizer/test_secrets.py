"""Secret loading: file or env, key id, refusal of weak secrets, never shown."""

from __future__ import annotations

import hashlib

import pytest

from exchange.core.errors import ConfigError
from exchange.tokenizer.secrets import TokenizationSecret, load_secret

STRONG = "k8s-mounted-secret-0123456789abcdef"


def test_a_file_secret_drops_only_its_trailing_line_break(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(STRONG.encode() + b"\n")
    secret = load_secret(path)
    assert secret.value == STRONG.encode()
    assert secret.fingerprint == hashlib.sha256(STRONG.encode()).hexdigest()
    assert secret.key_id == secret.fingerprint[:8]


def test_the_file_wins_over_the_environment_value(tmp_path):
    path = tmp_path / "secret"
    path.write_text(STRONG)
    assert load_secret(path, "another-secret-value-123456").value == STRONG.encode()


def test_an_explicit_key_id_is_used_and_checked():
    assert load_secret(None, STRONG, "2025-q1").key_id == "2025-q1"
    with pytest.raises(ConfigError, match="KEY_ID"):
        load_secret(None, STRONG, "bad key id!")


def test_rotation_changes_the_key_id():
    assert load_secret(None, STRONG).key_id != load_secret(None, STRONG + "-rotated").key_id


@pytest.mark.parametrize("value", ["changeme", "secret", "short-secret"])
def test_weak_secrets_are_refused_outside_local(value):
    with pytest.raises(ConfigError):
        load_secret(None, value, strict=True)
    assert load_secret(None, value, strict=False).value == value.encode()


def test_missing_or_unreadable_secrets_are_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no tokenization secret"):
        load_secret(None, None)
    with pytest.raises(ConfigError, match="not found"):
        load_secret(tmp_path / "absent")
    with pytest.raises(ConfigError, match="unreadable"):
        load_secret(tmp_path)  # a directory
    empty = tmp_path / "empty"
    empty.write_bytes(b"\n")
    with pytest.raises(ConfigError, match="empty"):
        load_secret(empty, strict=False)


def test_the_value_never_shows_in_repr_or_str():
    secret = TokenizationSecret.from_bytes(STRONG.encode())
    assert STRONG not in repr(secret)
    assert STRONG not in str(secret)
    assert secret.key_id in str(secret)
