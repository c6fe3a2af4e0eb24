"""Retention settings refuse what would break a promise (ADR 0013): an audit retention under the
database's 30-day floor, an inbox that forgets before the replay window ends; and the replay
window check itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from exchange.core.errors import ConfigError
from exchange.core.outbox import Outbox
from exchange.core.retention import Rule
from exchange.core.settings import load
from exchange.ingest import retention as ingest_retention
from exchange.ingest.settings import RetentionSettings as IngestRetention
from exchange.normalizer import retention as normalizer_retention
from exchange.normalizer.settings import RetentionSettings as NormalizerRetention

DAY = 86_400
DSN = {"DATABASE_URL": "postgresql://u@h/d", "ENV": "local"}


def test_every_ingest_table_has_a_documented_default_retention() -> None:
    settings = IngestRetention(**DSN)
    rules = {rule.table: rule.retention_seconds for rule in ingest_retention.all_rules(settings)}
    assert rules == {"ingest.idempotency_keys": DAY, "ingest.audit": 6 * 365 * DAY, "ingest.outbox": 7 * DAY}


def test_every_normalizer_table_has_a_documented_default_retention() -> None:
    settings = NormalizerRetention(**DSN)
    rules = {rule.table: rule.retention_seconds for rule in normalizer_retention.all_rules(settings)}
    assert rules == {"normalizer.inbox": 35 * DAY, "normalizer.outbox": 7 * DAY}
    assert settings.replay_window_seconds == 30 * DAY


def test_zero_keeps_a_table_whole() -> None:
    settings = IngestRetention(**DSN, INGEST_AUDIT_RETENTION_SECONDS="0", RELAY_OUTBOX_RETENTION_SECONDS="0")
    assert [rule.table for rule in ingest_retention.all_rules(settings)] == ["ingest.idempotency_keys"]


@pytest.mark.parametrize("seconds", ["1", str(29 * DAY)])
def test_an_audit_retention_under_the_floor_is_refused_in_one_line(seconds: str) -> None:
    with pytest.raises(ConfigError, match=r"INGEST_AUDIT_RETENTION_SECONDS must be 0 .* or at least 30 days"):
        load(IngestRetention, **DSN, INGEST_AUDIT_RETENTION_SECONDS=seconds)


@pytest.mark.parametrize(
    ("inbox", "window"),
    [(30 * DAY, 30 * DAY), (7 * DAY, 30 * DAY), (35 * DAY, 0)],
)
def test_an_inbox_that_forgets_before_the_replay_window_ends_is_refused(inbox: int, window: int) -> None:
    env = {"NORMALIZER_INBOX_RETENTION_SECONDS": str(inbox), "NORMALIZER_REPLAY_WINDOW_SECONDS": str(window)}
    with pytest.raises(ConfigError, match="must be longer than NORMALIZER_REPLAY_WINDOW_SECONDS"):
        load(NormalizerRetention, **DSN, **env)


def test_an_inbox_kept_whole_allows_an_unlimited_replay() -> None:
    settings = load(
        NormalizerRetention, **DSN, NORMALIZER_INBOX_RETENTION_SECONDS="0", NORMALIZER_REPLAY_WINDOW_SECONDS="0"
    )
    normalizer_retention.check_replay_window(settings, datetime(2001, 1, 1, tzinfo=UTC))
    assert normalizer_retention.inbox_rule(settings) is None


def test_a_replay_before_the_window_is_refused_and_one_inside_allowed() -> None:
    settings = NormalizerRetention(**DSN)
    now = datetime(2026, 12, 5, tzinfo=UTC)
    normalizer_retention.check_replay_window(settings, now - timedelta(days=30), now)
    with pytest.raises(normalizer_retention.ReplayTooOld, match=r"before the replay window \(30 days"):
        normalizer_retention.check_replay_window(settings, now - timedelta(days=30, seconds=1), now)


def test_rules_refuse_odd_tables_and_non_positive_retention() -> None:
    with pytest.raises(ConfigError):
        Rule("audit; DROP TABLE x", 1.0, "d", "e", "o")
    with pytest.raises(ConfigError):
        Rule("ingest.audit", 0.0, "d", "e", "o")
    assert Outbox("ingest.outbox").retention_rule is None
    rule = Outbox("ingest.outbox", retention_seconds=60.0, prune_batch=7).retention_rule
    assert rule is not None and rule.params == (60.0,) and rule.batch == 7
