"""Settings refuse placeholder secrets unless ENV=local and fail in one line naming the variable."""

from __future__ import annotations

import pytest

from exchange.core.errors import ConfigError
from exchange.core.settings import DatabaseSettings, Environment, S3Settings, load


@pytest.mark.parametrize("secret", ["changeme", "password", "", "minioadmin", "dev"])
def test_placeholder_s3_secret_is_refused_outside_local(monkeypatch, secret):
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("S3_ACCESS_KEY_ID", "AKIAREALKEY")
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY", secret)
    with pytest.raises(ConfigError) as err:
        load(S3Settings)
    message = str(err.value)
    assert "S3_SECRET_ACCESS_KEY" in message and "placeholder" in message
    assert "\n" not in message


def test_placeholder_password_inside_a_dsn_is_refused(monkeypatch):
    monkeypatch.setenv("ENV", "staging")
    monkeypatch.setenv("DATABASE_URL", "postgresql://ingest:changeme@db:5432/exchange")
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load(DatabaseSettings)


def test_the_secret_value_never_appears_in_the_error(monkeypatch):
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://ingest:password@db-host-canary/exchange")
    with pytest.raises(ConfigError) as err:
        load(DatabaseSettings)
    assert "db-host-canary" not in str(err.value)


def test_placeholders_are_accepted_when_local(monkeypatch):
    monkeypatch.setenv("ENV", "local")
    monkeypatch.setenv("S3_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY", "changeme")
    settings = load(S3Settings)
    assert settings.env is Environment.LOCAL
    assert settings.s3_secret_access_key.get_secret_value() == "changeme"


def test_a_real_secret_is_accepted_in_production(monkeypatch):
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://ingest:Zq8-long-random@db/exchange")
    assert load(DatabaseSettings).env is Environment.PRODUCTION


def test_a_missing_variable_is_named(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load(DatabaseSettings)


def test_env_defaults_to_production(monkeypatch):
    monkeypatch.delenv("ENV", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:Strong-Pw-1@h/db")
    assert load(DatabaseSettings).env is Environment.PRODUCTION
