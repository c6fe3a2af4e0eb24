"""Cost, page size and cursor rules, without a server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from graphql import parse

from exchange.query.app import build_schema
from exchange.query.limits import LIST_FACTOR, QueryError, field_kinds, page_size, query_cost
from exchange.query.repo import Page, Repo
from exchange.query.schema import decode_cursor, encode_cursor
from exchange.query.settings import QuerySettings

SETTINGS = QuerySettings(ENV="local", DATABASE_URL="postgresql://q@127.0.0.1/q")
KINDS = field_kinds(build_schema(SETTINGS)._schema)


def cost(query: str, variables: dict[str, object] | None = None) -> int:
    return query_cost(parse(query), None, variables, KINDS, default_page=20, max_page=100)


def test_connections_are_paged_and_edges_are_not_counted_twice() -> None:
    assert KINDS["records"] == "paged" and KINDS["encounters"] == "paged"
    assert KINDS["subjects"] == "list" and "edges" not in KINDS


def test_cost_multiplies_children_by_the_page_size() -> None:
    assert cost("{ records(first: 10) { edges { node { id } } } }") == 1 + 10 * (1 + 1 + 1)
    assert cost("{ records { edges { node { id } } } }") == 1 + 20 * 3


def test_cost_reads_first_from_variables_and_fragments() -> None:
    query = "query($n: Int) { records(first: $n) { ...page } } fragment page on RecordConnection { edges { cursor } }"
    assert cost(query, {"n": 7}) == 1 + 7 * 2


def test_unpaged_lists_count_as_several() -> None:
    assert cost('{ subjects(token: "x") { id } }') == 1 + LIST_FACTOR


def test_a_page_beyond_the_maximum_is_refused() -> None:
    with pytest.raises(QueryError, match="between 1 and 100"):
        cost("{ records(first: 101) { edges { cursor } } }")
    with pytest.raises(QueryError):
        cost("query($n: Int) { records(first: $n) { edges { cursor } } }", {"n": 0})


def test_page_size_defaults_and_bounds() -> None:
    assert page_size(None, 20, 100) == 20
    assert page_size(100, 20, 100) == 100
    with pytest.raises(QueryError):
        page_size(-1, 20, 100)


def test_cursors_round_trip_and_garbage_is_refused() -> None:
    ts, rid = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), uuid.uuid4()
    assert decode_cursor(encode_cursor(ts, rid)) == (ts, rid)
    with pytest.raises(QueryError, match="cursor"):
        decode_cursor("bm90LWEtY3Vyc29y")


class _Capture:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    async def fetch(self, sql: str, *args: object) -> list[object]:
        self.calls.append((sql, args))
        return []


async def test_every_tenant_query_binds_the_tenant() -> None:
    db = _Capture()
    repo = Repo(db)  # type: ignore[arg-type]
    page = Page(5, (datetime(2024, 1, 1, tzinfo=UTC), uuid.uuid4()))
    await repo.records("acme", [uuid.uuid4()])
    await repo.record_page("acme", page, "Patient", None)
    await repo.facts("conditions", "subject", "acme", [uuid.uuid4()], page)
    await repo.records_of_subjects("acme", [uuid.uuid4()], page)
    await repo.subjects_by_token("acme", "tok", None)
    for sql, args in db.calls:
        assert "acme" in args and "tenant =" in sql, sql


async def test_linkage_queries_drop_the_tenant_filter_only_when_asked() -> None:
    db = _Capture()
    repo = Repo(db)  # type: ignore[arg-type]
    await repo.facts("conditions", "subject", None, [uuid.uuid4()], Page(5))
    assert "tenant" not in db.calls[0][0]
