"""Pure mapping: a raw record (FHIR R4 resource or Bundle, or native envelope v1/v2) → canonical rows.

`map_record()` is the entry point. It reads only what the canonical schema keeps; identity
attributes go into `Person` (tokenized, never stored) and Safe Harbor `Demographics`. Raises
`PoisonError("unmappable", ...)` for a record that can never map; the message names the element
(a JSON pointer), never its value.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

from exchange.core.errors import PoisonError
from exchange.normalizer import deid
from exchange.normalizer.context import FhirContext
from exchange.normalizer.fhir import (
    codings,
    concept_code,
    decimal,
    first_code,
    period_years,
    reference,
    token,
    unmappable,
    year,
)
from exchange.normalizer.model import NATIVE_PATIENT, RAW_ONLY_TABLE, Mapped, Person, PersonLink, Row, TokenSet
from exchange.normalizer.native import map_native
from exchange.normalizer.uscore import US_CORE_MAPPERS

SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"


def _patient(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    pid = ctx.own_id(res, where)
    names = res.get("name") or []
    if not isinstance(names, list):
        raise unmappable(f"{where}/name", "not a list")
    official = next((n for n in names if isinstance(n, dict) and n.get("use") == "official"), None)
    name = official or next((n for n in names if isinstance(n, dict)), {})
    given = name.get("given") or []
    addresses = res.get("address") or []
    address = addresses[0] if isinstance(addresses, list) and addresses and isinstance(addresses[0], dict) else {}
    ssn = None
    for ident in res.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == SSN_SYSTEM and isinstance(ident.get("value"), str):
            ssn = ident["value"]
            break
    person = Person(
        first_name=given[0] if isinstance(given, list) and given and isinstance(given[0], str) else None,
        last_name=name.get("family") if isinstance(name.get("family"), str) else None,
        birth_date=res.get("birthDate") if isinstance(res.get("birthDate"), str) else None,
        sex=res.get("gender") if isinstance(res.get("gender"), str) else None,
        postal_code=address.get("postalCode") if isinstance(address.get("postalCode"), str) else None,
        ssn=ssn,
    )
    demo = deid.demographics(person.birth_date, person.sex, person.postal_code, ctx.today)
    ctx.mapped.persons.append(PersonLink(pid, person, demo))
    deceased = res.get("deceasedBoolean")
    if deceased is None and "deceasedDateTime" in res:
        deceased = True
    ctx.mapped.rows.append(Row("patients", {"id": pid, "subject_id": None, "deceased": deceased}))


def _encounter(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    types = res.get("type") or []
    if not isinstance(types, list):
        raise unmappable(f"{where}/type", "not a list")
    values = ctx.fact({**res, "type": types[0] if types else None}, where, code_field="type")
    klass = res.get("class")
    values["class_code"] = token(klass.get("code"), f"{where}/class/code") if isinstance(klass, dict) else None
    values["period_start_year"], values["period_end_year"] = period_years(res.get("period"), f"{where}/period")
    values["patient_id"] = ctx.ref(res, "subject", where, "Patient", required=True)
    ctx.mapped.rows.append(Row("encounters", values))


def _condition(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    values = ctx.fact(res, where)
    values["status"] = None
    values["clinical_status"] = concept_code(res.get("clinicalStatus"), f"{where}/clinicalStatus")
    values["verification_status"] = concept_code(res.get("verificationStatus"), f"{where}/verificationStatus")
    onset = res.get("onsetDateTime") or (res.get("onsetPeriod") or {}).get("start")
    values["onset_year"] = year(onset, f"{where}/onset")
    values["abatement_year"] = year(res.get("abatementDateTime"), f"{where}/abatementDateTime")
    values["recorded_year"] = year(res.get("recordedDate"), f"{where}/recordedDate")
    values["patient_id"] = ctx.ref(res, "subject", where, "Patient", required=True)
    values["encounter_id"] = ctx.ref(res, "encounter", where, "Encounter")
    ctx.mapped.rows.append(Row("conditions", values))


def _observation(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    values = ctx.fact(res, where)
    categories = res.get("category") or []
    values["category"] = (
        concept_code(categories[0], f"{where}/category/0") if isinstance(categories, list) and categories else None
    )
    effective = (
        res.get("effectiveDateTime") or res.get("effectiveInstant") or (res.get("effectivePeriod") or {}).get("start")
    )
    values["effective_year"] = year(effective, f"{where}/effective")
    values.update(value_num=None, value_unit=None, value_code_system=None, value_code=None, value_bool=None)
    quantity = res.get("valueQuantity")
    if isinstance(quantity, dict):
        values["value_num"] = decimal(quantity.get("value"), f"{where}/valueQuantity/value")
        # The coded unit only: `unit` is free text.
        values["value_unit"] = token(quantity.get("code"), f"{where}/valueQuantity/code")
    elif "valueCodeableConcept" in res:
        pairs = codings(res["valueCodeableConcept"], f"{where}/valueCodeableConcept")
        values["value_code_system"], values["value_code"] = first_code(pairs)
    elif "valueBoolean" in res:
        if not isinstance(res["valueBoolean"], bool):
            raise unmappable(f"{where}/valueBoolean", "not a boolean")
        values["value_bool"] = res["valueBoolean"]
    elif "valueInteger" in res:
        values["value_num"] = decimal(res["valueInteger"], f"{where}/valueInteger")
    # valueString and the other free-text values are not kept.
    values["value_num"], values["value_unit"] = deid.age_over_89(
        values["codings"], values["value_num"], values["value_unit"]
    )
    values["patient_id"] = ctx.ref(res, "subject", where, "Patient", required=True)
    values["encounter_id"] = ctx.ref(res, "encounter", where, "Encounter")
    ctx.mapped.rows.append(Row("observations", values))


def _immunization(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    values = ctx.fact(res, where, code_field="vaccineCode")
    values["occurred_year"] = year(res.get("occurrenceDateTime"), f"{where}/occurrenceDateTime")
    values["patient_id"] = ctx.ref(res, "patient", where, "Patient", required=True)
    values["encounter_id"] = ctx.ref(res, "encounter", where, "Encounter")
    ctx.mapped.rows.append(Row("immunizations", values))


def _allergy(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    values = ctx.fact(res, where)
    values["status"] = None
    values["clinical_status"] = concept_code(res.get("clinicalStatus"), f"{where}/clinicalStatus")
    values["verification_status"] = concept_code(res.get("verificationStatus"), f"{where}/verificationStatus")
    categories = res.get("category") or []
    values["category"] = (
        token(categories[0], f"{where}/category/0") if isinstance(categories, list) and categories else None
    )
    values["criticality"] = token(res.get("criticality"), f"{where}/criticality")
    values["recorded_year"] = year(res.get("recordedDate"), f"{where}/recordedDate")
    values["patient_id"] = ctx.ref(res, "patient", where, "Patient", required=True)
    values["encounter_id"] = ctx.ref(res, "encounter", where, "Encounter")
    ctx.mapped.rows.append(Row("allergy_intolerances", values))


def _procedure(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    values = ctx.fact(res, where)
    start, end = period_years(res.get("performedPeriod"), f"{where}/performedPeriod")
    if "performedDateTime" in res:
        start = end = year(res["performedDateTime"], f"{where}/performedDateTime")
    values["performed_start_year"], values["performed_end_year"] = start, end
    values["patient_id"] = ctx.ref(res, "subject", where, "Patient", required=True)
    values["encounter_id"] = ctx.ref(res, "encounter", where, "Encounter")
    ctx.mapped.rows.append(Row("procedures", values))


RESOURCE_MAPPERS: dict[str, Callable[[FhirContext, dict[str, Any], str], None]] = {
    "Patient": _patient,
    "Encounter": _encounter,
    "Condition": _condition,
    "Observation": _observation,
    "Immunization": _immunization,
    "AllergyIntolerance": _allergy,
    "Procedure": _procedure,
    **US_CORE_MAPPERS,
}


def _raw_only(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    """A resource of a type the canonical schema does not model: one `raw_resources` row (its type,
    canonical id and the Patient it is about, when its `subject` or `patient` references one).
    It never fails: the resource passed ingest's FHIR R4 check and stays whole in the raw zone."""
    patient_id = None
    for field in ("subject", "patient"):
        try:
            target = reference(res.get(field), f"{where}/{field}", ctx.bundle_urls, "Patient")
        except PoisonError:
            continue
        if target is not None and target[0] == "Patient":
            patient_id = ctx.ids.of("Patient", target[1])
            ctx.mapped.placeholders.append(("patients", patient_id))
            break
    try:
        rid = ctx.own_id(res, where)
    except PoisonError:
        rid = ctx.ids.of(res["resourceType"], f"{ctx.fallback_id}:{where}")
    ctx.mapped.rows.append(
        Row(RAW_ONLY_TABLE, {"id": rid, "resource_type": res["resourceType"], "patient_id": patient_id})
    )


