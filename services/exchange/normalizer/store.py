"""Postgres side of the normalizer: one transaction per batch for canonical rows, inbox and outbox.

`write_batch()` first claims each event id in the inbox (`ON CONFLICT DO NOTHING`): an event seen
before (redelivery, replay) writes nothing else. Canonical rows are upserts keyed by
deterministic ids and only touch a row whose values change, so re-processing the same bytes
leaves the canonical state exactly as it was. Rows are written in foreign-key order, one
statement per table and column set, sorted by id.
"""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from exchange.normalizer.events import normalized_event
from exchange.normalizer.model import ENTITY_TABLES, FACT_TABLES, RAW_ONLY_TABLE, Outcome, Row

TABLE_ORDER = ("subjects", "patients", *FACT_TABLES, *ENTITY_TABLES, RAW_ONLY_TABLE)
_NO_TENANT = frozenset({"subjects"})
_PLACEHOLDER_OK = frozenset({"patients", "encounters"})


_INBOX = """
INSERT INTO normalizer.inbox (event_id, record_id, topic, kafka_partition, kafka_offset)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::bigint[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""
_RECORD_COLUMNS = (
    "tenant", "source_format", "record_type", "schema_version", "canonical_version",
    "object_bucket", "object_key", "object_sha256", "line", "received_at",
)  # fmt: skip
_RECORD_TYPES = ("uuid", "text", "text", "text", "text", "text", "text", "text", "text", "int", "timestamptz")
_RECORDS = f"""
INSERT INTO canonical.records (id, {", ".join(_RECORD_COLUMNS)})
SELECT * FROM unnest({", ".join(f"${i}::{t}[]" for i, t in enumerate(_RECORD_TYPES, start=1))})
ON CONFLICT DO NOTHING
"""
# The record ids, whoever wrote them first (a replay lands on the original event's record).
_RECORD_IDS = """
SELECT r.id, r.tenant, r.object_key, r.line FROM canonical.records r
  JOIN unnest($1::text[], $2::text[], $3::int[]) AS k(tenant, object_key, line)
    ON r.tenant = k.tenant AND r.object_key = k.object_key AND r.line = k.line
"""
_SUBJECT = """
INSERT INTO canonical.subjects AS s (id, token_key_id, t1, t2, t3, t4, t5, birth_year, age_over_89, sex, zip3)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (id) DO UPDATE SET
    age_over_89 = s.age_over_89 OR EXCLUDED.age_over_89,
    birth_year = CASE WHEN s.age_over_89 OR EXCLUDED.age_over_89 THEN NULL
                      ELSE COALESCE(EXCLUDED.birth_year, s.birth_year) END,
    sex = COALESCE(EXCLUDED.sex, s.sex),
    zip3 = COALESCE(EXCLUDED.zip3, s.zip3),
    updated_at = now()
WHERE (s.age_over_89 OR EXCLUDED.age_over_89, COALESCE(EXCLUDED.sex, s.sex), COALESCE(EXCLUDED.zip3, s.zip3),
       CASE WHEN s.age_over_89 OR EXCLUDED.age_over_89 THEN NULL ELSE COALESCE(EXCLUDED.birth_year, s.birth_year) END)
      IS DISTINCT FROM (s.age_over_89, s.sex, s.zip3, s.birth_year)
