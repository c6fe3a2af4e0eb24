"""HIPAA Safe Harbor in GraphQL answers (ADR 0014), over what the real normalizer made of the whole
Synthea sample: every fact of every patient, paged through, carries years only (none for subjects
aged 90+), and no answer holds a name, identifier, address, full date or source id of the sample."""

from __future__ import annotations

import json
from typing import Any

from exchange_devtools.testdata import synthea_dates_and_ids, synthea_identity

from .conftest import Api, Canonical

YEARS = {
    "encounters": ("Encounter", "periodStartYear periodEndYear"),
    "conditions": ("Condition", "onsetYear abatementYear recordedYear"),
    "observations": ("Observation", "effectiveYear"),
    "immunizations": ("Immunization", "occurredYear"),
    "allergyIntolerances": ("AllergyIntolerance", "recordedYear"),
    "procedures": ("Procedure", "performedStartYear performedEndYear"),
}
"""Per fact field of a patient: its GraphQL type and its year fields."""
SUBJECT = "subject { id birthYear ageOver89 sex zip3 }"


async def facts_of(api: Api, patient: str, field: str) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        kind, years = YEARS[field]
        body = await api.gql(
            f"""query($id: ID!, $after: String) {{ patient(id: $id) {{ {field}(first: 100, after: $after) {{
                 edges {{ node {{ id code codings {{ system code }} ... on {kind} {{ {years} }} }} }}
                 pageInfo {{ hasNextPage endCursor }} }} }} }}""",
            {"id": patient, "after": after},
        )
        assert "errors" not in body, body
        page = body["data"]["patient"][field]
        nodes += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


async def test_graphql_answers_are_safe_harbor_for_the_whole_sample(api: Api, canonical: Canonical) -> None:
    patients = await canonical.fetch(
        "SELECT id FROM canonical.patients WHERE tenant = 'acme' AND record_id IS NOT NULL"
    )
    assert len(patients) == len(canonical.patient_ids)
    answers: list[Any] = []
    facts, elders = 0, 0
    for row in patients:
        body = await api.gql(
            f"query($id: ID!) {{ patient(id: $id) {{ id deceased {SUBJECT} }} }}", {"id": str(row["id"])}
        )
        patient = body["data"]["patient"]
        answers.append(patient)
        subject = patient["subject"]
        years: list[int | None] = []
        for field, (_, names) in YEARS.items():
            nodes = await facts_of(api, patient["id"], field)
            answers.append(nodes)
            facts += len(nodes)
            years += [node[name] for node in nodes for name in names.split()]
        assert all(y is None or isinstance(y, int) for y in years)
        if subject["ageOver89"]:
            elders += 1
            assert subject["birthYear"] is None
            assert set(years) == {None}, "a 90+ subject's facts keep no year"
        else:
            assert isinstance(subject["birthYear"], int) and any(isinstance(y, int) for y in years)
        assert subject["zip3"] is None or len(subject["zip3"]) == 3
    assert elders == 3 and facts > 4000  # three Synthea patients born in 1927, thousands of facts
    text = json.dumps(answers)
    for value in (*synthea_identity(), *synthea_dates_and_ids()):
        assert value not in text, "an identifier, a full date or a source id in a GraphQL answer"
