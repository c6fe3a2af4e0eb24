"""The US Core / Synthea set over GraphQL (API v2.2, ADR 0015): one hand-made resource of each type
about the observed Synthea patient, normalized by the real pipeline, served de-identified."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from exchange.normalizer.deid import CanonicalIds
from exchange_devtools.testdata import FREE_TEXT, FULL_DATE, SOURCE_IDENTIFIER, US_CORE_FACT_FIELDS

from .conftest import ACME, BETA, ID_KEY, Api, Canonical
from .test_queries import token_of_observed

FIELDS = US_CORE_FACT_FIELDS
COMMON = "id patientId status code codings { system code } record { recordType }"


def _selection(field: str) -> str:
    return f"{field} {{ edges {{ node {{ {COMMON} {FIELDS[field]} }} }} }}"


async def _facts(api: Api, canonical: Canonical, tenant: str = ACME) -> dict:
    token = await token_of_observed(canonical)
    query = "query($t: String!) { subjects(token: $t) { " + " ".join(map(_selection, FIELDS)) + " } }"
    body = await api.gql(query, {"t": token}, tenant=tenant)
    assert "errors" not in body, body
    return body


async def test_each_fact_type_of_the_set_is_served_on_the_subject_with_canonical_ids_and_years(
    api: Api, canonical: Canonical
) -> None:
    body = await _facts(api, canonical)
    (subject,) = body["data"]["subjects"]
    ids = CanonicalIds(ID_KEY, ACME)
    nodes = {}
    for field in FIELDS:
        (edge,) = subject[field]["edges"]
        nodes[field] = edge["node"]
        assert edge["node"]["patientId"] == str(ids.of("Patient", canonical.observed_patient)), field
        resource_type = field[0].upper() + field[1:].removesuffix("s").replace("Studie", "Study")
        assert edge["node"]["codings"] and edge["node"]["record"]["recordType"] == resource_type, field
    p = canonical.observed_patient
    assert nodes["medicationRequests"]["requesterId"] == str(ids.of("Practitioner", f"pr-{p}"))
    assert nodes["medicationRequests"]["authoredYear"] == 2020 and nodes["medicationRequests"]["intent"] == "order"
    assert nodes["diagnosticReports"]["resultIds"] == [str(ids.of("Observation", f"obs-{p}"))]
    assert nodes["documentReferences"]["contentType"] == "text/plain"
    assert (nodes["imagingStudies"]["seriesCount"], nodes["imagingStudies"]["instanceCount"]) == (1, 2)
    assert nodes["imagingStudies"]["code"] == "DX"
    assert nodes["careTeams"]["codings"] == [{"system": "http://snomed.info/sct", "code": "116154003"}]
    assert nodes["goals"]["status"] == "active" and nodes["goals"]["achievementStatus"] == "in-progress"
    assert nodes["devices"]["code"] == "72506001"
    claim, eob = nodes["claims"], nodes["explanationOfBenefits"]
    assert (claim["totalValue"], claim["currency"], claim["billableStartYear"]) == (129.5, "USD", 2020)
    assert claim["itemCodings"] == [{"system": "http://snomed.info/sct", "code": "185349003"}]
    assert (eob["paymentValue"], eob["outcome"], eob["claimId"]) == (103.6, "complete", claim["id"])
    assert eob["providerId"] == claim["providerId"] == str(ids.of("Organization", f"org-{p}"))
    encounter_ids = {n["encounterId"] for f, n in nodes.items() if "encounterId" in FIELDS[f]}
    assert len(encounter_ids) == 1 and None not in encounter_ids
    text = json.dumps(body)
    for secret in (FREE_TEXT, SOURCE_IDENTIFIER, FULL_DATE, p):
        assert secret not in text


async def test_another_tenant_sees_none_of_them(api: Api, canonical: Canonical) -> None:
    (subject,) = (await _facts(api, canonical, tenant=BETA))["data"]["subjects"]
    assert all(subject[field]["edges"] == [] for field in FIELDS)


async def test_the_entities_are_read_by_id_in_the_callers_tenant_only(api: Api, canonical: Canonical) -> None:
    ids = CanonicalIds(ID_KEY, ACME)
    p = canonical.observed_patient
    query = """query($o: ID!, $l: ID!, $pr: ID!, $r: ID!, $m: ID!) {
      organization(id: $o) { id code active zip3 record { recordType } }
      location(id: $l) { code zip3 organizationId }
      practitioner(id: $pr) { code active }
      practitionerRole(id: $r) { codings { system code } practitionerId organizationId }
      medication(id: $m) { code formCode } }"""
    variables = {"o": str(ids.of("Organization", f"org-{p}")), "l": str(ids.of("Location", f"loc-{p}")),
                 "pr": str(ids.of("Practitioner", f"pr-{p}")), "r": str(ids.of("PractitionerRole", f"role-{p}")),
                 "m": str(ids.of("Medication", f"med-{p}"))}  # fmt: skip
    data = (await api.gql(query, variables))["data"]
    assert data["organization"] == {"id": variables["o"], "code": "prov", "active": True, "zip3": "000",
                                    "record": {"recordType": "Organization"}}  # fmt: skip
    assert data["location"] == {"code": "HOSP", "zip3": "017", "organizationId": variables["o"]}
    assert data["practitioner"] == {"code": "MD", "active": True}
    assert data["practitionerRole"] == {
        "codings": [{"system": "http://nucc.org/provider-taxonomy", "code": "208D00000X"}],
        "practitionerId": variables["pr"], "organizationId": variables["o"],
    }  # fmt: skip
    assert data["medication"] == {"code": "834060", "formCode": "385055001"}
    other = (await api.gql(query, variables, tenant=BETA))["data"]
    assert other == dict.fromkeys(("organization", "location", "practitioner", "practitionerRole", "medication"))


async def test_fact_counts_count_the_new_kinds_by_year(api: Api) -> None:
    query = """query($s: DateTime!, $u: DateTime!) { claims: factCounts(kind: CLAIM, bucket: YEAR, since: $s,
      until: $u) { kind bucketStart count } devices: factCounts(kind: DEVICE, bucket: YEAR, since: $s, until: $u) {
      count } }"""
    since, until = datetime(2019, 1, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC)
    data = (await api.gql(query, {"s": since.isoformat(), "u": until.isoformat()}))["data"]
    assert [(c["kind"], c["bucketStart"][:10], c["count"]) for c in data["claims"]] == [("claims", "2020-01-01", 1)]
    assert data["devices"] == []  # a Device keeps no date (ADR 0015)