"""
_SUBJECT_COLUMNS = ("id", "token_key_id", "t1", "t2", "t3", "t4", "t5", "birth_year", "age_over_89", "sex", "zip3")
_OUTBOX = """
INSERT INTO normalizer.outbox (event_id, record_id, topic, payload, correlation_id, traceparent)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::text[], $6::text[])
ON CONFLICT (event_id) DO NOTHING
"""


@functools.cache
def upsert_sql(table: str, columns: tuple[str, ...], upsert: bool) -> str:
    """INSERT … ON CONFLICT (id) of every row of a group in one statement (`$1`: the rows as a
    JSON array of objects, typed by the table's own row type) that updates only when a value
    changes (or inserts only). One statement, not one execution a row: see docs/performance.md."""
    names = ", ".join(columns)
    head = (
        f"INSERT INTO canonical.{table} AS t ({names}) SELECT {names} "
        f"FROM jsonb_populate_recordset(NULL::canonical.{table}, $1::text::jsonb) ON CONFLICT (id) "
    )
    if not upsert:
        return head + "DO NOTHING"
    changing = [c for c in columns if c not in ("id", "tenant")]
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in changing)
    old = ", ".join(f"t.{c}" for c in changing)
    new = ", ".join(f"EXCLUDED.{c}" for c in changing)
    return f"{head}DO UPDATE SET {sets}, updated_at = now() WHERE ROW({old}) IS DISTINCT FROM ROW({new})"


def _group(outcomes: Iterable[tuple[Outcome, uuid.UUID]]) -> dict[tuple[str, tuple[str, ...], bool], list[list[Any]]]:
    """Rows grouped by (table, columns, upsert), placeholders first, each group sorted by id."""
    groups: dict[tuple[str, tuple[str, ...], bool], dict[uuid.UUID, list[Any]]] = defaultdict(dict)
    for outcome, record_id in outcomes:
        for table, entity in outcome.mapped.placeholders:
            if table in _PLACEHOLDER_OK:
                groups[(table, ("id", "tenant"), False)].setdefault(entity, [entity, outcome.tenant])
        rows: list[Row] = outcome.mapped.rows
        for row in rows:
            values = dict(row.values)
            if row.table not in _NO_TENANT:
                values["tenant"] = outcome.tenant
                if row.upsert:
                    values["record_id"] = record_id
            columns = tuple(values)
            # The last row for an id in a batch wins, as it would one event after the other.
            groups[(row.table, columns, row.upsert)][values["id"]] = list(values.values())
    order = {t: i for i, t in enumerate(TABLE_ORDER)}
    # Foreign-key order by table; within a table, inserts-if-absent (placeholders) before upserts.
    keys = sorted(groups, key=lambda k: (order[k[0]], k[2], k[1]))
    return {k: [groups[k][i] for i in sorted(groups[k])] for k in keys}


def _json_default(value: Any) -> str:
    """What orjson leaves: numbers are `Decimal`s (a JSON string, read by Postgres as exactly that
    numeric) and record ids come back from asyncpg as its own UUID type."""
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    raise TypeError(type(value).__name__)


async def write_batch(conn: asyncpg.Connection, outcomes: Sequence[Outcome], out_topic: str) -> list[Outcome]:
    """Write `outcomes` in the caller's transaction; returns those whose event id was new."""
    if not outcomes:
        return []
    new_ids = {
        r["event_id"]
        for r in await conn.fetch(
            _INBOX,
            [o.event_id for o in outcomes],
            [o.record_id for o in outcomes],
            [o.topic for o in outcomes],
            [o.partition for o in outcomes],
            [o.offset for o in outcomes],
        )
    }
    fresh = []
    for o in outcomes:  # a duplicate inside the batch counts once, like one after the other
        if o.event_id in new_ids:
            new_ids.discard(o.event_id)
            fresh.append(o)
    with_ids: list[tuple[Outcome, uuid.UUID]] = []
    if fresh:
        arrays = [[o.record[c] for o in fresh] for c in _RECORD_COLUMNS]
        await conn.execute(_RECORDS, [o.record_id for o in fresh], *arrays)
        found = await conn.fetch(_RECORD_IDS, arrays[0], arrays[6], arrays[8])
        ids = {(r["tenant"], r["object_key"], r["line"]): r["id"] for r in found}
        with_ids = [(o, ids[(o.record["tenant"], o.record["object_key"], o.record["line"])]) for o in fresh]
    for (table, columns, upsert), rows in _group(with_ids).items():
        if table == "subjects":
            assert columns == _SUBJECT_COLUMNS, "subject rows are built by mapping.bind_subjects"
            await conn.executemany(_SUBJECT, rows)
        else:
            document = orjson.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=_json_default)
            await conn.execute(upsert_sql(table, columns, upsert), document.decode())
    if with_ids:
        payloads = [normalized_event(o, rid) for o, rid in with_ids]
        await conn.execute(
            _OUTBOX,
            [uuid.UUID(p["event_id"]) for p in payloads],
            [rid for _, rid in with_ids],
            [out_topic] * len(payloads),
            payloads,
            [o.correlation_id for o, _ in with_ids],
            [o.traceparent for o, _ in with_ids],
        )
    return fresh
