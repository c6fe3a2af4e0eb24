"""Bounded tables: one retention mechanism for every table that grows with traffic (ADR 0013).

A `Rule` says how one table's expired rows are found and deleted: `delete_sql` deletes at most
one batch of them (its last parameter is the batch size), `expired_sql` counts them (a dry run),
`oldest_sql` gives the age in seconds of the oldest row (0 when empty). `enforce` runs the
deletes batch by batch, each batch its own short transaction (`delete_in_batches`), so no lock is
held long; several processes may enforce at once when the SQL skips locked rows. `Pruner` runs
the rules of one process every `every` seconds and, after each round, sets the size and
oldest-row gauges of `TableMetrics`. The CLI (`exchange retention run`) calls `enforce` once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge

from exchange.core.db import delete_in_batches
from exchange.core.errors import ConfigError
from exchange.core.logging import get_logger

log = get_logger(__name__)
_TABLE = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
# Planner estimate of a table's rows (ANALYZE and autovacuum keep it near the truth): a count(*) of
# a large table every round would cost more than the deletes. -1 (never analysed) reads as 0.
_ROWS_SQL = "SELECT greatest(reltuples, 0)::float8 FROM pg_class WHERE oid = $1::regclass"


@dataclass(frozen=True)
class Rule:
    """How one table is kept bounded."""

    table: str
    """Schema-qualified table; also the `table` label of its metrics."""
    retention_seconds: float
    """What the documentation promises: rows are kept at least this long (informational for rules
    whose rows carry their own expiry)."""
    delete_sql: str
    """DELETE of at most one batch of expired rows; parameters `params` then the batch size."""
    expired_sql: str
    """SELECT count(*) of the rows `delete_sql` would delete; parameters `params`."""
    oldest_sql: str
    """SELECT of the oldest row's age in seconds (NULL or 0 when the table is empty); no parameters
    but `oldest_params`."""
    params: tuple[object, ...] = ()
    oldest_params: tuple[object, ...] = ()
    batch: int = 5000
    """Rows deleted per transaction."""
    counted: bool = False
    """`delete_sql` is a SELECT returning how many rows it deleted (a function that deletes with
    its owner's rights), not a DELETE."""

    def __post_init__(self) -> None:
        if not _TABLE.match(self.table):
            raise ConfigError("a retention table must be a schema-qualified plain identifier")
        if self.retention_seconds <= 0 or self.batch < 1:
            raise ConfigError(f"retention of {self.table} and its batch must be positive")


async def enforce(
    pool: asyncpg.Pool,
    rules: Sequence[Rule],
    *,
    dry_run: bool = False,
    deleted: Callable[[str, int], object] | None = None,
) -> dict[str, int]:
    """Delete (or, `dry_run`, count) every rule's expired rows; returns the count per table.
    `deleted(table, n)` hears each batch actually deleted."""
    counts: dict[str, int] = {}
    for rule in rules:
        if dry_run:
            counts[rule.table] = int(await pool.fetchval(rule.expired_sql, *rule.params) or 0)
            continue
        heard = (lambda n, table=rule.table: deleted(table, n)) if deleted is not None else None
        if rule.counted:
            counts[rule.table] = await _call_in_batches(pool, rule, heard)
        else:
            counts[rule.table] = await delete_in_batches(
                pool, rule.delete_sql, *rule.params, batch=rule.batch, deleted=heard
            )
    return counts


async def _call_in_batches(pool: asyncpg.Pool, rule: Rule, deleted: Callable[[int], object] | None) -> int:
    """`delete_in_batches` for a rule whose delete is a function returning its count."""
    total = 0
    while True:
        count = int(await pool.fetchval(rule.delete_sql, *rule.params, rule.batch) or 0)
        total += count
        if deleted is not None and count:
            deleted(count)
        if count < rule.batch:
            return total


@dataclass(frozen=True)
class TableStats:
    rows: float
    """Estimated rows (`pg_class.reltuples`)."""
    oldest_age_seconds: float
    """Age of the oldest row, 0 when the table is empty."""
    retention_seconds: float
    """The table's retention (the rule's), so an alert can compare the two."""


async def stats(pool: asyncpg.Pool, rules: Sequence[Rule]) -> dict[str, TableStats]:
    """Size and oldest-row age of each rule's table."""
    result = {}
    for rule in rules:
        rows = await pool.fetchval(_ROWS_SQL, rule.table)
        oldest = await pool.fetchval(rule.oldest_sql, *rule.oldest_params)
        result[rule.table] = TableStats(float(rows or 0), max(float(oldest or 0), 0.0), rule.retention_seconds)
    return result


class TableMetrics:
    """`exchange_table_rows`, `exchange_table_oldest_row_age_seconds` and
    `exchange_table_retention_seconds` by table (read from Postgres by whichever process last
    looked: `mostrecent` across server processes), and `exchange_retention_deleted_rows_total`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = Gauge(
            "exchange_table_rows", "Estimated rows of a bounded table (pg_class.reltuples).", ["table"],
            registry=registry, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.oldest = Gauge(
            "exchange_table_oldest_row_age_seconds", "Age of the oldest row of a bounded table (0 when empty).",
            ["table"], registry=registry, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.retention = Gauge(
            "exchange_table_retention_seconds", "Retention of a bounded table (rows older are deleted).", ["table"],
            registry=registry, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.deleted = Counter(
            "exchange_retention_deleted_rows_total", "Rows deleted by retention, by table.", ["table"],
            registry=registry,
        )  # fmt: skip

    def observe(self, found: Mapping[str, TableStats]) -> None:
        for table, stat in found.items():
            self.rows.labels(table).set(stat.rows)
            self.oldest.labels(table).set(stat.oldest_age_seconds)
            self.retention.labels(table).set(stat.retention_seconds)


class Pruner:
    """Enforce `rules` every `every` seconds and refresh `metrics` after each round, until
    cancelled or `stop` is set. `also` hears each deleted batch besides the metrics (a service's
    older per-table counters)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        rules: Sequence[Rule],
        every: float,
        metrics: TableMetrics | None = None,
        also: Mapping[str, Callable[[int], object]] | None = None,
    ) -> None:
        if every <= 0:
            raise ConfigError("the retention interval must be positive")
        self.pool, self.rules, self.every, self.metrics = pool, list(rules), every, metrics
        self.also = dict(also or {})

    def _deleted(self, table: str, count: int) -> None:
        if self.metrics is not None:
            self.metrics.deleted.labels(table).inc(count)
        if table in self.also:
            self.also[table](count)

    async def round(self) -> dict[str, int]:
        """One pass: delete what expired, then read the gauges; returns the deletes per table."""
        counts = await enforce(self.pool, self.rules, deleted=self._deleted)
        if self.metrics is not None:
            self.metrics.observe(await stats(self.pool, self.rules))
        return counts

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Postgres away (DB_ERRORS) or a bug: logged, the next round retries
                log.warning("retention_failed", error_class=type(exc).__name__)
            try:
                await asyncio.wait_for(stop.wait(), self.every)
            except TimeoutError:
                pass
