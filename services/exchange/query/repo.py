"""SQL over the canonical schema. Every function takes the caller's tenant and filters by it.

`tenant=None` means "every tenant" and is passed only by the linkage resolvers, after the
caller's linker role was checked (see `schema.py`). Lists are batched for DataLoaders: one
statement answers many parents (`= ANY($1)`), and per-parent pages are cut with a window
function, so a nested query costs one statement per field, never one per parent.
Pages are keyset pages ordered by (time, id); a page fetches one row more than asked to know
whether another page follows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from exchange.query.db import Database

EPOCH = "timestamptz '0001-01-02 00:00:00+00'"
"""Where facts without a year sort (first), so keyset cursors never hold NULL. Not 1 January of
year 1: asyncpg sends that datetime as -infinity, and a cursor there would never advance."""


@dataclass(frozen=True, slots=True)
class FactTable:
    table: str
    year_column: str | None
    """Facts keep the year of their dates only (ADR 0014); pages and windows use its first instant.
    None: the type keeps no date (a Device), its facts sort first and fall outside every window."""

    def time(self, alias: str = "") -> str:
        if self.year_column is None:
            return "NULL::timestamptz"
        column = f"{alias}.{self.year_column}" if alias else self.year_column
        return f"make_timestamptz({column}, 1, 1, 0, 0, 0, 'UTC')"


FACTS: dict[str, FactTable] = {
    "encounters": FactTable("encounters", "period_start_year"),
    "conditions": FactTable("conditions", "onset_year"),
    "observations": FactTable("observations", "effective_year"),
    "immunizations": FactTable("immunizations", "occurred_year"),
    "allergy_intolerances": FactTable("allergy_intolerances", "recorded_year"),
    "procedures": FactTable("procedures", "performed_start_year"),
    "medication_requests": FactTable("medication_requests", "authored_year"),
    "diagnostic_reports": FactTable("diagnostic_reports", "effective_year"),
    "document_references": FactTable("document_references", "date_year"),
    "care_plans": FactTable("care_plans", "period_start_year"),
    "care_teams": FactTable("care_teams", "period_start_year"),
    "goals": FactTable("goals", "start_year"),
    "imaging_studies": FactTable("imaging_studies", "started_year"),
    "devices": FactTable("devices", None),
    "claims": FactTable("claims", "billable_start_year"),
    "explanation_of_benefits": FactTable("explanation_of_benefits", "billable_start_year"),
}
ENTITIES = frozenset({"organizations", "locations", "practitioners", "practitioner_roles", "medications"})
"""Tables of modelled resources about no patient, read by id."""
TOKEN_COLUMNS = ("t1", "t2", "t3", "t4", "t5")
BUCKETS = frozenset({"hour", "day", "week", "month", "year"})


@dataclass(frozen=True, slots=True)
class Page:
    """Which slice of a list: at most `first` rows after `after` (sort time, id), within [since, until)."""

    first: int
    after: tuple[datetime, uuid.UUID] | None = None
    since: datetime | None = None
    until: datetime | None = None


class _Params:
    """Positional parameters ($1, $2, ...) collected while a statement is built."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any, cast: str = "") -> str:
        self.values.append(value)
        return f"${len(self.values)}{'::' + cast if cast else ''}"


def _tenant(params: _Params, alias: str, tenant: str | None) -> str:
    return "" if tenant is None else f" AND {alias}.tenant = {params.add(tenant)}"


def _window(params: _Params, sort: str, alias: str, page: Page) -> str:
    """The range and keyset conditions of a page over `sort` (an expression of `alias`)."""
    out = ""
    if page.since is not None:
        out += f" AND {sort} >= {params.add(page.since, 'timestamptz')}"
    if page.until is not None:
        out += f" AND {sort} < {params.add(page.until, 'timestamptz')}"
    if page.after is not None:
        ts, rid = page.after
        out += f" AND ({sort}, {alias}.id) > ({params.add(ts, 'timestamptz')}, {params.add(rid, 'uuid')})"
    return out


