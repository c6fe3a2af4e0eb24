"""Mappers of the US Core / Synthea set beyond the first seven types (issue 22, ADR 0015).

Each keeps codes with systems, statuses, counts, amounts, years and canonical ids (never the source
ids, never free text: `display`, `text`, `description`, notes, names, attachments' data, url and
title, addresses except the ZIP3). Tables are those of migration 0008.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from exchange.normalizer import deid
from exchange.normalizer.context import FhirContext, first, items
from exchange.normalizer.fhir import (
    codings,
    concept_code,
    decimal,
    period_years,
    reference,
    token,
    unmappable,
    year,
)

Mapper = Callable[[FhirContext, dict[str, Any], str], None]


def _money(value: Any, where: str) -> tuple[Decimal | None, str | None]:
    """(value, currency) of a Money."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise unmappable(where, "not a Money")
    return decimal(value.get("value"), f"{where}/value"), token(value.get("currency"), f"{where}/currency")


def _first_concept(res: dict[str, Any], field: str, where: str) -> str | None:
    concept, at = first(res, field, where)
    return concept_code(concept, at)


def _all_codings(res: dict[str, Any], field: str, where: str) -> list[dict[str, str]]:
    """The codings of every CodeableConcept of a list-valued element."""
    return [pair for concept, at in items(res, field, where) for pair in codings(concept, at)]


def _optional_patient(ctx: FhirContext, res: dict[str, Any], where: str) -> uuid.UUID | None:
    """The Patient of a `subject`, which FHIR lets be another type (a Group, a Device, a Location)
    or, for some types, absent: such a resource is kept about no patient, not refused."""
    target = reference(res.get("subject"), f"{where}/subject", ctx.bundle_urls, "Patient")
    return ctx.ref(res, "subject", where, "Patient") if target is not None and target[0] == "Patient" else None


