"""The native envelope: validation against the ingest contract, upcast v1 → v2, and mapping.

See docs/adr/0005-record-schema-v2.md. v2 splits v1's `subject.name` into `given_names` +
`family_name` and groups the address; `upcast_v1()` splits the name on its last space and moves
`postal_code` into `address`. `data` is read per record type (the fields the ADR lists); every
other key in `data` is ignored, so free text there never reaches the canonical schema.
"""

from __future__ import annotations

import functools
import uuid
from datetime import date
from typing import Any

from jsonschema import Draft202012Validator

from exchange.core.contracts import error_pointers, load_document
from exchange.core.errors import PoisonError
from exchange.normalizer import deid
from exchange.normalizer.fhir import coding_pair, codings, decimal, first_code, token, unmappable, year
from exchange.normalizer.model import NATIVE_PATIENT, Mapped, Person, PersonLink, Row

INGEST_CONTRACT = "api/ingest.v1.openapi.yaml"
TABLES = {
    "encounter": "encounters",
    "condition": "conditions",
    "observation": "observations",
    "immunization": "immunizations",
    "allergy_intolerance": "allergy_intolerances",
    "procedure": "procedures",
}
KINDS = {
    "patient": "Patient",
    "encounter": "Encounter",
    "condition": "Condition",
    "observation": "Observation",
    "immunization": "Immunization",
    "allergy_intolerance": "AllergyIntolerance",
    "procedure": "Procedure",
}


@functools.cache
def envelope_validator(version: str | None = None) -> Draft202012Validator:
    """The ingest contract's `NativeEnvelope` (v1 | v2), or one version of it, as a 2020-12 validator."""
    components = load_document(INGEST_CONTRACT)["components"]
    name = {"v1": "NativeEnvelopeV1", "v2": "NativeEnvelopeV2"}.get(version or "", "NativeEnvelope")
    # $refs inlined once: resolving them per record cost as much as the validation itself.
    schema = inline_refs(components["schemas"][name], components)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def inline_refs(node: Any, components: dict[str, Any], depth: int = 0) -> Any:
    """A copy of `node` with local `#/components/schemas/X` refs replaced by their (acyclic) targets."""
    if depth > 20:
        raise ValueError("schema nesting too deep (a cycle?)")
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            target = components["schemas"][ref.rsplit("/", 1)[1]]
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**inline_refs(target, components, depth + 1), **inline_refs(rest, components, depth + 1)}
        return {k: inline_refs(v, components, depth + 1) for k, v in node.items() if k != "discriminator"}
    if isinstance(node, list):
        return [inline_refs(v, components, depth + 1) for v in node]
    return node


def validate_envelope(envelope: Any) -> None:
    """PoisonError("schema-invalid") naming the failing pointers when the envelope breaks the contract."""
    version = envelope.get("schema_version") if isinstance(envelope, dict) else None
    validator = envelope_validator(version if isinstance(version, str) else None)
    if not validator.is_valid(envelope):
        pointers = ", ".join(f"{e['pointer']} ({e['reason']})" for e in error_pointers(validator, envelope, 5))
        raise PoisonError("schema-invalid", f"native envelope violates the contract at {pointers}")


def upcast_v1(envelope: dict[str, Any]) -> dict[str, Any]:
    """A v1 envelope as v2: `name` split on its last space; `postal_code` moved into `address`.

    A one-word name becomes the family name with no given names (the tokens needing a first name
    come out blank rather than wrong).
    """
    subject = dict(envelope["subject"])
    given, _, family = subject.pop("name").strip().rpartition(" ")
    upcast: dict[str, Any] = {"given_names": given.split()[:5], "family_name": family}
    for key in ("birth_date", "sex", "ssn"):
        if key in subject:
            upcast[key] = subject[key]
    if "postal_code" in subject:
        upcast["address"] = {"postal_code": subject["postal_code"]}
    return {**envelope, "schema_version": "v2", "subject": upcast}


def to_v2(envelope: Any) -> dict[str, Any]:
    """Validate against the contract, then upcast v1 → v2 (v2 passes through)."""
    validate_envelope(envelope)
    return upcast_v1(envelope) if envelope["schema_version"] == "v1" else dict(envelope)


def _code(data: dict[str, Any]) -> list[dict[str, str]]:
    if "codings" in data:
        if not isinstance(data["codings"], list):
            raise unmappable("/data/codings", "not a list")
        return codings({"coding": data["codings"]}, "/data")
    if "code" in data:
        return coding_pair(data["code"], "/data/code")
    return []


