"""HIPAA Safe Harbor canaries (45 CFR 164.514(b)(2), ADR 0014): one value of each of the 18
identifier kinds, seeded where real partners put them (narrative, extensions, contained resources,
other resources' identifiers, references' `display`, notes, free-text values, attachments, native
records' free-form `data`), goes through the real worker and the query service; none of them
appears outside the raw zone: not in any canonical table, not on record.normalized.v1 (nor in
its outbox), not in the worker's log, not in an exported span, not in a GraphQL answer."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import orjson
from asgi_lifespan import LifespanManager

from exchange.normalizer.model import ENTITY_TABLES
from exchange_devtools.engines.jaeger import JaegerServer
from exchange_devtools.testdata import FREE_TEXT, FULL_DATE, SOURCE_IDENTIFIER, US_CORE_FACT_FIELDS, us_core_resources

from .conftest import Stack, wait_for
from .test_normalizer_end_to_end import read_topic
from .test_traces import otel_env

CANARIES: dict[str, tuple[str, ...]] = {
    "names": ("Xanthippe", "Quorvald", "Octavian", "Zyrmeck", "Bellamira"),
    "geographic subdivisions": ("Vexmoor Lane", "Plimbridge", "Wexcombe County", "59231"),
    "dates": ("1953-11-17", "11/17/1953", "2019-08-23", "1930-04-02", "1931-06-15"),
    "phone numbers": ("406-555-0187", "4065550187"),
    "fax numbers": ("406-555-0143",),
    "email addresses": ("xq.quorvald@canarymail.example",),
    "social security numbers": ("512-44-8891", "512448891"),
    "medical record numbers": ("MRNQX77412",),
    "health plan beneficiary numbers": ("HPBNQX88321",),
    "account numbers": ("ACCTQX55190",),
    "certificate/license numbers": ("LICQX90817",),
    "vehicle identifiers": ("1HGCM82633A004352", "PLATEQX7491"),
    "device identifiers/serial numbers": ("SNQXDEV4471", "UDIQX00844588"),
    "URLs": ("quorvald-family.example", "photos.quorvald.example"),
    "IP addresses": ("203.0.113.77",),
    "biometric identifiers": ("FPRINTQX7Q2X9",),
    "full-face photographs": ("Q0FOQVJZUEhPVE9RWA",),
    "any other unique identifying number": ("UIDQX31337",),
}
SCT, LOINC = "http://snomed.info/sct", "http://loinc.org"
PATIENT = "Patient/MRNQX77412"
SUBJECT = {"reference": PATIENT, "display": "Xanthippe Quorvald"}
NARRATIVE = {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Xanthippe Quorvald, born "
             "11/17/1953, SSN 512-44-8891, 4417 Vexmoor Lane, Plimbridge; plate PLATEQX7491</div>"}  # fmt: skip


def ext(name: str, **value: Any) -> dict[str, Any]:
    return {"url": f"http://canary.example/fhir/StructureDefinition/{name}", **value}


def fhir_resources() -> list[dict[str, Any]]:
    patient = {
        "resourceType": "Patient",
        "id": "MRNQX77412",
        "text": NARRATIVE,
        "extension": [
            ext("birthPlace", valueAddress={"city": "Plimbridge", "district": "Wexcombe County", "state": "MT"}),
            ext("mothersMaidenName", valueString="Bellamira"),
            ext("vehicle", valueString="1HGCM82633A004352"),
            ext("portal-ip", valueString="203.0.113.77"),
            ext("homepage", valueUrl="https://quorvald-family.example/"),
        ],
        "identifier": [
            {"type": {"coding": [{"code": "MR"}]}, "system": "urn:canary:mrn", "value": "MRNQX77412"},
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "512-44-8891"},
            {"type": {"coding": [{"code": "MB"}]}, "system": "urn:canary:plan", "value": "HPBNQX88321"},
            {"type": {"coding": [{"code": "DL"}]}, "system": "urn:canary:dl", "value": "LICQX90817"},
            {"system": "urn:canary:fingerprint", "value": "FPRINTQX7Q2X9"},
            {"system": "urn:canary:uid", "value": "UIDQX31337"},
        ],
        "name": [{"use": "official", "given": ["Xanthippe"], "family": "Quorvald", "text": "Xanthippe Quorvald"}],
        "telecom": [
            {"system": "phone", "value": "406-555-0187"},
            {"system": "fax", "value": "406-555-0143"},
            {"system": "email", "value": "xq.quorvald@canarymail.example"},
            {"system": "url", "value": "https://quorvald-family.example/"},
        ],
        "gender": "female",
        "birthDate": "1953-11-17",
        "address": [
            {
                "line": ["4417 Vexmoor Lane"],
                "city": "Plimbridge",
                "district": "Wexcombe County",
                "state": "MT",
                "postalCode": "59231",
            }
        ],
        "photo": [
            {
                "contentType": "image/jpeg",
                "data": "Q0FOQVJZUEhPVE9RWA==",
                "title": "Xanthippe",
                "url": "https://photos.quorvald.example/x.jpg",
            }
        ],
        "contact": [
            {
                "name": {"family": "Quorvald", "given": ["Bellamira"]},
                "telecom": [{"system": "phone", "value": "4065550187"}],
            }
        ],
        "generalPractitioner": [{"reference": "Practitioner/LICQX90817", "display": "Dr Bellamira Zyrmeck"}],
    }
    encounter = {
        "resourceType": "Encounter",
        "id": "enc-1",
        "text": NARRATIVE,
        "status": "finished",
        "contained": [
            {
                "resourceType": "Practitioner",
                "id": "prac",
                "name": [{"family": "Zyrmeck"}],
                "qualification": [{"identifier": [{"value": "LICQX90817"}], "code": {"text": "MD"}}],
            },
            {
                "resourceType": "Account",
                "id": "acct",
                "status": "active",
                "identifier": [{"value": "ACCTQX55190"}],
                "subject": [SUBJECT],
            },
            {
                "resourceType": "Coverage",
                "id": "cov",
                "status": "active",
                "subscriberId": "HPBNQX88321",
                "beneficiary": SUBJECT,
                "payor": [{"display": "Plimbridge Mutual"}],
            },
        ],
        "extension": [ext("transport", valueString="ambulance plate PLATEQX7491 VIN 1HGCM82633A004352")],
        "identifier": [{"system": "urn:canary:account", "value": "ACCTQX55190"}],
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [
            {
                "coding": [{"system": SCT, "code": "185349003", "display": "Visit of Xanthippe"}],
                "text": "Xanthippe Quorvald check-up",
            }
        ],
        "subject": SUBJECT,
        "participant": [{"individual": {"reference": "#prac", "display": "Dr Zyrmeck LICQX90817"}}],
        "period": {"start": "2019-08-23T10:11:12-06:00", "end": "2019-08-23T11:00:00-06:00"},
        "account": [{"reference": "#acct", "display": "Account ACCTQX55190"}],
        "location": [{"location": {"display": "4417 Vexmoor Lane, Plimbridge"}}],
        "serviceProvider": {"identifier": {"value": "UIDQX31337"}, "display": "Plimbridge clinic"},
    }
    device = {"resourceType": "Device", "id": "dev", "serialNumber": "SNQXDEV4471",
              "udiCarrier": [{"deviceIdentifier": "UDIQX00844588"}], "patient": SUBJECT}  # fmt: skip
    condition = {
        "resourceType": "Condition",
        "id": "cond-1",
        "text": NARRATIVE,
        "extension": [ext("reported-from", valueUrl="https://quorvald-family.example/diary")],
        "identifier": [{"value": "UIDQX31337"}],
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {
            "coding": [{"system": SCT, "code": "44465007", "display": "Sprain, Xanthippe"}],
            "text": "Xanthippe Quorvald sprained an ankle",
        },
        "subject": SUBJECT,
        "encounter": {"reference": "Encounter/enc-1", "display": "Visit 2019-08-23"},
        "onsetDateTime": "2019-08-23",
        "recordedDate": "2019-08-23T12:00:00Z",
        "recorder": {"identifier": {"value": "LICQX90817"}, "display": "Dr Zyrmeck"},
        "note": [{"text": "Mail xq.quorvald@canarymail.example, fax 406-555-0143"}],
    }
    observations = [
        {"resourceType": "Observation", "id": "obs-1", "status": "final", "contained": [device],
         "extension": [ext("source-ip", valueString="203.0.113.77")],
         "code": {"coding": [{"system": LOINC, "code": "29463-7"}], "text": "Weight of Xanthippe"},
         "subject": SUBJECT, "effectiveDateTime": "2019-08-23T10:30:00Z",
         "valueQuantity": {"value": 72.5, "unit": "kg for Xanthippe Quorvald", "system": "http://unitsofmeasure.org",
                           "code": "kg"},
         "device": {"reference": "#dev", "display": "Scale SNQXDEV4471"},
         "performer": [{"display": "Dr Zyrmeck", "identifier": {"value": "LICQX90817"}}]},
        {"resourceType": "Observation", "id": "obs-2", "status": "final",
         "code": {"coding": [{"system": LOINC, "code": "8302-2"}]}, "subject": SUBJECT,
         "effectiveDateTime": "2019-08-23", "valueString": "biometric template FPRINTQX7Q2X9"},
        {"resourceType": "Observation", "id": "obs-3", "status": "final",
         "code": {"coding": [{"system": LOINC, "code": "72170-4"}]}, "subject": SUBJECT,
         "effectiveDateTime": "2019-08-23",
         "valueAttachment": {"contentType": "image/jpeg", "data": "Q0FOQVJZUEhPVE9RWA==",
                             "url": "https://photos.quorvald.example/face.jpg"}},
        {"resourceType": "Observation", "id": "obs-age", "status": "final",
         "code": {"coding": [{"system": LOINC, "code": "21612-7"}]}, "subject": SUBJECT,
         "effectiveDateTime": "2019-08-23", "valueQuantity": {"value": 97, "system": "http://unitsofmeasure.org",
                                                              "code": "a"}},
    ]  # fmt: skip
    immunization = {
        "resourceType": "Immunization", "id": "imm-1", "status": "completed", "text": NARRATIVE,
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]},
        "patient": SUBJECT, "encounter": {"reference": "Encounter/enc-1"},
        "occurrenceDateTime": "2019-08-23T10:40:00-06:00", "lotNumber": "UIDQX31337",
        "performer": [{"actor": {"display": "Dr Zyrmeck", "identifier": {"value": "LICQX90817"}}}],
        "note": [{"text": "Call 406-555-0187"}],
    }  # fmt: skip
    procedure = {
        "resourceType": "Procedure", "id": "proc-1", "status": "completed", "contained": [device],
        "code": {"coding": [{"system": SCT, "code": "73761001"}], "text": "Xanthippe's colonoscopy"},
        "subject": SUBJECT, "encounter": {"reference": "Encounter/enc-1"},
        "performedPeriod": {"start": "2019-08-23T10:45:00Z", "end": "2019-08-23T10:59:00Z"},
        "usedReference": [{"reference": "#dev", "display": "SNQXDEV4471"}],
        "focalDevice": [{"manipulated": {"display": "UDIQX00844588"}}],
        "performer": [{"actor": {"display": "Dr Bellamira Zyrmeck"}}],
        "report": [{"display": "http://quorvald-family.example/report"}],
    }  # fmt: skip
    allergy = {
        "resourceType": "AllergyIntolerance", "id": "alg-1",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": SCT, "code": "91936005"}], "text": "Penicillin (per Xanthippe)"},
        "patient": SUBJECT, "recordedDate": "2019-08-23",
        "asserter": {"identifier": {"system": "urn:canary:plan", "value": "HPBNQX88321"}, "display": "Bellamira"},
        "note": [{"text": "Reported from 203.0.113.77"}],
    }  # fmt: skip
    # A 96-year-old whose childhood immunization would date the birth: no year may survive.
    elder = {
        "resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "urn:uuid:6f1c0c1e-0000-4000-8000-000000000090",
             "resource": {"resourceType": "Patient", "id": "6f1c0c1e-0000-4000-8000-000000000090",
                          "name": [{"given": ["Octavian"], "family": "Zyrmeck"}], "gender": "male",
                          "birthDate": "1930-04-02", "address": [{"postalCode": "59231"}]}},
            {"fullUrl": "urn:uuid:6f1c0c1e-0000-4000-8000-000000000091",
             "resource": {"resourceType": "Immunization", "id": "6f1c0c1e-0000-4000-8000-000000000091",
                          "status": "completed",
                          "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "01"}]},
                          "patient": {"reference": "urn:uuid:6f1c0c1e-0000-4000-8000-000000000090",
                                      "display": "Octavian Zyrmeck"},
                          "occurrenceDateTime": "1931-06-15"}},
        ],
    }  # fmt: skip
    # Types the canonical schema does not model: raw-only, their content stays in the raw zone
    unmodelled = [
        {"resourceType": "Coverage", "id": "cov-1", "status": "active", "subscriberId": "HPBNQX88321",
         "identifier": [{"value": "HPBNQX88321"}], "beneficiary": SUBJECT, "payor": [{"display": "Bellamira Quorvald"}],
         "period": {"start": "2019-08-23"}},
        {"resourceType": "Account", "id": "ACCTQX55190", "status": "active", "identifier": [{"value": "ACCTQX55190"}],
         "subject": [SUBJECT], "name": "Xanthippe Quorvald household"},
    ]  # fmt: skip
    return [
        patient,
        encounter,
        condition,
        *observations,
        immunization,
        procedure,
        allergy,
        elder,
        *unmodelled,
        {**device, "id": "SNQXDEV4471", "text": NARRATIVE},
        *us_core(),
    ]


def us_core() -> list[dict[str, Any]]:
    """The US Core set beyond the first seven (ADR 0015), about the canary patient, each with the
    narrative, identifiers and an extension of canaries, and canaries in every free-text element,
    identifier, full date, address and telecom the hand-made resources carry."""
    swaps = {FREE_TEXT: "Xanthippe Quorvald, fax 406-555-0143", SOURCE_IDENTIFIER: "SNQXDEV4471",
             FULL_DATE: "2019-08-23", "Bedford": "Plimbridge", "03601": "59231", "01730-1234": "59231-0001",
             "555-0100": "406-555-0187", "sumiko@example.org": "xq.quorvald@canarymail.example"}  # fmt: skip
    text = json.dumps(us_core_resources("MRNQX77412", "enc-1"))
    for old, new in swaps.items():
        text = text.replace(old, new)
    identifiers = [{"value": "UIDQX31337"}, {"system": "urn:canary:plan", "value": "HPBNQX88321"}]
    seeded = {"text": NARRATIVE, "extension": [ext("portal-ip", valueString="203.0.113.77")], "identifier": identifiers}
    return [{**resource, **seeded} for resource in json.loads(text)]


def native_records() -> list[dict[str, Any]]:
    subject_v2 = {"given_names": ["Xanthippe"], "family_name": "Quorvald", "birth_date": "1953-11-17", "sex": "female",
                  "ssn": "512-44-8891", "address": {"line": ["4417 Vexmoor Lane"], "city": "Plimbridge", "state": "MT",
                                                    "postal_code": "59231"}}  # fmt: skip
    free_text = {
        "note": "Xanthippe Quorvald, 406-555-0187, fax 406-555-0143, xq.quorvald@canarymail.example",
        "mrn": "MRNQX77412", "plan_member_id": "HPBNQX88321", "account": "ACCTQX55190", "license": "LICQX90817",
        "vin": "1HGCM82633A004352", "device_serial": "SNQXDEV4471", "url": "https://quorvald-family.example/",
        "ip": "203.0.113.77", "fingerprint": "FPRINTQX7Q2X9", "photo": "Q0FOQVJZUEhPVE9RWA==", "uid": "UIDQX31337",
    }  # fmt: skip
    return [
        {"schema_version": "v2", "record_type": "observation", "source": {"system": "canary-ehr",
         "record_id": "MRNQX77412"}, "occurred_at": "2019-08-23T10:30:00Z", "subject": subject_v2,
         "data": {"code": {"system": LOINC, "code": "29463-7"}, "value": 72.5, "unit": "kg", **free_text}},
        {"schema_version": "v1", "record_type": "condition", "source": {"system": "canary-ehr",
         "record_id": "ACCTQX55190"}, "subject": {"name": "Xanthippe Quorvald", "birth_date": "1953-11-17",
         "ssn": "512448891", "postal_code": "59231"},
         "data": {"code": {"system": SCT, "code": "44465007"}, "onset": "2019-08-23", **free_text}},
    ]  # fmt: skip


def leaks(text: str) -> list[str]:
    """The identifier kinds whose canaries occur in `text` (numbers only between non-alphanumerics)."""
    found = []
    for kind, values in CANARIES.items():
        for value in values:
            pattern = re.escape(value)
            if not re.search("[A-Za-z]", value):
                pattern = f"(?<![0-9A-Za-z]){pattern}(?![0-9A-Za-z])"
            if re.search(pattern, text, re.IGNORECASE):
                found.append(f"{kind}: {value}")
    return found


async def canonical_text(stack: Stack) -> str:
    """Every value of every table of the canonical schema, and the normalizer's outbox, as text."""
    tables = await stack.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'canonical' ORDER BY 1"
    )
    assert len(tables) >= 9
    out = []
    for (table,) in tables:
        for row in await stack.fetch(f"SELECT * FROM canonical.{table}"):
            out.append(" | ".join(str(v) for v in row.values()))
    out += [r["payload"] + r["correlation_id"] for r in await stack.fetch("SELECT * FROM normalizer.outbox")]
    return "\n".join(out)