def _medication_request(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    values = ctx.fact(res, where, code_field="medicationCodeableConcept")
    values["intent"] = token(res.get("intent"), f"{where}/intent")
    values["medication_id"] = ctx.ref_any(res.get("medicationReference"), f"{where}/medicationReference", "Medication")
    values["requester_id"] = ctx.ref_any(res.get("requester"), f"{where}/requester", "Practitioner")
    values["authored_year"] = year(res.get("authoredOn"), f"{where}/authoredOn")
    values["patient_id"] = _optional_patient(ctx, res, where)
    values["encounter_id"] = ctx.ref(res, "encounter", where, "Encounter")
    ctx.add("medication_requests", values)


def _diagnostic_report(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    values = ctx.fact(res, where)
    values["category"] = _first_concept(res, "category", where)
    effective = res.get("effectiveDateTime") or (res.get("effectivePeriod") or {}).get("start")
    values["effective_year"] = year(effective, f"{where}/effective")
    values["issued_year"] = year(res.get("issued"), f"{where}/issued")
    results = [ctx.ref_any(ref, at, "Observation") for ref, at in items(res, "result", where)]
    values["result_ids"] = [r for r in results if r is not None]
    values["patient_id"] = _optional_patient(ctx, res, where)
    values["encounter_id"] = ctx.ref(res, "encounter", where, "Encounter")
    ctx.add("diagnostic_reports", values)


def _document_reference(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    """Metadata only: type, category, the first attachment's content type, the year; never its data,
    url or title."""
    values = ctx.fact(res, where, code_field="type")
    values["category"] = _first_concept(res, "category", where)
    content, at = first(res, "content", where)
    attachment = content.get("attachment") if isinstance(content, dict) else None
    values["content_type"] = (
        token(attachment.get("contentType"), f"{at}/attachment/contentType") if isinstance(attachment, dict) else None
    )
    values["date_year"] = year(res.get("date"), f"{where}/date")
    context = res.get("context")
    encounter, at = first(context, "encounter", f"{where}/context") if isinstance(context, dict) else (None, "")
    values["patient_id"] = _optional_patient(ctx, res, where)
    values["encounter_id"] = ctx.ref_to(encounter, at, "Encounter")
    ctx.add("document_references", values)


def _care_plan(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    values = ctx.coded(res, where, _all_codings(res, "category", where))
    values["intent"] = token(res.get("intent"), f"{where}/intent")
    values["period_start_year"], values["period_end_year"] = period_years(res.get("period"), f"{where}/period")
    values["patient_id"] = _optional_patient(ctx, res, where)
    values["encounter_id"] = ctx.ref(res, "encounter", where, "Encounter")
    ctx.add("care_plans", values)


def _care_team(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    """Roles only (the participants' role codes); never who the members are."""
    roles = [pair for p, at in items(res, "participant", where) if isinstance(p, dict)
             for pair in _all_codings(p, "role", at)]  # fmt: skip
    values = ctx.coded(res, where, roles)
    values["period_start_year"], values["period_end_year"] = period_years(res.get("period"), f"{where}/period")
    values["patient_id"] = _optional_patient(ctx, res, where)
    values["encounter_id"] = ctx.ref(res, "encounter", where, "Encounter")
    ctx.add("care_teams", values)


def _goal(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    values = ctx.fact({**res, "status": res.get("lifecycleStatus")}, where, code_field="description")
    values["achievement_status"] = concept_code(res.get("achievementStatus"), f"{where}/achievementStatus")
    values["start_year"] = year(res.get("startDate"), f"{where}/startDate")
    values["patient_id"] = _optional_patient(ctx, res, where)
    ctx.add("goals", values)


def _imaging_study(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    """Counts and modalities (each series' modality code, in order); never the instances' UIDs."""
    series = items(res, "series", where)
    modalities = [pair for s, at in series if isinstance(s, dict) for pair in _modality(s.get("modality"), at)]
    values = ctx.coded(res, where, modalities)
    values["started_year"] = year(res.get("started"), f"{where}/started")
    instances = sum(len(items(s, "instance", at)) for s, at in series if isinstance(s, dict))
    values["series_count"] = _count(res.get("numberOfSeries", len(series)), f"{where}/numberOfSeries")
    values["instance_count"] = _count(res.get("numberOfInstances", instances), f"{where}/numberOfInstances")
    values["patient_id"] = _optional_patient(ctx, res, where)
    values["encounter_id"] = ctx.ref(res, "encounter", where, "Encounter")
    ctx.add("imaging_studies", values)


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise unmappable(where, "not a count")
    return value


def _modality(coding: Any, where: str) -> list[dict[str, str]]:
    return [] if coding is None else codings({"coding": [coding]}, f"{where}/modality")


def _device(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    """Type only: never its UDI, serial or lot number, names or dates."""
    values = ctx.fact(res, where, code_field="type")
    values["patient_id"] = ctx.ref(res, "patient", where, "Patient")
    ctx.add("devices", values)


def _amounts(ctx: FhirContext, res: dict[str, Any], where: str, total: Any, total_at: str) -> dict[str, Any]:
    """What a Claim and an ExplanationOfBenefit share: type, use, years, total, provider, item codes."""
    values = ctx.fact(res, where, code_field="type")
    values["use"] = token(res.get("use"), f"{where}/use")
    values["created_year"] = year(res.get("created"), f"{where}/created")
    values["billable_start_year"], values["billable_end_year"] = period_years(
        res.get("billablePeriod"), f"{where}/billablePeriod"
    )
    values["total_value"], values["currency"] = _money(total, total_at)
    values["provider_id"] = ctx.ref_any(res.get("provider"), f"{where}/provider", "Organization")
    values["item_codings"] = [pair for item, at in items(res, "item", where) if isinstance(item, dict)
                              for pair in codings(item.get("productOrService"), f"{at}/productOrService")]  # fmt: skip
    values["patient_id"] = ctx.ref(res, "patient", where, "Patient", required=True)
    return values


def _claim(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    values = _amounts(ctx, res, where, res.get("total"), f"{where}/total")
    values["outcome"] = values["payment_value"] = None
    ctx.add("claims", values)


def _explanation_of_benefit(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    """The total is the `submitted` one (else the first); the payment its amount."""
    totals = [(t, at) for t, at in items(res, "total", where) if isinstance(t, dict)]
    submitted = [(t, at) for t, at in totals if concept_code(t.get("category"), f"{at}/category") == "submitted"]
    total, at = (submitted or totals or [({}, f"{where}/total/0")])[0]
    values = _amounts(ctx, res, where, total.get("amount"), f"{at}/amount")
    payment = res.get("payment")
    values["payment_value"] = (
        _money(payment.get("amount"), f"{where}/payment/amount")[0] if isinstance(payment, dict) else None
    )
    values["outcome"] = token(res.get("outcome"), f"{where}/outcome")
    values["claim_id"] = ctx.ref_any(res.get("claim"), f"{where}/claim", "Claim")
    ctx.add("explanation_of_benefits", values)


def _zip3(address: Any, where: str) -> str | None:
    """Safe Harbor ZIP3 of an Address (deid's rule); the rest of the address is never read."""
    if address is None:
        return None
    if not isinstance(address, dict):
        raise unmappable(where, "not an Address")
    postal = address.get("postalCode")
    return deid.zip3(postal) if isinstance(postal, str) else None


def _active(res: dict[str, Any], where: str) -> bool | None:
    active = res.get("active")
    if active is not None and not isinstance(active, bool):
        raise unmappable(f"{where}/active", "not a boolean")
    return active


def _organization(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    """Type and ZIP3 only: never its name, identifiers, telecom or street."""
    values = ctx.coded(res, where, _all_codings(res, "type", where))
    values["active"] = _active(res, where)
    values["zip3"] = _zip3(*first(res, "address", where))
    ctx.add("organizations", values)


def _location(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    """Type and ZIP3 only: never its name, position, telecom or street."""
    values = ctx.coded(res, where, _all_codings(res, "type", where))
    values["zip3"] = _zip3(res.get("address"), f"{where}/address")
    values["organization_id"] = ctx.ref_any(
        res.get("managingOrganization"), f"{where}/managingOrganization", "Organization"
    )
    ctx.add("locations", values)


def _practitioner(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    """Specialty only (the qualifications' codes): never a name, identifier (NPI) or address."""
    quals = [pair for q, at in items(res, "qualification", where) if isinstance(q, dict)
             for pair in codings(q.get("code"), f"{at}/code")]  # fmt: skip
    values = ctx.coded(res, where, quals)
    values["active"] = _active(res, where)
    ctx.add("practitioners", values)


def _practitioner_role(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    values = ctx.coded(res, where, _all_codings(res, "specialty", where))
    values["active"] = _active(res, where)
    values["practitioner_id"] = ctx.ref_any(res.get("practitioner"), f"{where}/practitioner", "Practitioner")
    values["organization_id"] = ctx.ref_any(res.get("organization"), f"{where}/organization", "Organization")
    ctx.add("practitioner_roles", values)


def _medication(ctx: FhirContext, res: dict[str, Any], where: str) -> None:
    values = ctx.fact(res, where)
    values["form_code"] = concept_code(res.get("form"), f"{where}/form")
    ctx.add("medications", values)


US_CORE_MAPPERS: dict[str, Mapper] = {
    "MedicationRequest": _medication_request,
    "DiagnosticReport": _diagnostic_report,
    "DocumentReference": _document_reference,
    "CarePlan": _care_plan,
    "CareTeam": _care_team,
    "Goal": _goal,
    "ImagingStudy": _imaging_study,
    "Device": _device,
    "Claim": _claim,
    "ExplanationOfBenefit": _explanation_of_benefit,
    "Organization": _organization,
    "Location": _location,
    "Practitioner": _practitioner,
    "PractitionerRole": _practitioner_role,
    "Medication": _medication,
}