def map_fhir(resource: Any, ids: deid.CanonicalIds, fallback_id: str, today: date) -> Mapped:
    """Map one FHIR R4 resource, or a Bundle of them, to canonical rows; a resource of a type not
    modelled (here or in a Bundle) is recorded as raw-only."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise unmappable("/resourceType", "missing")
    ctx = FhirContext(ids, fallback_id, today)
    kind = resource["resourceType"]
    ctx.mapped.record_type = kind
    if kind == "Bundle":
        entries = resource.get("entry") or []
        if not isinstance(entries, list):
            raise unmappable("/entry", "not a list")
        items: list[tuple[dict[str, Any], str]] = []
        for i, entry in enumerate(entries):
            res = entry.get("resource") if isinstance(entry, dict) else None
            if res is None and isinstance(entry, dict):
                continue  # a search or batch-response entry may carry no resource: nothing to map
            if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                raise unmappable(f"/entry/{i}/resource", "not a resource")
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str) and isinstance(res.get("id"), str):
                ctx.bundle_urls[full_url] = (res["resourceType"], res["id"])
            items.append((res, f"/entry/{i}/resource"))
    else:
        items = [(resource, "")]
    for res, where in items:
        RESOURCE_MAPPERS.get(res["resourceType"], _raw_only)(ctx, res, where)
    return ctx.mapped


def map_record(document: Any, *, source_format: str, ids: deid.CanonicalIds, fallback_id: str, today: date) -> Mapped:
    """Map a parsed raw record. `fallback_id` (object digest + line) names resources without an id."""
    if source_format == "fhir":
        return map_fhir(document, ids, fallback_id, today)
    if source_format == "native":
        return map_native(document, ids, fallback_id, today)
    raise PoisonError("unmappable", "unknown source format")


def bind_subjects(mapped: Mapped, token_sets: list[TokenSet | None], ids: deid.CanonicalIds, fallback_id: str) -> None:
    """Add the subject rows of `mapped.persons` (one token set each) and link their patients.

    A person whose five tokens are all blank has no subject (it would merge everyone without
    identity). Native records' placeholder patient becomes the tenant's patient of the subject.
    """
    if len(token_sets) != len(mapped.persons):
        raise ValueError("one token set per person expected")
    subject_rows: list[Row] = []
    for link, token_set in zip(mapped.persons, token_sets, strict=True):
        sid = None
        if token_set is not None and not token_set.blank:
            sid = deid.subject_id(token_set.key_id, token_set.tokens)
            demo = link.demographics
            t1, t2, t3, t4, t5 = token_set.tokens
            subject_rows.append(Row("subjects", {
                "id": sid, "token_key_id": token_set.key_id, "t1": t1, "t2": t2, "t3": t3, "t4": t4, "t5": t5,
                "birth_year": demo.birth_year, "age_over_89": demo.age_over_89, "sex": demo.sex, "zip3": demo.zip3,
            }))  # fmt: skip
        patient_id = link.patient_id
        if patient_id == NATIVE_PATIENT:
            patient_id = ids.of("Patient", f"subject:{sid}" if sid else fallback_id)
            _replace_native(mapped, patient_id, sid)
        for row in mapped.rows:
            if row.table == "patients" and row.values["id"] == patient_id:
                row.values["subject_id"] = sid
    mapped.rows[:0] = subject_rows


def _replace_native(mapped: Mapped, patient_id: uuid.UUID, sid: uuid.UUID | None) -> None:
    has_patient_row = False
    for row in mapped.rows:
        if row.values.get("id") == NATIVE_PATIENT:
            row.values["id"] = patient_id
            has_patient_row = row.table == "patients" or has_patient_row
        if row.values.get("patient_id") == NATIVE_PATIENT:
            row.values["patient_id"] = patient_id
    if not has_patient_row:
        mapped.rows.append(Row("patients", {"id": patient_id, "subject_id": sid, "deceased": None}, upsert=False))
