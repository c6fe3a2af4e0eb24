"""Where the shared test data lives: `../shared/data` beside the repository (as laid out for
developers and CI), or `$EXCHANGE_SHARED_DATA`. Tests that need it fail when it is missing."""

from __future__ import annotations

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
    first three about Patient `patient_id` (by `patient` or `subject`), the last about no one."""
    patient = {"reference": f"Patient/{patient_id}"}
    return [
        {"resourceType": "Device", "id": f"dev-{patient_id}", "status": "active", "patient": patient,
         "type": {"coding": [{"system": "http://snomed.info/sct", "code": "72506001"}]}, "serialNumber": "SN-1"},
        {"resourceType": "Claim", "id": f"claim-{patient_id}", "status": "active", "use": "claim", "patient": patient,
         "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
         "created": "2020-01-01", "provider": {"reference": "Organization/org-1"},
         "priority": {"coding": [{"code": "normal"}]},
         "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Cigna Health"}}],
         "total": {"value": 129.5, "currency": "USD"}},
        {"resourceType": "DiagnosticReport", "id": f"dr-{patient_id}", "status": "final", "subject": patient,
         "code": {"coding": [{"system": "http://loinc.org", "code": "51990-0"}]}},
        {"resourceType": "Provenance", "id": f"prov-{patient_id}", "target": [patient],
         "recorded": "2020-01-01T10:00:00Z", "agent": [{"who": {"reference": "Practitioner/pr-1"}}]},
    ]  # fmt: skip


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
