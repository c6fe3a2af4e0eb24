# mypy: disable-error-code="untyped-decorator"
# (strawberry.field(description=...) is typed as returning Any in 0.341)
"""GraphQL types and resolvers over the canonical model (contract: contracts/graphql/schema.graphql).

Tenant scoping (OWASP API1, BOLA) is enforced in every resolver through `Context.loaders`, which
are built for the caller's tenant: an object of another tenant resolves to null, never to an
error that would reveal it exists. Only `linkage` reaches across tenants, for a caller holding
the linker role, and returns tokens, Safe Harbor demographics, sources and clinical facts: no
raw-object pointers, and a fact's `record` still resolves in the caller's tenant only.
"""

import base64
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, Generic, Self, TypeVar

import asyncpg
import orjson
import strawberry
from strawberry.fastapi import BaseContext

from exchange.core.auth import Principal
from exchange.query.limits import QueryError, page_size
from exchange.query.loaders import Loaders
from exchange.query.repo import Page
from exchange.query.settings import QuerySettings

T = TypeVar("T")
MAX_TOKEN = 128
BUCKET_SPAN = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7),
               "month": timedelta(days=28), "year": timedelta(days=365)}  # fmt: skip


class Context(BaseContext):
    """What every resolver sees: the verified caller, its loaders and the limits."""

    def __init__(self, principal: Principal, loaders: Loaders, settings: QuerySettings) -> None:
        super().__init__()
        self.principal = principal
        self.loaders = loaders
        self.settings = settings

    @property
    def can_link(self) -> bool:
        return self.settings.query_linker_role in self.principal.roles

    def page(
        self, first: int | None, after: str | None, since: datetime | None = None, until: datetime | None = None
    ) -> Page:
        size = page_size(first, self.settings.query_default_page_size, self.settings.query_max_page_size)
        if since is not None and until is not None and until <= since:
            raise QueryError("`until` must be after `since`", "BAD_RANGE")
        return Page(size, decode_cursor(after) if after else None, since, until)


Info = strawberry.Info[Context, None]


