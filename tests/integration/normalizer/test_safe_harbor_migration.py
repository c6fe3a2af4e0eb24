"""Migrations 0007 and 0008 on real Postgres (ADR 0014, 0015): stored clinical dates become their years in place,
facts of subjects aged 90+ lose theirs, and the triggers keep it so whatever the arrival order
(a fact before its patient is linked, a subject that turns 90+ later)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from exchange.normalizer.migrations import upgrade

YOUNG_SUBJECT, OLD_SUBJECT = uuid.uuid4(), uuid.uuid4()
YOUNG, OLD = uuid.uuid4(), uuid.uuid4()

_SUBJECT = """INSERT INTO canonical.subjects (id, token_key_id, t1, t2, t3, t4, t5, birth_year, age_over_89)
              VALUES ($1, 'k', $2, 'b', 'c', 'd', 'e', $3, $4)"""


@pytest.fixture
async def conn(postgres: Any) -> AsyncIterator[asyncpg.Connection]:
    database = f"sh_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    dsn = postgres.dsn_for(database)
    assert await upgrade(dsn, "0006") == "0006"
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(_SUBJECT, YOUNG_SUBJECT, "young", 1980, False)
        await connection.execute(_SUBJECT, OLD_SUBJECT, "old", None, True)
        await connection.executemany(
            "INSERT INTO canonical.patients (id, tenant, subject_id) VALUES ($1, 'acme', $2)",
            [(YOUNG, YOUNG_SUBJECT), (OLD, OLD_SUBJECT)],
        )
        for patient in (YOUNG, OLD):
            await connection.execute(
                "INSERT INTO canonical.encounters (id, tenant, patient_id, period_start, period_end) VALUES "
                "($1, 'acme', $2, '2019-08-23T10:11:12-06:00', '2019-12-31T23:30:00-05:00')",
                uuid.uuid4(), patient,
            )  # fmt: skip
            await connection.execute(
                "INSERT INTO canonical.immunizations (id, tenant, patient_id, occurred_at) "
                "VALUES ($1, 'acme', $2, '1931-06-15')",
                uuid.uuid4(), patient,
            )  # fmt: skip
        assert await upgrade(dsn) is not None
        yield connection
    finally:
        await connection.close()


async def years(conn: asyncpg.Connection, table: str, column: str, patient: uuid.UUID) -> list[Any]:
    return [r[0] for r in await conn.fetch(f"SELECT {column} FROM canonical.{table} WHERE patient_id = $1", patient)]


async def test_stored_dates_become_years_and_90_plus_subjects_keep_none(conn: asyncpg.Connection) -> None:
    encounter = await conn.fetchrow("SELECT * FROM canonical.encounters WHERE patient_id = $1", YOUNG)
    # stored in UTC, so the New Year's Eve end (04:30 UTC on 1 January) counts as 2020
    assert (encounter["period_start_year"], encounter["period_end_year"]) == (2019, 2020)
    assert "period_start" not in encounter.keys()
    assert await years(conn, "immunizations", "occurred_year", YOUNG) == [1931]
    assert await years(conn, "immunizations", "occurred_year", OLD) == [None]
    assert await years(conn, "encounters", "period_start_year", OLD) == [None]
    dated = await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'canonical' "
        "AND data_type LIKE 'timestamp%' AND column_name NOT IN ('created_at', 'updated_at')"
    )
    assert {r["table_name"] for r in dated} == {"records"}, "only record metadata keeps a timestamp"


async def test_years_are_withheld_whatever_the_arrival_order(conn: asyncpg.Connection) -> None:
    insert = "INSERT INTO canonical.immunizations (id, tenant, patient_id, occurred_year) VALUES ($1, 'acme', $2, 1931)"
    # a fact of a patient already linked to a 90+ subject
    await conn.execute(insert, uuid.uuid4(), OLD)
    assert await years(conn, "immunizations", "occurred_year", OLD) == [None, None]
    # a fact before its Patient arrives (placeholder), then the Patient links it to a 90+ subject
    late, late_subject = uuid.uuid4(), uuid.uuid4()
    await conn.execute("INSERT INTO canonical.patients (id, tenant) VALUES ($1, 'acme')", late)
    await conn.execute(insert, uuid.uuid4(), late)
    assert await years(conn, "immunizations", "occurred_year", late) == [1931]
    await conn.execute(_SUBJECT, late_subject, "late", None, True)
    await conn.execute("UPDATE canonical.patients SET subject_id = $1 WHERE id = $2", late_subject, late)
    assert await years(conn, "immunizations", "occurred_year", late) == [None]
    # a subject who turns 90 after its facts were stored
    await conn.execute(insert, uuid.uuid4(), YOUNG)
    await conn.execute(
        "UPDATE canonical.subjects SET age_over_89 = true, birth_year = NULL WHERE id = $1", YOUNG_SUBJECT
    )
    assert await years(conn, "immunizations", "occurred_year", YOUNG) == [None, None]
    assert await years(conn, "encounters", "period_end_year", YOUNG) == [None]
    # an update cannot put a year back
    await conn.execute("UPDATE canonical.immunizations SET occurred_year = 1931 WHERE patient_id = $1", YOUNG)
    assert await years(conn, "immunizations", "occurred_year", YOUNG) == [None, None]


async def test_the_us_core_tables_of_0008_withhold_years_like_the_others(conn: asyncpg.Connection) -> None:
    claim = (
        "INSERT INTO canonical.claims (id, tenant, patient_id, created_year, billable_start_year) "
        "VALUES ($1, 'acme', $2, 2019, 2019)"
    )
    await conn.execute(claim, uuid.uuid4(), OLD)
    await conn.execute(claim, uuid.uuid4(), YOUNG)
    assert await years(conn, "claims", "billable_start_year", OLD) == [None]
    assert await years(conn, "claims", "created_year", YOUNG) == [2019]
    await conn.execute(
        "INSERT INTO canonical.goals (id, tenant, patient_id, start_year) VALUES ($1, 'acme', $2, 1931)",
        uuid.uuid4(),
        YOUNG,
    )
    # the subject turns 90: canonical.clear_years reaches the new tables as well
    await conn.execute(
        "UPDATE canonical.subjects SET age_over_89 = true, birth_year = NULL WHERE id = $1", YOUNG_SUBJECT
    )
    assert await years(conn, "claims", "created_year", YOUNG) == [None]
    assert await years(conn, "goals", "start_year", YOUNG) == [None]
    assert await years(conn, "encounters", "period_start_year", YOUNG) == [None]