def _value(values: dict[str, Any], data: dict[str, Any]) -> None:
    values.update(value_num=None, value_unit=None, value_code_system=None, value_code=None, value_bool=None)
    value = data.get("value")
    if isinstance(value, bool):
        values["value_bool"] = value
    elif isinstance(value, dict):
        values["value_code_system"], values["value_code"] = first_code(coding_pair(value, "/data/value"))
    elif value is not None:
        values["value_num"] = decimal(value, "/data/value")
    values["value_unit"] = token(data.get("unit"), "/data/unit")


def map_native(envelope: Any, ids: deid.CanonicalIds, fallback_id: str, today: date) -> Mapped:
    """Map a native envelope (v1 or v2) to canonical rows; facts point at the subject's patient."""
    v2 = to_v2(envelope)
    subject, data, record_type = v2["subject"], v2["data"], v2["record_type"]
    source = v2.get("source")
    source_id = f"native:{source['system']}|{source['record_id']}" if source else fallback_id
    address = subject.get("address") or {}
    given = subject.get("given_names") or []
    person = Person(
        first_name=given[0] if given else None,
        last_name=subject.get("family_name"),
        birth_date=subject.get("birth_date"),
        sex=subject.get("sex"),
        postal_code=address.get("postal_code"),
        ssn=subject.get("ssn"),
    )
    demo = deid.demographics(person.birth_date, person.sex, person.postal_code, today)
    mapped = Mapped(record_type=record_type, canonical_version="v2", persons=[PersonLink(NATIVE_PATIENT, person, demo)])
    if record_type == "patient":
        deceased = data.get("deceased")
        mapped.rows.append(
            Row(
                "patients",
                {
                    "id": NATIVE_PATIENT,
                    "subject_id": None,
                    "deceased": deceased if isinstance(deceased, bool) else None,
                },
            )
        )
        return mapped
    pairs = _code(data)
    if not pairs:
        raise unmappable("/data/code", "a coded value is required")
    system, code = first_code(pairs)
    occurred = data.get("start") or v2.get("occurred_at")
    values: dict[str, Any] = {
        "id": ids.of(KINDS[record_type], source_id),
        "patient_id": NATIVE_PATIENT,
        "status": token(data.get("status"), "/data/status"),
        "code_system": system,
        "code": code,
        "codings": pairs,
    }
    if record_type != "encounter":
        values["encounter_id"] = _encounter_ref(data, source, ids, mapped)
    if record_type == "encounter":
        values["class_code"] = token(data.get("class"), "/data/class")
        values["period_start_year"] = year(occurred, "/data/start")
        values["period_end_year"] = year(data.get("end"), "/data/end")
    elif record_type in ("condition", "allergy_intolerance"):
        values["clinical_status"] = token(data.get("clinical_status"), "/data/clinical_status")
        values["verification_status"] = token(data.get("verification_status"), "/data/verification_status")
        values["recorded_year"] = year(data.get("recorded"), "/data/recorded")
        if record_type == "condition":
            values["onset_year"] = year(data.get("onset") or occurred, "/data/onset")
            values["abatement_year"] = year(data.get("abatement"), "/data/abatement")
        else:
            values["category"] = token(data.get("category"), "/data/category")
            values["criticality"] = token(data.get("criticality"), "/data/criticality")
    elif record_type == "observation":
        values["category"] = token(data.get("category"), "/data/category")
        values["effective_year"] = year(data.get("effective") or occurred, "/data/effective")
        _value(values, data)
        values["value_num"], values["value_unit"] = deid.age_over_89(pairs, values["value_num"], values["value_unit"])
    elif record_type == "immunization":
        values["occurred_year"] = year(data.get("occurred") or occurred, "/data/occurred")
    elif record_type == "procedure":
        values["performed_start_year"] = year(occurred, "/data/start")
        values["performed_end_year"] = year(data.get("end"), "/data/end")
    mapped.rows.append(Row(TABLES[record_type], values))
    return mapped


def _encounter_ref(
    data: dict[str, Any], source: dict[str, Any] | None, ids: deid.CanonicalIds, mapped: Mapped
) -> uuid.UUID | None:
    ref = data.get("encounter")
    if ref is None:
        return None
    if not isinstance(ref, str) or source is None:
        raise unmappable("/data/encounter", "needs a string id and `source.system`")
    encounter = ids.of("Encounter", f"native:{source['system']}|{ref}")
    mapped.placeholders.append(("encounters", encounter))
    return encounter
