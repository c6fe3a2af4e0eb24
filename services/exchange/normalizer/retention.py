"""The normalizer's bounded tables as `exchange.core.retention` rules, and the replay window that
depends on them (ADR 0013).

- `normalizer.inbox`: event ids processed longer ago than `NORMALIZER_INBOX_RETENTION_SECONDS`
  are deleted (through the `processed_at` index, migration 0005). The inbox is what makes a
  replay harmless, so a replay may not reach further back than `NORMALIZER_REPLAY_WINDOW_SECONDS`,
  which the settings keep shorter than the inbox retention (`check_replay_window`).
- `normalizer.outbox`: published rows older than `NORMALIZER_OUTBOX_RETENTION_SECONDS` (pruned
  by the worker's relay).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from exchange.core.errors import ExchangeError
from exchange.core.outbox import Outbox
from exchange.core.retention import Rule
from exchange.normalizer.settings import RetentionSettings

OUTBOX = "normalizer.outbox"


class ReplayTooOld(ExchangeError):
    """A replay window that starts before the inbox still remembers what was processed."""


def inbox_rule(settings: RetentionSettings) -> Rule | None:
    keep = settings.inbox_retention_seconds
    if not keep:
        return None
    expired = "processed_at < now() - make_interval(secs => $1)"
    return Rule(
        "normalizer.inbox",
        keep,
        delete_sql="DELETE FROM normalizer.inbox WHERE event_id = ANY(ARRAY(SELECT event_id FROM normalizer.inbox"
        f" WHERE {expired} ORDER BY processed_at LIMIT $2 FOR UPDATE SKIP LOCKED))",
        expired_sql=f"SELECT count(*) FROM normalizer.inbox WHERE {expired}",
        oldest_sql="SELECT extract(epoch FROM now() - min(processed_at))::float8 FROM normalizer.inbox",
        params=(float(keep),),
    )


def outbox_rule(settings: RetentionSettings) -> Rule | None:
    """The relay's rule (see `exchange.normalizer.relay`), None when outbox rows are kept."""
    return Outbox(OUTBOX, retention_seconds=settings.outbox_retention_seconds or None).retention_rule


def all_rules(settings: RetentionSettings) -> list[Rule]:
    """Every normalizer table: `exchange retention run normalizer`."""
    return [rule for rule in (inbox_rule(settings), outbox_rule(settings)) if rule is not None]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def replay_window_start(settings: RetentionSettings, now: datetime) -> datetime:
    """The earliest upload time a replay may start from (the epoch when the window is 0)."""
    window = settings.replay_window_seconds
    return now - timedelta(seconds=window) if window else _EPOCH


def check_replay_window(settings: RetentionSettings, since: datetime, now: datetime | None = None) -> None:
    """Raise ReplayTooOld when `since` is before the replay window (none when the window is 0)."""
    window = settings.replay_window_seconds
    earliest = replay_window_start(settings, now or datetime.now(UTC))
    if since < earliest:
        raise ReplayTooOld(
            f"--since {since.isoformat()} is before the replay window ({window / 86_400:g} days, "
            f"NORMALIZER_REPLAY_WINDOW_SECONDS; earliest {earliest.replace(microsecond=0).isoformat()}): the inbox "
            "no longer holds older event ids, so their records would be processed twice"
        )
