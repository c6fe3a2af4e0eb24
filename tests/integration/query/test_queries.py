"""The queries of the contract against the normalizer's real output."""

from __future__ import annotations

from .conftest import ACME, BETA, Api, Canonical

FACTS = "edges { cursor node { id tenant code codeSystem codings { system code } } } pageInfo { hasNextPage endCursor }"


async def token_of_observed(canonical: Canonical, rule: str = "t1") -> str:
    """A token of the subject with Observations (the first Synthea patient under 90, via tenant acme)."""
    rows = await canonical.fetch(
        f"SELECT DISTINCT s.{rule} AS token FROM canonical.subjects s JOIN canonical.patients p ON p.subject_id = s.id "
        "JOIN canonical.observations o ON o.patient_id = p.id WHERE p.tenant = 'acme'"
    )
    assert len(rows) == 1
    return str(rows[0]["token"])


async def test_canonical_rows_came_from_the_normalizer(canonical: Canonical) -> None:
    rows = await canonical.fetch("SELECT tenant, count(*) AS n FROM canonical.records GROUP BY tenant ORDER BY tenant")
    expected = {t: sum(n for (tt, _), n in canonical.lines.items() if tt == t) for t in (ACME, BETA)}
    assert {r["tenant"]: r["n"] for r in rows} == expected
    shared = await canonical.fetch(
        "SELECT count(DISTINCT subject_id) AS n FROM canonical.patients WHERE subject_id IS NOT NULL "
        "GROUP BY subject_id HAVING count(DISTINCT tenant) = 2"
    )
    assert len(shared) == len(canonical.patient_ids), "every Synthea person links across acme and beta"


async def test_a_subject_by_token_has_the_tenants_records_and_facts(api: Api, canonical: Canonical) -> None:
    token = await token_of_observed(canonical)
    body = await api.gql(
        """query($t: String!) { subjects(token: $t) { id tokens { t1 } birthYear sex zip3
             patients { id tenant record { recordType } }
             records(first: 5) { edges { node { recordType tenant } } pageInfo { hasNextPage } }
             encounters(first: 3) { FACTS } observations { edges { node { ... on Observation { valueNum valueUnit
               valueCode effectiveYear } } } } conditions { FACTS } immunizations { FACTS }
             allergyIntolerances { FACTS }
             procedures(first: 2) { FACTS } } }""".replace("FACTS", FACTS),
        {"t": token},
    )
    assert "errors" not in body, body
    (subject,) = body["data"]["subjects"]
    assert subject["tokens"]["t1"] == token
    assert [p["tenant"] for p in subject["patients"]] == [ACME]
    assert subject["patients"][0]["record"] == {"recordType": "Patient"}
    assert subject["records"]["pageInfo"]["hasNextPage"] is True
    assert {e["node"]["tenant"] for e in subject["records"]["edges"]} == {ACME}
    assert len(subject["encounters"]["edges"]) == 3 and subject["encounters"]["pageInfo"]["hasNextPage"]
    assert all(e["node"]["codings"] for e in subject["encounters"]["edges"])
    observations = [e["node"] for e in subject["observations"]["edges"]]
    # ordered by year only (ADR 0014): the three 2020 readings in id order, then 2021's
    assert [o["effectiveYear"] for o in observations] == [2020, 2020, 2020, 2021]
    assert sorted(o["valueNum"] for o in observations[:3]) == [121.0, 122.0, 123.0]
    assert observations[3]["valueNum"] is None
    assert observations[0]["valueUnit"] == "mm[Hg]" and observations[3]["valueCode"] == "266919005"
    assert len(subject["procedures"]["edges"]) == 2


async def test_a_subject_counts_its_raw_only_resources_by_type_in_the_callers_tenant_only(
    api: Api, canonical: Canonical
) -> None:
    token = await token_of_observed(canonical)
    query = "query($t: String!) { subjects(token: $t) { rawResourceCounts { resourceType count } } }"
    (subject,) = (await api.gql(query, {"t": token}))["data"]["subjects"]
    # MedicationAdministration, Flag, Basic (subject); the Provenance names no subject.
    assert subject["rawResourceCounts"] == [
        {"resourceType": "Basic", "count": 1}, {"resourceType": "Flag", "count": 1},
        {"resourceType": "MedicationAdministration", "count": 1},
    ]  # fmt: skip
    (other,) = (await api.gql(query, {"t": token}, tenant=BETA))["data"]["subjects"]
    assert other["rawResourceCounts"] == []
    rows = await canonical.fetch("SELECT resource_type, patient_id FROM canonical.raw_resources ORDER BY 1")
    assert [r["resource_type"] for r in rows] == ["Basic", "Flag", "MedicationAdministration", "Provenance"]
    assert rows[3]["patient_id"] is None