COMMON = "id tenant patientId status codeSystem code codings { system code } record { id recordType objectKey }"
FACT_FIELDS = {
    "encounters": "classCode periodStartYear periodEndYear",
    "conditions": "encounterId clinicalStatus verificationStatus onsetYear abatementYear recordedYear",
    "observations": "encounterId category effectiveYear valueNum valueUnit valueCodeSystem valueCode valueBool",
    "immunizations": "encounterId occurredYear",
    "allergyIntolerances": "encounterId clinicalStatus verificationStatus category criticality recordedYear",
    "procedures": "encounterId performedStartYear performedEndYear",
    **US_CORE_FACT_FIELDS,
}
US_CORE_TABLES = ("medication_requests", "diagnostic_reports", "document_references", "care_plans", "care_teams",
                  "goals", "imaging_studies", "claims", "explanation_of_benefits", *ENTITY_TABLES)  # fmt: skip
ENTITY_COMMON = "id tenant status codeSystem code codings { system code } record { id recordType objectKey }"
ENTITY_QUERIES = {
    "organizations": "organization(id: $id) { ENTITY active zip3 }",
    "locations": "location(id: $id) { ENTITY zip3 organizationId }",
    "practitioners": "practitioner(id: $id) { ENTITY active }",
    "practitioner_roles": "practitionerRole(id: $id) { ENTITY active practitionerId organizationId }",
    "medications": "medication(id: $id) { ENTITY formCode }",
}
FACTS = " ".join(f"{field} {{ edges {{ node {{ {COMMON} {more} }} }} }}" for field, more in FACT_FIELDS.items())
PATIENT_QUERY = f"""query($id: ID!) {{ patient(id: $id) {{ id tenant deceased record {{ id recordType }}
  subject {{ id tokens {{ keyId t1 t2 t3 t4 t5 }} birthYear ageOver89 sex zip3 }} {FACTS} }} }}"""
