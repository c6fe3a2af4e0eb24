"""Where the shared test data lives: `../shared/data` beside the repository (as laid out for
developers and CI), or `$EXCHANGE_SHARED_DATA`. Tests that need it fail when it is missing."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import orjson

from exchange_devtools.engines.base import REPO_ROOT

SHARED_DATA = Path(os.environ.get("EXCHANGE_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data")
FHIR_DIR = SHARED_DATA / "fhir"
SYNTHEA_DIR = FHIR_DIR / "synthea-10-patients"


def synthea(resource: str) -> Path:
    """The Synthea NDJSON file of one resource type; FileNotFoundError (one line) when absent."""
    path = SYNTHEA_DIR / f"{resource}.ndjson"
    if not path.exists():
        raise FileNotFoundError(f"test data missing: {path} (set EXCHANGE_SHARED_DATA to the shared/data folder)")
    return path


def unmodelled_resources(patient_id: str) -> list[dict[str, Any]]:
    """Hand-made, valid FHIR R4 resources of types the canonical schema does not model, the
    first three about Patient `patient_id` (by `subject`), the last about no one."""
    patient = {"reference": f"Patient/{patient_id}"}
    return [
        {"resourceType": "MedicationAdministration", "id": f"ma-{patient_id}", "status": "completed",
         "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                   "code": "834060"}]},
         "subject": patient, "effectiveDateTime": "2020-01-01T10:00:00Z"},
        {"resourceType": "Flag", "id": f"flag-{patient_id}", "status": "active", "subject": patient,
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "390952000"}]}},
        {"resourceType": "Basic", "id": f"basic-{patient_id}", "subject": patient,
         "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/basic-resource-type",
                              "code": "adverse-event"}]}},
        {"resourceType": "Provenance", "id": f"prov-{patient_id}", "target": [patient],
         "recorded": "2020-01-01T10:00:00Z", "agent": [{"who": {"reference": "Practitioner/pr-1"}}]},
    ]  # fmt: skip


FREE_TEXT = "Sumiko254 Medhurst46 told the nurse"
"""Free text seeded in every hand-made US Core resource (display, text, notes, names, attachments)."""
SOURCE_IDENTIFIER = "MRN-7734-ZK9"
"""A source identifier seeded in them (identifiers, serial and lot numbers, NPIs)."""
FULL_DATE = "2020-03-04"
"""The one full date they carry: only its year may leave the raw zone."""

_SNOMED = "http://snomed.info/sct"
_CLAIM_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]}


def _code(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": FREE_TEXT}], "text": FREE_TEXT}


def us_core_resources(patient_id: str, encounter_id: str) -> list[dict[str, Any]]:
    """One hand-made, valid FHIR R4 resource of each type of the US Core / Synthea set beyond the
    first seven (ADR 0015): ten about Patient `patient_id` (and Encounter `encounter_id` where the
    type has one), then Organization, Location, Practitioner, PractitionerRole, Medication. Each
    carries FREE_TEXT, SOURCE_IDENTIFIER and FULL_DATE where the type allows them."""
    p = patient_id
    patient, encounter = {"reference": f"Patient/{p}", "display": FREE_TEXT}, {"reference": f"Encounter/{encounter_id}"}
    when = f"{FULL_DATE}T10:00:00Z"
    ident = [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": SOURCE_IDENTIFIER}]
    note = [{"text": FREE_TEXT}]
    money = {"value": 129.5, "currency": "USD"}
    item = {"sequence": 1, "productOrService": _code(_SNOMED, "185349003"), "encounter": [encounter], "net": money}
    data = base64.b64encode(FREE_TEXT.encode()).decode()
    attachment = {"contentType": "text/plain", "data": data, "title": FREE_TEXT}
    return [
        {"resourceType": "MedicationRequest", "id": f"mr-{p}", "identifier": ident, "status": "active",
         "intent": "order", "medicationCodeableConcept": _code("http://www.nlm.nih.gov/research/umls/rxnorm", "834060"),
         "subject": patient, "encounter": encounter, "authoredOn": when, "note": note,
         "requester": {"reference": f"Practitioner/pr-{p}", "display": FREE_TEXT}, "dosageInstruction": note},
        {"resourceType": "DiagnosticReport", "id": f"dr-{p}", "identifier": ident, "status": "final",
         "category": [_code("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB")],
         "code": _code("http://loinc.org", "51990-0"), "subject": patient, "encounter": encounter,
         "effectiveDateTime": when, "issued": f"{when[:-1]}.000Z", "conclusion": FREE_TEXT,
         "result": [{"reference": f"Observation/obs-{p}", "display": FREE_TEXT}], "presentedForm": [attachment]},
        {"resourceType": "DocumentReference", "id": f"doc-{p}", "identifier": ident, "status": "current",
         "type": _code("http://loinc.org", "34117-2"), "description": FREE_TEXT,
         "category": [_code("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                            "clinical-note")],
         "subject": patient, "date": when, "author": [{"reference": f"Practitioner/pr-{p}", "display": FREE_TEXT}],
         "content": [{"attachment": attachment}], "context": {"encounter": [encounter], "period": {"start": when}}},
        {"resourceType": "CarePlan", "id": f"cp-{p}", "identifier": ident, "status": "active", "intent": "plan",
         "category": [_code(_SNOMED, "734163000")], "subject": patient, "encounter": encounter,
         "period": {"start": when}, "title": FREE_TEXT, "description": FREE_TEXT,
         "activity": [{"detail": {"status": "in-progress", "description": FREE_TEXT}}]},
        {"resourceType": "CareTeam", "id": f"ct-{p}", "identifier": ident, "status": "active", "name": FREE_TEXT,
         "subject": patient, "encounter": encounter, "period": {"start": when},
         "participant": [{"role": [_code(_SNOMED, "116154003")],
                          "member": {"reference": f"Practitioner/pr-{p}", "display": FREE_TEXT}}]},
        {"resourceType": "Goal", "id": f"goal-{p}", "identifier": ident, "lifecycleStatus": "active",
         "achievementStatus": _code("http://terminology.hl7.org/CodeSystem/goal-achievement", "in-progress"),
         "description": _code(_SNOMED, "281004"), "subject": patient, "startDate": FULL_DATE, "note": note},
        {"resourceType": "ImagingStudy", "id": f"img-{p}", "identifier": ident, "status": "available",
         "subject": patient, "encounter": encounter, "started": when, "numberOfSeries": 1, "numberOfInstances": 2,
         "description": FREE_TEXT, "series": [{
             "uid": "1.2.840.99999999.1.1", "description": FREE_TEXT,
             "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "DX", "display": FREE_TEXT},
             "instance": [{"uid": f"1.2.840.99999999.1.1.{i}", "title": FREE_TEXT,
                           "sopClass": {"system": "urn:ietf:rfc:3986", "code": "urn:oid:1.2.840.10008.5.1.4.1.1.1.1"}}
                          for i in (1, 2)]}]},
        {"resourceType": "Device", "id": f"dev-{p}", "identifier": ident, "status": "active", "patient": patient,
         "type": _code(_SNOMED, "72506001"), "serialNumber": SOURCE_IDENTIFIER, "manufactureDate": when,
         "udiCarrier": [{"deviceIdentifier": SOURCE_IDENTIFIER, "carrierHRF": SOURCE_IDENTIFIER}],
         "deviceName": [{"name": FREE_TEXT, "type": "user-friendly-name"}]},
        {"resourceType": "Claim", "id": f"claim-{p}", "identifier": ident, "status": "active", "use": "claim",
         "patient": patient, "type": _CLAIM_TYPE, "created": when, "billablePeriod": {"start": when, "end": when},
         "provider": {"reference": f"Organization/org-{p}", "display": FREE_TEXT},
         "priority": {"coding": [{"code": "normal"}]},
         "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": FREE_TEXT}}], "item": [item],
         "total": money},
        {"resourceType": "ExplanationOfBenefit", "id": f"eob-{p}", "identifier": ident, "status": "active",
         "type": _CLAIM_TYPE, "use": "claim", "patient": patient, "created": when, "outcome": "complete",
         "billablePeriod": {"start": when, "end": when}, "insurer": {"display": FREE_TEXT},
         "provider": {"reference": f"Organization/org-{p}"}, "claim": {"reference": f"Claim/claim-{p}"},
         "insurance": [{"focal": True, "coverage": {"display": FREE_TEXT}}], "item": [item],
         "total": [{"category": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adjudication",
                                             "code": "submitted"}]}, "amount": money}],
         "payment": {"amount": {"value": 103.6, "currency": "USD"}}},
        {"resourceType": "Organization", "id": f"org-{p}", "identifier": ident, "active": True, "name": FREE_TEXT,
         "type": [_code("http://terminology.hl7.org/CodeSystem/organization-type", "prov")],
         "telecom": [{"system": "phone", "value": "555-0100"}],
         "address": [{"line": [FREE_TEXT], "city": "Bedford", "postalCode": "03601"}]},
        {"resourceType": "Location", "id": f"loc-{p}", "identifier": ident, "status": "active", "name": FREE_TEXT,
         "type": [_code("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "HOSP")],
         "address": {"line": [FREE_TEXT], "city": "Bedford", "postalCode": "01730-1234"},
         "position": {"longitude": -71.2637, "latitude": 42.4906},
         "managingOrganization": {"reference": f"Organization/org-{p}", "display": FREE_TEXT}},
        {"resourceType": "Practitioner", "id": f"pr-{p}", "identifier": ident, "active": True,
         "name": [{"family": FREE_TEXT}], "telecom": [{"system": "email", "value": "sumiko@example.org"}],
         "qualification": [{"code": _code("http://terminology.hl7.org/CodeSystem/v2-0360", "MD")}]},
        {"resourceType": "PractitionerRole", "id": f"role-{p}", "identifier": ident, "active": True,
         "practitioner": {"reference": f"Practitioner/pr-{p}", "display": FREE_TEXT},
         "organization": {"reference": f"Organization/org-{p}"},
         "specialty": [_code("http://nucc.org/provider-taxonomy", "208D00000X")]},
        {"resourceType": "Medication", "id": f"med-{p}", "identifier": ident,
         "code": _code("http://www.nlm.nih.gov/research/umls/rxnorm", "834060"),
         "form": _code(_SNOMED, "385055001"), "batch": {"lotNumber": SOURCE_IDENTIFIER, "expirationDate": FULL_DATE}},
    ]  # fmt: skip


_BILLING = (
    "use createdYear billableStartYear billableEndYear totalValue currency providerId itemCodings { system code }"
)
US_CORE_FACT_FIELDS = {
    "medicationRequests": "encounterId intent medicationId requesterId authoredYear",
    "diagnosticReports": "encounterId category effectiveYear issuedYear resultIds",
    "documentReferences": "encounterId category contentType dateYear",
    "carePlans": "encounterId intent periodStartYear periodEndYear",
    "careTeams": "encounterId periodStartYear periodEndYear",
    "goals": "achievementStatus startYear",
    "imagingStudies": "encounterId startedYear seriesCount instanceCount",
    "devices": "",
    "claims": _BILLING,
    "explanationOfBenefits": f"{_BILLING} outcome paymentValue claimId",
}
"""GraphQL (API v2.2): each fact field of the set on a patient or subject, and its own fields."""


SYNTHEA_TYPES = ("Patient", "Encounter", "Condition", "Immunization", "AllergyIntolerance", "Procedure")
_FULL_DATE = re.compile(rb'"(\d{4}-\d{2}-\d{2})')


def synthea_identity() -> set[str]:
    """Identity in the Synthea sample (PII canaries): names, birth dates, identifiers (SSN, MRN,
    licence, passport), telecom, street and city, geolocation; values of 5 characters or more."""
    values: set[str] = set()
    for line in synthea("Patient").read_bytes().splitlines():
        patient = orjson.loads(line)
        for name in patient.get("name", []):
            values.add(name["family"])
            values.update(name.get("given", []))
        values.add(patient["birthDate"])
        values.update(i["value"] for i in patient.get("identifier", []))
        values.update(t["value"] for t in patient.get("telecom", []))
        for address in patient.get("address", []):
            values.update(address.get("line", []))
            values.add(address.get("city", ""))
            for geo in address.get("extension", []):
                values.update(str(e.get("valueDecimal")) for e in geo.get("extension", []))
    return {v for v in values if len(v) >= 5}


def synthea_dates_and_ids() -> set[str]:
    """Every full date (YYYY-MM-DD) and every resource id (possibly an MRN) of the Synthea sample:
    HIPAA Safe Harbor keeps neither outside the raw zone (ADR 0014)."""
    values: set[str] = set()
    for resource_type in SYNTHEA_TYPES:
        for line in synthea(resource_type).read_bytes().splitlines():
            if line.strip():
                values.update(m.decode() for m in _FULL_DATE.findall(line))
                values.add(orjson.loads(line)["id"])
    return values