# ---- cursors and connections (Relay: edges, node, cursor, pageInfo; forward pagination)
def encode_cursor(sort: datetime, rid: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([sort.isoformat(), str(rid)])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        sort, rid = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(sort), uuid.UUID(rid)
    except (ValueError, TypeError):
        raise QueryError("`after` is not a cursor of this API", "BAD_CURSOR") from None


def parse_id(value: strawberry.ID) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise QueryError("not an id of this API", "BAD_ID") from None


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo


def connection(rows: list[asyncpg.Record], page: Page, node: Callable[[asyncpg.Record], T]) -> Connection[T]:
    """A page of `rows` (fetched with one extra row, each with `_sort` and `id`)."""
    edges = [Edge(cursor=encode_cursor(r["_sort"], r["id"]), node=node(r)) for r in rows[: page.first]]
    info = PageInfo(
        has_next_page=len(rows) > page.first,
        has_previous_page=page.after is not None,
        start_cursor=edges[0].cursor if edges else None,
        end_cursor=edges[-1].cursor if edges else None,
    )
    return Connection(edges=edges, page_info=info)


# ---- enums
@strawberry.enum
class TokenRule(Enum):
    T1 = "t1"
    T2 = "t2"
    T3 = "t3"
    T4 = "t4"
    T5 = "t5"


@strawberry.enum
class TimeBucket(Enum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


@strawberry.enum
class FactKind(Enum):
    ENCOUNTER = "encounters"
    CONDITION = "conditions"
    OBSERVATION = "observations"
    IMMUNIZATION = "immunizations"
    ALLERGY_INTOLERANCE = "allergy_intolerances"
    PROCEDURE = "procedures"
    MEDICATION_REQUEST = "medication_requests"
    DIAGNOSTIC_REPORT = "diagnostic_reports"
    DOCUMENT_REFERENCE = "document_references"
    CARE_PLAN = "care_plans"
    CARE_TEAM = "care_teams"
    GOAL = "goals"
    IMAGING_STUDY = "imaging_studies"
    DEVICE = "devices"
    CLAIM = "claims"
    EXPLANATION_OF_BENEFIT = "explanation_of_benefits"


# ---- records
@strawberry.type(description="One ingested record of the caller's tenant and where its raw object lives.")
class Record:
    id: strawberry.ID
    tenant: str
    source_format: str
    record_type: str
    schema_version: str
    canonical_version: str
    object_bucket: str
    object_key: str
    object_sha256: str
    line: int
    received_at: datetime
    normalized_at: datetime

    @classmethod
    def of(cls, row: asyncpg.Record) -> "Record":
        return cls(**{f: row[f] for f in _RECORD_FIELDS}, id=strawberry.ID(str(row["id"])))

    @strawberry.field(description="The patient the record is about.")
    async def patient(self, info: Info) -> "Patient | None":
        loaders = info.context.loaders
        links = await loaders.one(loaders.patient_of_record, uuid.UUID(self.id))
        if not links:
            return None
        row = await loaders.patient.load(links[0]["patient_id"])
        return Patient.of(row) if row else None


_RECORD_FIELDS = ("tenant", "source_format", "record_type", "schema_version", "canonical_version", "object_bucket",
                  "object_key", "object_sha256", "line", "received_at", "normalized_at")  # fmt: skip


@strawberry.type(description="A record of a linked subject, without its raw-object pointer.")
class LinkedRecord:
    id: strawberry.ID
    tenant: str
    record_type: str
    received_at: datetime

    @classmethod
    def of(cls, row: asyncpg.Record) -> "LinkedRecord":
        return cls(id=strawberry.ID(str(row["id"])), tenant=row["tenant"], record_type=row["record_type"],
                   received_at=row["received_at"])  # fmt: skip


# ---- clinical facts
@strawberry.type
class Coding:
    system: str | None
    code: str


async def _record(self: Any, info: Info) -> Record | None:
    if self.record_id is None:
        return None
    row = await info.context.loaders.record.load(self.record_id)
    return Record.of(row) if row else None


@strawberry.interface(description="What every clinical fact carries: codes with systems, its patient, its record.")
class ClinicalFact:
    id: strawberry.ID
    tenant: str
    patient_id: strawberry.ID | None
    status: str | None
    code_system: str | None
    code: str | None
    codings: list[Coding]
    record_id: strawberry.Private[uuid.UUID | None]
    record = strawberry.field(
        resolver=_record, description="The record that stated the fact (null for another tenant's)."
    )


@strawberry.interface(description="What a modelled resource about no patient carries: codes with systems, its record.")
class CodedResource:
    id: strawberry.ID
    tenant: str
    status: str | None
    code_system: str | None
    code: str | None
    codings: list[Coding]
    record_id: strawberry.Private[uuid.UUID | None]
    record = strawberry.field(resolver=_record, description="The record that stated it (null for another tenant's).")


@strawberry.type
class Encounter(ClinicalFact):
    class_code: str | None
    period_start_year: int | None
    period_end_year: int | None


@strawberry.type
class Condition(ClinicalFact):
    encounter_id: strawberry.ID | None
    clinical_status: str | None
    verification_status: str | None
    onset_year: int | None
    abatement_year: int | None
    recorded_year: int | None


@strawberry.type
class Observation(ClinicalFact):
    encounter_id: strawberry.ID | None
    category: str | None
    effective_year: int | None
    value_num: float | None
    value_unit: str | None
    value_code_system: str | None
    value_code: str | None
    value_bool: bool | None


@strawberry.type
class Immunization(ClinicalFact):
    encounter_id: strawberry.ID | None
    occurred_year: int | None


@strawberry.type
class AllergyIntolerance(ClinicalFact):
    encounter_id: strawberry.ID | None
    clinical_status: str | None
    verification_status: str | None
    category: str | None
    criticality: str | None
    recorded_year: int | None


@strawberry.type
class Procedure(ClinicalFact):
    encounter_id: strawberry.ID | None
    performed_start_year: int | None
    performed_end_year: int | None


@strawberry.type(description="A medication order: the medication's code (or its Medication's id), intent, year.")
class MedicationRequest(ClinicalFact):
    encounter_id: strawberry.ID | None
    intent: str | None
    medication_id: strawberry.ID | None
    requester_id: strawberry.ID | None
    authored_year: int | None


@strawberry.type(description="A report's code, category, years and its result observations' ids; never its text.")
class DiagnosticReport(ClinicalFact):
    encounter_id: strawberry.ID | None
    category: str | None
    effective_year: int | None
    issued_year: int | None
    result_ids: list[strawberry.ID]


@strawberry.type(description="A document's metadata only (type, category, content type, year); never its content.")
class DocumentReference(ClinicalFact):
    encounter_id: strawberry.ID | None
    category: str | None
    content_type: str | None
    date_year: int | None


@strawberry.type(description="A care plan: its categories as codes, intent and period years.")
class CarePlan(ClinicalFact):
    encounter_id: strawberry.ID | None
    intent: str | None
    period_start_year: int | None
    period_end_year: int | None


@strawberry.type(description="A care team: its participants' roles as codes (never who they are), period years.")
class CareTeam(ClinicalFact):
    encounter_id: strawberry.ID | None
    period_start_year: int | None
    period_end_year: int | None


@strawberry.type(description="A goal: its coded description, lifecycle status (status), achievement, start year.")
class Goal(ClinicalFact):
    achievement_status: str | None
    start_year: int | None


@strawberry.type(description="An imaging study: its series' modalities as codes, series and instance counts, year.")
class ImagingStudy(ClinicalFact):
    encounter_id: strawberry.ID | None
    started_year: int | None
    series_count: int | None
    instance_count: int | None


@strawberry.type(description="A device: its type only.")
class Device(ClinicalFact):
    pass


@strawberry.interface(description="What a claim and an explanation of benefit share: type, amounts, item codes.")
class Billing(ClinicalFact):
    use: str | None
    created_year: int | None
    billable_start_year: int | None
    billable_end_year: int | None
    total_value: float | None
    currency: str | None
    provider_id: strawberry.ID | None
    item_codings: list[Coding]


@strawberry.type(description="A claim: its type (code), use, total, item codes and years.")
class Claim(Billing):
    pass


@strawberry.type(description="An explanation of benefit: its submitted total, payment, outcome and claim's id.")
class ExplanationOfBenefit(Billing):
    outcome: str | None
    payment_value: float | None
    claim_id: strawberry.ID | None


FACT_TYPES: dict[str, type[ClinicalFact]] = {
    "encounters": Encounter,
    "conditions": Condition,
    "observations": Observation,
    "immunizations": Immunization,
    "allergy_intolerances": AllergyIntolerance,
    "procedures": Procedure,
    "medication_requests": MedicationRequest,
    "diagnostic_reports": DiagnosticReport,
    "document_references": DocumentReference,
    "care_plans": CarePlan,
    "care_teams": CareTeam,
    "goals": Goal,
    "imaging_studies": ImagingStudy,
    "devices": Device,
    "claims": Claim,
    "explanation_of_benefits": ExplanationOfBenefit,
}


@strawberry.type(description="An organization: its type (codes) and 3-digit ZIP only.")
class Organization(CodedResource):
    active: bool | None
    zip3: str | None


@strawberry.type(description="A location: its type (codes), 3-digit ZIP and managing organization's id only.")
class Location(CodedResource):
    zip3: str | None
    organization_id: strawberry.ID | None


@strawberry.type(description="A practitioner: the qualifications' codes only.")
class Practitioner(CodedResource):
    active: bool | None


@strawberry.type(
    description="A practitioner's role: its specialties as codes, the practitioner's and organization's ids."
)
class PractitionerRole(CodedResource):
    active: bool | None
    practitioner_id: strawberry.ID | None
    organization_id: strawberry.ID | None


@strawberry.type(description="A medication: its code and form code.")
class Medication(CodedResource):
    form_code: str | None


ENTITY_TYPES: dict[str, type[CodedResource]] = {
    "organizations": Organization,
    "locations": Location,
    "practitioners": Practitioner,
    "practitioner_roles": PractitionerRole,
    "medications": Medication,
}


def _field_value(name: str, value: Any) -> Any:
    """A column as GraphQL serves it: ids as ID, codings as Coding, numerics as Float."""
    if name.endswith("codings"):
        return [Coding(system=c.get("system") or None, code=c["code"]) for c in value]
    if isinstance(value, uuid.UUID) and name != "record_id":
        return strawberry.ID(str(value))
    if name.endswith("_ids"):
        return [strawberry.ID(str(v)) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    return value


def _of(cls: type[T], row: asyncpg.Record) -> T:
    names = {n for c in cls.__mro__ for n in getattr(c, "__annotations__", {})}
    return cls(**{n: _field_value(n, row[n]) for n in names})


def fact_of(kind: str, row: asyncpg.Record) -> ClinicalFact:
    return _of(FACT_TYPES[kind], row)


def _entity_field(table: str) -> Any:
    """A root field: one entity of `table` of the caller's tenant by id (null for any other)."""

    async def resolve(info: Info, id: strawberry.ID) -> Any:
        loaders = info.context.loaders
        rows = await loaders.entity.load((table, parse_id(id)))
        return _of(ENTITY_TYPES[table], rows[0]) if rows else None

    resolve.__annotations__["return"] = ENTITY_TYPES[table] | None
    name = table.removesuffix("s").replace("_", " ")
    return strawberry.field(
        resolver=resolve, description=f"One {name} of the caller's tenant by id (null for any other)."
    )


def _facts_field(kind: str, parent: str, cross_tenant: bool) -> Any:
    """A paged field of facts of `kind` of a patient or a subject (the caller's tenant, or all)."""

    async def resolve(
        self: Any,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Any:
        ctx = info.context
        page = ctx.page(first, after, since, until)
        scope = None if cross_tenant else ctx.loaders.tenant
        rows = await ctx.loaders.facts.load(((kind, parent, scope, page), self.pk))
        return connection(rows, page, lambda r: fact_of(kind, r))

    resolve.__annotations__["return"] = Connection[FACT_TYPES[kind]]  # type: ignore[valid-type]
    return strawberry.field(
        resolver=resolve,
        description=f"{kind.replace('_', ' ').capitalize()}, ordered by year, within [since, until) "
        "(a year is its 1 January).",
    )


# ---- patients and subjects
@strawberry.type(description="A patient of the caller's tenant: a subject as one source knows it.")
class Patient:
    id: strawberry.ID
    tenant: str
    deceased: bool | None
    pk: strawberry.Private[uuid.UUID]
    subject_id: strawberry.Private[uuid.UUID | None]
    record_id: strawberry.Private[uuid.UUID | None]

    @classmethod
    def of(cls, row: asyncpg.Record) -> "Patient":
        return cls(id=strawberry.ID(str(row["id"])), tenant=row["tenant"], deceased=row["deceased"], pk=row["id"],
                   subject_id=row["subject_id"], record_id=row["record_id"])  # fmt: skip

    @strawberry.field(description="The person behind the patient, by tokens.")
    async def subject(self, info: Info) -> "Subject | None":
        if self.subject_id is None:
            return None
        row = await info.context.loaders.subject.load(self.subject_id)
        return Subject.of(row) if row else None

    @strawberry.field(description="The Patient record (null while only referenced).")
    async def record(self, info: Info) -> Record | None:
        if self.record_id is None:
            return None
        row = await info.context.loaders.record.load(self.record_id)
        return Record.of(row) if row else None

    encounters = _facts_field("encounters", "patient", False)
    conditions = _facts_field("conditions", "patient", False)
    observations = _facts_field("observations", "patient", False)
    immunizations = _facts_field("immunizations", "patient", False)
    allergy_intolerances = _facts_field("allergy_intolerances", "patient", False)
    procedures = _facts_field("procedures", "patient", False)
    medication_requests = _facts_field("medication_requests", "patient", False)
    diagnostic_reports = _facts_field("diagnostic_reports", "patient", False)
    document_references = _facts_field("document_references", "patient", False)
    care_plans = _facts_field("care_plans", "patient", False)
    care_teams = _facts_field("care_teams", "patient", False)
    goals = _facts_field("goals", "patient", False)
    imaging_studies = _facts_field("imaging_studies", "patient", False)
    devices = _facts_field("devices", "patient", False)
    claims = _facts_field("claims", "patient", False)
    explanation_of_benefits = _facts_field("explanation_of_benefits", "patient", False)


@strawberry.type(description="T1-T5 under one tokenization key: pseudonyms, the same across sources.")
class Tokens:
    key_id: str
    t1: str
    t2: str
    t3: str
    t4: str
    t5: str


@strawberry.type(description="How many resources of one FHIR resource type.")
class ResourceTypeCount:
    resource_type: str
    count: int


@strawberry.interface(description="A person known by tokens: the de-identified profile every view of a subject shares.")
class SubjectProfile:
    id: strawberry.ID
    tokens: Tokens
    birth_year: int | None
    age_over_89: bool
    sex: str | None
    zip3: str | None
    pk: strawberry.Private[uuid.UUID]

    @classmethod
    def of(cls, row: asyncpg.Record) -> Self:
        t1, t2, t3, t4, t5 = (row[f"t{i}"] for i in range(1, 6))
        tokens = Tokens(key_id=row["token_key_id"], t1=t1, t2=t2, t3=t3, t4=t4, t5=t5)
        return cls(id=strawberry.ID(str(row["id"])), pk=row["id"], tokens=tokens, birth_year=row["birth_year"],
                   age_over_89=row["age_over_89"], sex=row["sex"], zip3=row["zip3"])  # fmt: skip


@strawberry.type(description="A person known by tokens, seen through the caller's tenant.")
class Subject(SubjectProfile):
    @strawberry.field(description="The caller's patients of this subject.")
    async def patients(self, info: Info) -> list[Patient]:
        loaders = info.context.loaders
        return [Patient.of(r) for r in await loaders.one(loaders.patients_of_subject, self.pk)]

    @strawberry.field(description="The caller's records about this subject, oldest first.")
    async def records(self, info: Info, first: int | None = None, after: str | None = None) -> Connection[Record]:
        ctx = info.context
        page = ctx.page(first, after)
        rows = await ctx.loaders.records_of_subject.load(((ctx.loaders.tenant, page), self.pk))
        return connection(rows, page, Record.of)

    encounters = _facts_field("encounters", "subject", False)
    conditions = _facts_field("conditions", "subject", False)
    observations = _facts_field("observations", "subject", False)
    immunizations = _facts_field("immunizations", "subject", False)
    allergy_intolerances = _facts_field("allergy_intolerances", "subject", False)
    procedures = _facts_field("procedures", "subject", False)
    medication_requests = _facts_field("medication_requests", "subject", False)
    diagnostic_reports = _facts_field("diagnostic_reports", "subject", False)
    document_references = _facts_field("document_references", "subject", False)
    care_plans = _facts_field("care_plans", "subject", False)
    care_teams = _facts_field("care_teams", "subject", False)
    goals = _facts_field("goals", "subject", False)
    imaging_studies = _facts_field("imaging_studies", "subject", False)
    devices = _facts_field("devices", "subject", False)
    claims = _facts_field("claims", "subject", False)
    explanation_of_benefits = _facts_field("explanation_of_benefits", "subject", False)

    @strawberry.field(
        description="The caller's resources about this subject of FHIR types the canonical schema does not "
        "model (kept raw-only: their content stays in the raw zone), counted by resource type."
    )
    async def raw_resource_counts(self, info: Info) -> list[ResourceTypeCount]:
        loaders = info.context.loaders
        rows = await loaders.one(loaders.raw_counts, self.pk)
        return [ResourceTypeCount(resource_type=r["resource_type"], count=r["n"]) for r in rows]


@strawberry.type(description="A source holding a linked subject, and how many of its patients it is.")
class LinkedSource:
    tenant: str
    patients: int


@strawberry.type(description="A subject linked across every source (linker role): tokens and de-identified facts.")
class LinkedSubject(SubjectProfile):
    @strawberry.field(description="Every source holding the subject.")
    async def sources(self, info: Info) -> list[LinkedSource]:
        loaders = info.context.loaders
        rows = await loaders.one(loaders.sources, self.pk)
        return [LinkedSource(tenant=r["tenant"], patients=r["patients"]) for r in rows]

    @strawberry.field(description="The subject's records in every source, oldest first.")
    async def records(self, info: Info, first: int | None = None, after: str | None = None) -> Connection[LinkedRecord]:
        ctx = info.context
        page = ctx.page(first, after)
        rows = await ctx.loaders.records_of_subject.load(((None, page), self.pk))
        return connection(rows, page, LinkedRecord.of)

    encounters = _facts_field("encounters", "subject", True)
    conditions = _facts_field("conditions", "subject", True)
    observations = _facts_field("observations", "subject", True)
    immunizations = _facts_field("immunizations", "subject", True)
    allergy_intolerances = _facts_field("allergy_intolerances", "subject", True)
    procedures = _facts_field("procedures", "subject", True)
    medication_requests = _facts_field("medication_requests", "subject", True)
    diagnostic_reports = _facts_field("diagnostic_reports", "subject", True)
    document_references = _facts_field("document_references", "subject", True)
    care_plans = _facts_field("care_plans", "subject", True)
    care_teams = _facts_field("care_teams", "subject", True)
    goals = _facts_field("goals", "subject", True)
    imaging_studies = _facts_field("imaging_studies", "subject", True)
    devices = _facts_field("devices", "subject", True)
    claims = _facts_field("claims", "subject", True)
    explanation_of_benefits = _facts_field("explanation_of_benefits", "subject", True)


@strawberry.type
class CountBucket:
    kind: str
    bucket_start: datetime
    count: int


# ---- the root
def check_token(token: str) -> str:
    token = token.strip()
    if not token or len(token) > MAX_TOKEN:
        raise QueryError(f"`token` must be 1 to {MAX_TOKEN} characters", "BAD_TOKEN")
    if set(token) == {"0"}:
        raise QueryError("a blank token links nobody", "BAD_TOKEN")
    return token


def check_buckets(ctx: Context, bucket: TimeBucket, since: datetime, until: datetime) -> None:
    if until <= since:
        raise QueryError("`until` must be after `since`", "BAD_RANGE")
    if (until - since) / BUCKET_SPAN[bucket.value] > ctx.settings.query_max_buckets:
        raise QueryError(f"the range spans more than {ctx.settings.query_max_buckets} buckets", "TOO_MANY_BUCKETS")


@strawberry.type
class Query:
    @strawberry.field(description="A record of the caller's tenant by id (null for any other).")
    async def record(self, info: Info, id: strawberry.ID) -> Record | None:
        row = await info.context.loaders.record.load(parse_id(id))
        return Record.of(row) if row else None

    @strawberry.field(description="The caller's records by type, source format and received time, oldest first.")
    async def records(
        self,
        info: Info,
        record_type: str | None = None,
        source_format: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Record]:
        ctx = info.context
        page = ctx.page(first, after, since, until)
        rows = await ctx.loaders.repo.record_page(ctx.loaders.tenant, page, record_type, source_format)
        return connection(rows, page, Record.of)

    @strawberry.field(description="A patient of the caller's tenant by id (null for any other).")
    async def patient(self, info: Info, id: strawberry.ID) -> Patient | None:
        row = await info.context.loaders.patient.load(parse_id(id))
        return Patient.of(row) if row else None

    @strawberry.field(description="Subjects holding `token` (as `rule`, or as any of T1-T5) of the caller's patients.")
    async def subjects(self, info: Info, token: str, rule: TokenRule | None = None) -> list[Subject]:
        loaders = info.context.loaders
        rows = await loaders.repo.subjects_by_token(loaders.tenant, check_token(token), rule.value if rule else None)
        return [Subject.of(r) for r in rows]

    @strawberry.field(description="Subjects holding `token` across every source. Needs the linker role.")
    async def linkage(self, info: Info, token: str, rule: TokenRule | None = None) -> list[LinkedSubject]:
        if not info.context.can_link:
            raise QueryError("linkage across sources needs the linker role", "FORBIDDEN")
        repo = info.context.loaders.repo
        rows = await repo.subjects_by_token(None, check_token(token), rule.value if rule else None)
        return [LinkedSubject.of(r) for r in rows]

    @strawberry.field(description="The caller's records counted by type and received-time bucket in [since, until).")
    async def record_counts(
        self, info: Info, bucket: TimeBucket, since: datetime, until: datetime, record_type: str | None = None
    ) -> list[CountBucket]:
        ctx = info.context
        check_buckets(ctx, bucket, since, until)
        rows = await ctx.loaders.repo.record_counts(ctx.loaders.tenant, bucket.value, since, until, record_type)
        return [CountBucket(kind=r["kind"], bucket_start=r["bucket"], count=r["n"]) for r in rows]

    @strawberry.field(
        description="The caller's facts of one kind counted by clinical-year bucket in [since, until) "
        "(dates keep the year only: a fact counts in the bucket of its 1 January)."
    )
    async def fact_counts(
        self, info: Info, kind: FactKind, bucket: TimeBucket, since: datetime, until: datetime
    ) -> list[CountBucket]:
        ctx = info.context
        check_buckets(ctx, bucket, since, until)
        rows = await ctx.loaders.repo.fact_counts(ctx.loaders.tenant, kind.value, bucket.value, since, until)
        return [CountBucket(kind=r["kind"], bucket_start=r["bucket"], count=r["n"]) for r in rows]

    organization = _entity_field("organizations")
    location = _entity_field("locations")
    practitioner = _entity_field("practitioners")
    practitioner_role = _entity_field("practitioner_roles")
    medication = _entity_field("medications")
