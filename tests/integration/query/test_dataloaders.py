"""N+1 avoided: a nested query runs a fixed number of SQL statements, whatever the number of parents."""

from __future__ import annotations

from .conftest import Api

NESTED = """query($n: Int) { records(recordType: "Patient", first: $n) { edges { node { id
  patient { id record { id } subject { id patients { id } records(first: 3) { edges { cursor } }
    encounters(first: 2) { edges { node { id record { id } } } }
    conditions(first: 2) { edges { node { id } } } procedures(first: 2) { edges { node { id } } } } } } } } }"""


async def run(api: Api, n: int) -> tuple[int, int]:
    before = await api.statements()
    body = await api.gql(NESTED, {"n": n})
    assert "errors" not in body, body
    edges = body["data"]["records"]["edges"]
    assert all(e["node"]["patient"]["subject"]["encounters"]["edges"] is not None for e in edges)
    return len(edges), int(await api.statements() - before)


async def test_a_nested_query_costs_one_statement_per_field_not_per_parent(api: Api) -> None:
    one, few = await run(api, 1)
    ten, many = await run(api, 10)
    assert (one, ten) == (1, 10)
    # records, patient-of-record, patients, record (Patient records + encounter records, twice batched at
    # most), subjects, patients of subject, records of subject, encounters, conditions, procedures.
    assert many == few, f"{many} statements for 10 parents vs {few} for 1: N+1"
    assert many <= 11