RECORDS_QUERY = """{ records(first: 100) { edges { node { id tenant sourceFormat recordType schemaVersion
  canonicalVersion objectBucket objectKey objectSha256 line receivedAt normalizedAt patient { id } } } } }"""


async def graphql_answers(stack: Stack, postgres: Any, jwks_server: Any) -> list[dict[str, Any]]:
    """What the query service answers about every patient and record of the tenant."""
    from exchange.query.app import create_app
    from exchange.query.roles import ensure_readonly_role
    from exchange.query.settings import QuerySettings

    role, password = f"query_ro_{uuid.uuid4().hex[:8]}", "canary-query-role-password-0123"
    await ensure_readonly_role(stack.dsn, role, password)
    database = stack.dsn.rsplit("/", 1)[1]
    dsn = f"postgresql://{role}:{password}@{postgres.host}:{postgres.port}/{database}"
    app = create_app(QuerySettings(ENV="test", DATABASE_URL=dsn, **jwks_server.env()))
    token = jwks_server.token(tenant="acme", sub="client-acme", scope="query:read", roles=[])
    answers = []
    async with LifespanManager(app, startup_timeout=30):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://query.test") as client:

            async def gql(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
                response = await client.post("/graphql", json={"query": query, "variables": variables or {}},
                                             headers={"Authorization": f"Bearer {token}"})  # fmt: skip
                assert response.status_code == 200, response.text
                body: dict[str, Any] = response.json()
                assert "errors" not in body, body
                return body

            answers.append(await gql(RECORDS_QUERY))
            for row in await stack.fetch("SELECT id FROM canonical.patients ORDER BY id"):
                answers.append(await gql(PATIENT_QUERY, {"id": str(row["id"])}))
            for table, selection in ENTITY_QUERIES.items():
                query = "query($id: ID!) { " + selection.replace("ENTITY", ENTITY_COMMON) + " }"
                for row in await stack.fetch(f"SELECT id FROM canonical.{table} ORDER BY id"):
                    answers.append(await gql(query, {"id": str(row["id"])}))
    return answers


async def test_no_safe_harbor_identifier_leaves_the_raw_zone(
    stack: Stack, jaeger: JaegerServer, postgres: Any, jwks_server: Any
) -> None:
    fhir = [orjson.dumps(r) for r in fhir_resources()]
    native = [orjson.dumps(r) for r in native_records()]
    events = await stack.ingest_ndjson(fhir) + await stack.ingest_ndjson(native, content_type="application/x-ndjson")
    raw = "\n".join(line.decode() for line in fhir + native)
    assert len({k for k, _ in (v.split(": ", 1) for v in leaks(raw))}) == 18, "every kind is seeded"
    await stack.publish(events)
    stack.start_worker(LOG_LEVEL="DEBUG", **otel_env(jaeger))

    async def all_done() -> bool:
        return await stack.count("normalizer.inbox") == len(events)

    await wait_for(all_done, timeout=120, what="every canary record in the inbox")
    normalized = await read_topic(stack, stack.out_topic, len(events))
    assert await stack.count("canonical.records") == len(events), "every record mapped (none dead-lettered)"

    # What did arrive: the facts, their years, Safe Harbor demographics (so the checks below bite)
    # (the native v1 record has no sex, so other tokens: another subject, same demographics)
    subjects = await stack.fetch("SELECT DISTINCT birth_year, zip3, age_over_89 FROM canonical.subjects ORDER BY 1")
    assert [tuple(r.values()) for r in subjects] == [(1953, "592", False), (None, "592", True)]
    years = await stack.fetch(
        "SELECT i.occurred_year, s.birth_year, s.age_over_89 FROM canonical.immunizations i "
        "JOIN canonical.patients p ON p.id = i.patient_id JOIN canonical.subjects s ON s.id = p.subject_id "
        "ORDER BY i.occurred_year NULLS FIRST"
    )
    assert [tuple(r.values()) for r in years] == [(None, None, True), (2019, 1953, False)]
    (obs,) = await stack.fetch("SELECT * FROM canonical.observations WHERE value_num = 72.5 AND record_id IN "
                               "(SELECT id FROM canonical.records WHERE source_format = 'fhir')")  # fmt: skip
    assert (obs["effective_year"], obs["value_unit"]) == (2019, "kg")
    (age,) = await stack.fetch("SELECT value_num, value_unit FROM canonical.observations WHERE code = '21612-7'")
    assert (age["value_num"], age["value_unit"]) == (90, "a"), "a stated age over 89 is aggregated"
    raw_only = await stack.fetch("SELECT resource_type FROM canonical.raw_resources ORDER BY 1")
    assert [r["resource_type"] for r in raw_only] == ["Account", "Coverage"]
    for table in ("devices", *US_CORE_TABLES):
        assert await stack.count(f"canonical.{table}") == (2 if table == "devices" else 1), table
    (claim,) = await stack.fetch(
        "SELECT created_year, total_value, zip3 FROM canonical.claims, canonical.organizations"
    )
    assert (claim["created_year"], float(claim["total_value"]), claim["zip3"]) == (2019, 129.5, "592")
    (encounter,) = await stack.fetch("SELECT * FROM canonical.encounters")
    assert (encounter["period_start_year"], encounter["period_end_year"]) == (2019, 2019)

    # Nowhere outside the raw zone
    assert leaks(await canonical_text(stack)) == [], "identifiers in the canonical schema"
    topic = "\n".join((m.value + b"".join(v for _, v in m.headers)).decode() for m in normalized)
    assert leaks(topic) == [], "identifiers on record.normalized.v1"
    assert "batch_normalized" in stack.log_text()
    assert leaks(stack.log_text()) == [], "identifiers in the worker's log"

    spans: list[dict[str, Any]] = []

    async def exported() -> bool:
        spans[:] = jaeger.traces("normalizer", lookback="1h", limit="50")
        return any(s["operationName"] == "canonical write" for t in spans for s in t["spans"])

    await wait_for(exported, timeout=30, what="the worker's spans in Jaeger")
    assert leaks(json.dumps(spans)) == [], "identifiers in exported spans"

    answers = await graphql_answers(stack, postgres, jwks_server)
    text = json.dumps(answers)
    assert leaks(text) == [], "identifiers in GraphQL answers"
    assert '"occurredYear": 2019' in text and '"periodStartYear": 2019' in text and '"zip3": "592"' in text
    assert '"authoredYear": 2019' in text and '"seriesCount": 1' in text and '"formCode": "385055001"' in text
    assert '"totalValue": 129.5' in text
    patients = [a["data"]["patient"] for a in answers[1:] if "patient" in a["data"] and a["data"]["patient"]["subject"]]
    entities = [a["data"] for a in answers if "patient" not in a["data"] and "records" not in a["data"]]
    assert len(entities) == 5 and all(e[kind] is not None for e in entities for kind in e), "one answer per entity"
    (old,) = [p for p in patients if p["subject"]["ageOver89"]]
    assert old["subject"]["birthYear"] is None
    assert [e["node"]["occurredYear"] for e in old["immunizations"]["edges"]] == [None]


async def test_the_canaries_would_be_caught() -> None:
    """The detector finds each kind in the raw records, and does not fire on ids and tokens."""
    raw = "\n".join(json.dumps(r) for r in (*fhir_resources(), *native_records()))
    assert {v.split(": ", 1)[0] for v in leaks(raw)} == set(CANARIES)
    innocent = f"{uuid.uuid4()} 592 2019 1953 trace 0af7651916cd43dd8448eb211c80319c duration 159231"
    assert leaks(innocent) == []