class Repo:
    """Read-only queries; each method is one statement."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def records(self, tenant: str, ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
        return await self.db.fetch(
            "SELECT * FROM canonical.records WHERE id = ANY($1::uuid[]) AND tenant = $2", list(ids), tenant
        )

    async def record_page(
        self, tenant: str, page: Page, record_type: str | None, source_format: str | None
    ) -> list[asyncpg.Record]:
        p = _Params()
        where = f"r.tenant = {p.add(tenant)}"
        if record_type is not None:
            where += f" AND r.record_type = {p.add(record_type)}"
        if source_format is not None:
            where += f" AND r.source_format = {p.add(source_format)}"
        where += _window(p, "r.received_at", "r", page)
        sql = (
            f"SELECT r.*, r.received_at AS _sort FROM canonical.records r WHERE {where} "
            f"ORDER BY r.received_at, r.id LIMIT {p.add(page.first + 1, 'int')}"
        )
        return await self.db.fetch(sql, *p.values)

    async def entities(self, table: str, tenant: str, ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
        if table not in ENTITIES:
            raise ValueError("unknown entity table")
        return await self.db.fetch(
            f"SELECT * FROM canonical.{table} WHERE id = ANY($1::uuid[]) AND tenant = $2", list(ids), tenant
        )

    async def patients(self, tenant: str, ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
        return await self.db.fetch(
            "SELECT * FROM canonical.patients WHERE id = ANY($1::uuid[]) AND tenant = $2", list(ids), tenant
        )

    async def patients_of_subjects(self, tenant: str, subject_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
        return await self.db.fetch(
            "SELECT * FROM canonical.patients WHERE subject_id = ANY($1::uuid[]) AND tenant = $2 ORDER BY id",
            list(subject_ids),
            tenant,
        )

    async def patient_of_records(self, tenant: str, record_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
        """(record_id, patient_id): the patient each record is about (its Patient row or its facts')."""
        parts = ["SELECT record_id, id AS patient_id FROM canonical.patients WHERE record_id = ANY($1) AND tenant = $2"]
        parts += [
            f"SELECT record_id, patient_id FROM canonical.{t} WHERE record_id = ANY($1) AND tenant = $2" for t in FACTS
        ]
        sql = (
            "SELECT DISTINCT ON (record_id) record_id, patient_id FROM ("
            + " UNION ALL ".join(parts)
            + ") x WHERE patient_id IS NOT NULL ORDER BY record_id, patient_id"
        )
        return await self.db.fetch(sql, list(record_ids), tenant)

    async def subjects_by_token(self, tenant: str | None, token: str, rule: str | None) -> list[asyncpg.Record]:
        """Subjects holding `token` (as `rule`, or as any of T1-T5) that `tenant` has a patient of."""
        columns = (rule,) if rule else TOKEN_COLUMNS
        match = " OR ".join(f"s.{c} = $1" for c in columns)
        sql = f"SELECT s.* FROM canonical.subjects s WHERE ({match})"
        args: list[Any] = [token]
        if tenant is not None:
            sql += " AND EXISTS (SELECT 1 FROM canonical.patients p WHERE p.subject_id = s.id AND p.tenant = $2)"
            args.append(tenant)
        return await self.db.fetch(sql + " ORDER BY s.id LIMIT 100", *args)

    async def subjects(self, tenant: str, ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
        """Subjects by id, only those `tenant` has a patient of."""
        return await self.db.fetch(
            "SELECT s.* FROM canonical.subjects s WHERE s.id = ANY($1::uuid[]) AND EXISTS "
            "(SELECT 1 FROM canonical.patients p WHERE p.subject_id = s.id AND p.tenant = $2)",
            list(ids),
            tenant,
        )

    async def facts(
        self, kind: str, parent: str, tenant: str | None, parent_ids: Sequence[uuid.UUID], page: Page
    ) -> list[asyncpg.Record]:
        """Facts of `kind` per parent (`patient` or `subject`): at most page.first + 1 each, `_parent` set."""
        fact = FACTS[kind]
        p = _Params()
        ids = p.add(list(parent_ids), "uuid[]")
        sort = f"COALESCE({fact.time('f')}, {EPOCH})"
        if parent == "patient":
            parent_expr, join = "f.patient_id", ""
            where = f"f.patient_id = ANY({ids})" + _tenant(p, "f", tenant)
        else:
            parent_expr, join = "pt.subject_id", " JOIN canonical.patients pt ON pt.id = f.patient_id"
            where = f"pt.subject_id = ANY({ids})" + _tenant(p, "f", tenant) + _tenant(p, "pt", tenant)
        where += _window(p, sort, "f", page)
        sql = (
            f"SELECT * FROM (SELECT f.*, {parent_expr} AS _parent, {sort} AS _sort, "
            f"row_number() OVER (PARTITION BY {parent_expr} ORDER BY {sort}, f.id) AS _rn "
            f"FROM canonical.{fact.table} f{join} WHERE {where}) q "
            f"WHERE _rn <= {p.add(page.first + 1, 'int')} ORDER BY _parent, _rn"
        )
        return await self.db.fetch(sql, *p.values)

    async def records_of_subjects(
        self, tenant: str | None, subject_ids: Sequence[uuid.UUID], page: Page
    ) -> list[asyncpg.Record]:
        """Records holding any entity of the subjects' patients (in `tenant`, or everywhere), `_parent` set."""
        p = _Params()
        ids = p.add(list(subject_ids), "uuid[]")
        patients = f"SELECT id, subject_id FROM canonical.patients WHERE subject_id = ANY({ids})"
        patients += _tenant(p, "patients", tenant)
        links = ["SELECT pt.subject_id, x.record_id FROM pt JOIN canonical.patients x ON x.id = pt.id"]
        links += [
            f"SELECT pt.subject_id, f.record_id FROM pt JOIN canonical.{t} f ON f.patient_id = pt.id" for t in FACTS
        ]
        where = "r.id = l.record_id" + _tenant(p, "r", tenant) + _window(p, "r.received_at", "r", page)
        sql = (
            f"WITH pt AS ({patients}), l AS ({' UNION '.join(links)}) "
            "SELECT * FROM (SELECT r.*, l.subject_id AS _parent, r.received_at AS _sort, "
            "row_number() OVER (PARTITION BY l.subject_id ORDER BY r.received_at, r.id) AS _rn "
            f"FROM l JOIN canonical.records r ON {where}) q "
            f"WHERE _rn <= {p.add(page.first + 1, 'int')} ORDER BY _parent, _rn"
        )
        return await self.db.fetch(sql, *p.values)

    async def raw_counts_of_subjects(self, tenant: str, subject_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
        """Per subject: the tenant's raw-only resources (types not modelled) about it, by type."""
        return await self.db.fetch(
            "SELECT p.subject_id, r.resource_type, count(*) AS n FROM canonical.raw_resources r "
            "JOIN canonical.patients p ON p.id = r.patient_id "
            "WHERE p.subject_id = ANY($1::uuid[]) AND p.tenant = $2 AND r.tenant = $2 "
            "GROUP BY p.subject_id, r.resource_type ORDER BY p.subject_id, r.resource_type",
            list(subject_ids),
            tenant,
        )

    async def sources_of_subjects(self, subject_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
        """Per subject and tenant: how many patients (linkage only)."""
        return await self.db.fetch(
            "SELECT subject_id, tenant, count(*) AS patients FROM canonical.patients "
            "WHERE subject_id = ANY($1::uuid[]) GROUP BY subject_id, tenant ORDER BY subject_id, tenant",
            list(subject_ids),
        )

    async def record_counts(
        self, tenant: str, bucket: str, since: datetime, until: datetime, record_type: str | None
    ) -> list[asyncpg.Record]:
        if bucket not in BUCKETS:
            raise ValueError("unknown bucket")
        p = _Params()
        where = f"tenant = {p.add(tenant)} AND received_at >= {p.add(since)} AND received_at < {p.add(until)}"
        if record_type is not None:
            where += f" AND record_type = {p.add(record_type)}"
        sql = (
            f"SELECT record_type AS kind, date_trunc('{bucket}', received_at, 'UTC') AS bucket, count(*) AS n "
            f"FROM canonical.records WHERE {where} GROUP BY 1, 2 ORDER BY 2, 1"
        )
        return await self.db.fetch(sql, *p.values)

    async def fact_counts(
        self, tenant: str, kind: str, bucket: str, since: datetime, until: datetime
    ) -> list[asyncpg.Record]:
        if bucket not in BUCKETS:
            raise ValueError("unknown bucket")
        fact = FACTS[kind]
        ts = fact.time()
        sql = (
            f"SELECT '{kind}' AS kind, date_trunc('{bucket}', {ts}, 'UTC') AS bucket, count(*) AS n "
            f"FROM canonical.{fact.table} WHERE tenant = $1 AND {ts} >= $2 AND {ts} < $3 GROUP BY 1, 2 ORDER BY 2"
        )
        return await self.db.fetch(sql, tenant, since, until)
