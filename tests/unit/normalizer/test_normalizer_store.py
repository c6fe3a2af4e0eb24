"""The writer's SQL and order: foreign keys first, placeholders before rows, no-op upserts."""

from __future__ import annotations

import uuid
from decimal import Decimal

import asyncpg
import orjson
import pytest

from exchange.normalizer.model import Mapped, Outcome, Row
from exchange.normalizer.store import _group, _json_default, upsert_sql


def test_an_upsert_only_touches_a_row_whose_values_change():
    sql = upsert_sql("encounters", ("id", "status", "tenant", "record_id"), True)
    assert "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, record_id = EXCLUDED.record_id" in sql
    assert "WHERE ROW(t.status, t.record_id) IS DISTINCT FROM ROW(EXCLUDED.status, EXCLUDED.record_id)" in sql
    assert upsert_sql("patients", ("id", "tenant"), False).endswith("ON CONFLICT (id) DO NOTHING")


def test_rows_are_grouped_in_foreign_key_order_with_placeholders_first():
    subject, patient, encounter = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    mapped = Mapped(record_type="observation", canonical_version="v2")
    mapped.placeholders = [("encounters", encounter)]
    mapped.rows = [
        Row("observations", {"id": uuid.uuid4(), "patient_id": patient, "encounter_id": encounter}),
        Row("patients", {"id": patient, "subject_id": subject, "deceased": None}, upsert=False),
        Row("subjects", {"id": subject}),
    ]
    outcome = Outcome(uuid.uuid4(), uuid.uuid4(), "acme", "t", 0, 0, {}, mapped, "c", "tp")
    record_id = uuid.uuid4()
    groups = list(_group([(outcome, record_id)]))
    assert [(table, upsert) for table, _, upsert in groups] == [
        ("subjects", True), ("patients", False), ("encounters", False), ("observations", True),
    ]  # fmt: skip
    rows = _group([(outcome, record_id)])
    (observation,) = rows[groups[-1]]
    assert record_id in observation and "acme" in observation  # the writer adds tenant and record id
    (link,) = rows[groups[1]]
    assert record_id not in link  # a link row does not claim the record


def test_a_group_goes_to_postgres_as_one_json_array_with_exact_numbers():
    sql = upsert_sql("observations", ("id", "value_num", "tenant"), True)
    assert "FROM jsonb_populate_recordset(NULL::canonical.observations, $1::text::jsonb)" in sql
    record_id = asyncpg.pgproto.pgproto.UUID(str(uuid.uuid4()))  # what asyncpg hands back
    text = orjson.dumps([{"value_num": Decimal("170.20"), "record_id": record_id}], default=_json_default)
    assert orjson.loads(text) == [{"value_num": "170.20", "record_id": str(record_id)}]
    with pytest.raises(TypeError):
        orjson.dumps([object()], default=_json_default)
