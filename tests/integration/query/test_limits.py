"""Abuse limits answer with clear GraphQL errors; errors never carry stack traces or SQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from .conftest import Api, Canonical, query_settings


def code(body: dict[str, Any]) -> str:
    return str(body["errors"][0].get("extensions", {}).get("code", body["errors"][0]["message"]))


async def test_a_page_beyond_the_maximum_is_refused(api: Api) -> None:
    body = await api.gql("{ records(first: 101) { edges { cursor } } }")
    assert body["data"] is None and code(body) == "PAGE_SIZE"
    assert "between 1 and 100" in body["errors"][0]["message"]
    body = await api.gql("query($n: Int) { records(first: $n) { edges { cursor } } }", {"n": 5000})
    assert code(body) == "PAGE_SIZE"


async def test_a_deep_query_is_refused(api: Api) -> None:
    hop = "patient { subject { patients { record { "
    deep = "{ records { edges { node { " + hop * 3 + "id" + " } } } }" * 3 + " } } } }"
    body = await api.gql(deep)
    assert body["data"] is None and "exceeds maximum operation depth" in body["errors"][0]["message"]


async def test_a_costly_query_is_refused(api: Api) -> None:
    facts = "".join(
        f"{f}(first: 100) {{ edges {{ node {{ codings {{ code }} record {{ id }} }} }} }} "
        for f in ("encounters", "conditions", "procedures")
    )
    costly = '{ subjects(token: "x") { patients { ' + facts + "} } }"
    body = await api.gql(costly)
    assert body["data"] is None and code(body) == "QUERY_TOO_COSTLY"


async def test_a_long_query_and_a_large_body_are_refused(api: Api) -> None:
    body = await api.gql("{ __typename " + " " * 9000 + "}")
    assert code(body) == "QUERY_TOO_LONG"
    response = await api.post("{ __typename }", {"pad": "x" * 70_000}, token=api.token())
    assert response.status_code == 413


async def test_introspection_is_off_outside_local(api: Api) -> None:
    body = await api.gql("{ __schema { types { name } } }")
    assert body["data"] is None and "introspection has been disabled" in body["errors"][0]["message"]


async def test_bad_arguments_are_clear_errors(api: Api) -> None:
    assert code(await api.gql('{ records(after: "garbage") { edges { cursor } } }')) == "BAD_CURSOR"
    assert code(await api.gql('{ record(id: "not-a-uuid") { id } }')) == "BAD_ID"
    many = '{ recordCounts(bucket: HOUR, since: "2000-01-01T00:00:00Z", until: "2024-01-01T00:00:00Z") { count } }'
    assert code(await api.gql(many)) == "TOO_MANY_BUCKETS"


async def test_errors_carry_no_stack_trace_and_no_sql(api: Api, canonical: Canonical) -> None:
    repo = api.app.state.repo
    original = repo.db.fetch

    async def broken(sql: str, *args: Any) -> Any:
        return await original("SELECT * FROM canonical.no_such_table WHERE secret = 'x'")

    repo.db.fetch = broken
    try:
        response = await api.post("{ records { edges { cursor } } }", token=api.token())
    finally:
        repo.db.fetch = original
    text = response.text
    assert response.status_code == 200
    assert response.json()["errors"][0]["message"] == "internal error"
    for leak in ("Traceback", "SELECT", "no_such_table", "canonical.", "asyncpg", "stacktrace", "exception"):
        assert leak not in text


@pytest.fixture
async def local_client(canonical: Canonical, jwks_server: Any) -> AsyncIterator[httpx.AsyncClient]:
    from exchange.query.app import create_app

    app = create_app(query_settings(canonical, jwks_server, ENV="local"))
    async with LifespanManager(app, startup_timeout=30):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://q.test") as client:
            yield client


async def test_the_served_schema_is_the_contract(local_client: httpx.AsyncClient) -> None:
    from graphql import (
        build_client_schema,
        build_schema,
        get_introspection_query,
        lexicographic_sort_schema,
        print_schema,
    )

    from .conftest import REPO

    lines = (REPO / "contracts" / "graphql" / "schema.graphql").read_text().splitlines()
    contract = "\n".join(line for line in lines if not line.startswith("#"))
    response = await local_client.post("/graphql", json={"query": get_introspection_query(descriptions=True)},
                                       headers={"Authorization": "Bearer dev"})  # fmt: skip
    served = print_schema(lexicographic_sort_schema(build_client_schema(response.json()["data"])))
    assert served == print_schema(lexicographic_sort_schema(build_schema(contract)))


@pytest.mark.parametrize(
    "body",
    [b"null", b'"a string"', b"42", b"true", b"[]", b"[1, 2]", b"{not json", b"", b'{"query": 7}', b'{"variables": []}',
     b'{"query": "{ __typename }", "operationName": 7}', b'{"query": "{ __typename }", "extensions": "x"}'],
)  # fmt: skip
async def test_any_body_that_is_not_a_graphql_request_is_a_4xx_problem_never_a_500(api: Api, body: bytes) -> None:
    headers = {"Authorization": f"Bearer {api.token()}", "Content-Type": "application/json"}
    response = await api.client.post("/graphql", content=body, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == response.status_code