async def test_any_token_finds_the_subject(api: Api, canonical: Canonical) -> None:
    ids = set()
    for rule in ("t1", "t2", "t3", "t4", "t5"):
        token = await token_of_observed(canonical, rule)
        if set(token) == {"0"}:  # a blank token (attributes missing) links nobody, and says so
            refused = await api.gql("query($t: String!) { subjects(token: $t) { id } }", {"t": token})
            assert refused["errors"][0]["extensions"] == {"code": "BAD_TOKEN"}
            continue
        body = await api.gql("query($t: String!, $r: TokenRule) { subjects(token: $t, rule: $r) { id } }",
                             {"t": token, "r": rule.upper()})  # fmt: skip
        anyrule = await api.gql("query($t: String!) { subjects(token: $t) { id } }", {"t": token})
        assert body["data"]["subjects"] == anyrule["data"]["subjects"]
        ids.update(s["id"] for s in body["data"]["subjects"])
    assert len(ids) == 1


async def test_a_record_by_id_and_its_patient(api: Api, canonical: Canonical) -> None:
    (row,) = await canonical.fetch(
        "SELECT id FROM canonical.records WHERE tenant = 'acme' AND record_type = 'Condition' LIMIT 1"
    )
    body = await api.gql('query($id: ID!) { record(id: $id) { id recordType sourceFormat objectSha256 line '
                         'patient { id subject { id } } } }', {"id": str(row["id"])})  # fmt: skip
    record = body["data"]["record"]
    assert record["id"] == str(row["id"]) and record["recordType"] == "Condition" and record["sourceFormat"] == "fhir"
    assert len(record["objectSha256"]) == 64 and record["patient"]["subject"]["id"]


async def test_records_by_type_and_time_range_page_through_every_row(api: Api, canonical: Canonical) -> None:
    query = """query($after: String) { records(recordType: "Immunization", since: "2024-01-01T00:00:00Z",
                 until: "2025-01-01T00:00:00Z", first: 50, after: $after) {
                 edges { node { id recordType receivedAt } } pageInfo { hasNextPage endCursor } } }"""
    seen: list[str] = []
    after = None
    while True:
        page = (await api.gql(query, {"after": after}))["data"]["records"]
        seen += [e["node"]["id"] for e in page["edges"]]
        assert {e["node"]["recordType"] for e in page["edges"]} <= {"Immunization"}
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == canonical.lines[(ACME, "Immunization")]
    narrow = await api.gql(
        '{ records(recordType: "Immunization", since: "2024-02-01T00:00:00Z", '
        'until: "2024-03-01T00:00:00Z", first: 100) { edges { node { receivedAt } } } }'
    )
    months = {e["node"]["receivedAt"][:7] for e in narrow["data"]["records"]["edges"]}
    assert months == {"2024-02"}


async def test_counts_by_type_and_bucket(api: Api, canonical: Canonical) -> None:
    body = await api.gql('{ recordCounts(bucket: MONTH, since: "2024-01-01T00:00:00Z", until: "2025-01-01T00:00:00Z") '
                         '{ kind bucketStart count } }')  # fmt: skip
    counts = body["data"]["recordCounts"]
    assert sum(c["count"] for c in counts) == sum(n for (t, _), n in canonical.lines.items() if t == ACME)
    assert {c["bucketStart"][:10] for c in counts} <= {f"2024-{m:02d}-01" for m in range(1, 13)}
    facts = await api.gql('{ factCounts(kind: OBSERVATION, bucket: YEAR, since: "2000-01-01T00:00:00Z", '
                          'until: "2030-01-01T00:00:00Z") { kind bucketStart count } }')  # fmt: skip
    assert [(c["bucketStart"][:4], c["count"]) for c in facts["data"]["factCounts"]] == [("2020", 3), ("2021", 1)]
