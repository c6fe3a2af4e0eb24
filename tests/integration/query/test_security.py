"""Auth (401/403), tenant scoping in every resolver (BOLA), the linker role, the read-only role."""

from __future__ import annotations

import asyncpg
import pytest

from .conftest import ACME, BETA, OTHER, Api, Canonical
from .test_queries import token_of_observed

SUBJECT = """query($t: String!) { subjects(token: $t) { id patients { id tenant }
  records(first: 100) { edges { node { tenant } } } immunizations(first: 100) { edges { node { tenant } } }
  encounters(first: 100) { edges { node { tenant } } } } }"""


async def test_no_token_is_401_and_a_token_without_the_scope_is_403(api: Api) -> None:
    response = await api.post("{ records { edges { cursor } } }", token=None)
    assert response.status_code == 401 and response.headers["content-type"] == "application/problem+json"
    response = await api.post("{ records { edges { cursor } } }", token=api.token(scope="ingest:write"))
    assert response.status_code == 403 and "query:read" in response.json()["detail"]
    response = await api.post("{ __typename }", token=api.issuer.bad_signature_token(scope="query:read"))
    assert response.status_code == 401
    response = await api.post("{ __typename }", token="dev")  # ENV=test: the dev token is refused
    assert response.status_code == 401


async def test_each_tenant_sees_only_its_own_side_of_a_shared_subject(api: Api, canonical: Canonical) -> None:
    token = await token_of_observed(canonical)
    acme = (await api.gql(SUBJECT, {"t": token}, tenant=ACME))["data"]["subjects"]
    beta = (await api.gql(SUBJECT, {"t": token}, tenant=BETA))["data"]["subjects"]
    assert acme[0]["id"] == beta[0]["id"], "one person, one subject, across sources"
    for tenant, (subject,) in ((ACME, acme), (BETA, beta)):
        tenants = {p["tenant"] for p in subject["patients"]}
        tenants |= {
            e["node"]["tenant"] for f in ("records", "immunizations", "encounters") for e in subject[f]["edges"]
        }
        assert tenants == {tenant}
    assert beta[0]["encounters"]["edges"] == [] and acme[0]["encounters"]["edges"]


async def test_a_tenant_without_patients_of_the_subject_finds_nothing(api: Api, canonical: Canonical) -> None:
    token = await token_of_observed(canonical)
    assert (await api.gql(SUBJECT, {"t": token}, tenant=OTHER))["data"]["subjects"] == []


async def test_objects_of_another_tenant_resolve_to_null(api: Api, canonical: Canonical) -> None:
    (record,) = await canonical.fetch("SELECT id FROM canonical.records WHERE tenant = 'acme' LIMIT 1")
    (patient,) = await canonical.fetch("SELECT id FROM canonical.patients WHERE tenant = 'acme' LIMIT 1")
    body = await api.gql("query($r: ID!, $p: ID!) { record(id: $r) { id } patient(id: $p) { id } }",
                         {"r": str(record["id"]), "p": str(patient["id"])}, tenant=BETA)  # fmt: skip
    assert body == {"data": {"record": None, "patient": None}}
    mine = await api.gql("query($r: ID!) { record(id: $r) { id } }", {"r": str(record["id"])}, tenant=ACME)
    assert mine["data"]["record"]["id"] == str(record["id"])
    listed = await api.gql("{ records(first: 100) { edges { node { tenant } } } }", tenant=BETA)
    assert {e["node"]["tenant"] for e in listed["data"]["records"]["edges"]} == {BETA}
    counts = await api.gql('{ recordCounts(bucket: YEAR, since: "2024-01-01T00:00:00Z", until: "2025-01-01T00:00:00Z") '
                           "{ kind count } }", tenant=BETA)  # fmt: skip
    assert {c["kind"] for c in counts["data"]["recordCounts"]} == {"Patient", "Immunization"}


async def test_linkage_needs_the_linker_role(api: Api, canonical: Canonical) -> None:
    token = await token_of_observed(canonical)
    body = await api.gql("query($t: String!) { linkage(token: $t) { id } }", {"t": token}, tenant=ACME)
    assert body["data"] is None and body["errors"][0]["extensions"] == {"code": "FORBIDDEN"}


async def test_a_linker_gets_tokens_and_deidentified_facts_across_sources(api: Api, canonical: Canonical) -> None:
    token = await token_of_observed(canonical)
    body = await api.gql(
        """query($t: String!) { linkage(token: $t) { id tokens { t1 t2 t3 t4 t5 keyId } birthYear sex zip3
             sources { tenant patients } records(first: 100) { edges { node { tenant recordType } } }
             immunizations(first: 100) { edges { node { tenant code record { id } } } } } }""",
        {"t": token}, tenant=OTHER, roles=["linker"],
    )  # fmt: skip
    assert "errors" not in body, body
    (linked,) = body["data"]["linkage"]
    assert linked["tokens"]["t1"] == token
    assert linked["sources"] == [{"tenant": ACME, "patients": 1}, {"tenant": BETA, "patients": 1}]
    assert {e["node"]["tenant"] for e in linked["records"]["edges"]} == {ACME, BETA}
    facts = [e["node"] for e in linked["immunizations"]["edges"]]
    assert {f["tenant"] for f in facts} == {ACME, BETA}
    # The linker's own tenant holds none of these records: the pointer to them stays closed.
    assert all(f["record"] is None for f in facts)


async def test_the_linked_types_carry_no_raw_object_pointer(api: Api) -> None:
    from exchange.query.schema import LinkedRecord

    assert {f.name for f in LinkedRecord.__strawberry_definition__.fields} == {
        "id",
        "tenant",
        "record_type",
        "received_at",
    }


async def test_the_service_role_can_read_canonical_and_nothing_else(canonical: Canonical) -> None:
    conn = await asyncpg.connect(canonical.query_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM canonical.records") > 0
        assert await conn.fetchval("SHOW default_transaction_read_only") == "on"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM normalizer.inbox LIMIT 1")
        with pytest.raises(asyncpg.PostgresError):  # read-only transaction, and no INSERT grant anyway
            await conn.execute("SET default_transaction_read_only = off")
            await conn.execute("DELETE FROM canonical.records")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE canonical.evil (x int)")
    finally:
        await conn.close()


async def test_the_role_function_is_idempotent(canonical: Canonical) -> None:
    from exchange.query.roles import ensure_readonly_role, grant_statements

    role = canonical.query_dsn.split("//")[1].split(":")[0]
    await ensure_readonly_role(canonical.admin_dsn, role, "query-test-role-password-7f3a")
    conn = await asyncpg.connect(canonical.query_dsn)
    await conn.close()
    assert not any("INSERT" in s or "UPDATE" in s or "normalizer" in s for s in grant_statements(role, "db"))


async def test_a_broader_login_is_switched_to_the_role(canonical: Canonical, jwks_server: object) -> None:
    from exchange.query.db import open_pool

    from .conftest import query_settings

    role = canonical.query_dsn.split("//")[1].split(":")[0]
    settings = query_settings(canonical, jwks_server, DATABASE_URL=canonical.admin_dsn, QUERY_DB_ROLE=role)
    pool = await open_pool(settings)
    try:
        assert await pool.fetchval("SELECT current_user") == role
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pool.fetch("SELECT * FROM normalizer.outbox LIMIT 1")
    finally:
        await pool.close()


async def test_one_subject_profile_fragment_reads_both_views_of_a_subject(api: Api, canonical: Canonical) -> None:
    token = await token_of_observed(canonical)
    fragment = "fragment P on SubjectProfile { __typename id tokens { t1 } birthYear ageOver89 sex zip3 }"
    mine = await api.gql(f"query($t: String!) {{ subjects(token: $t) {{ ...P }} }} {fragment}", {"t": token})
    linked = await api.gql(
        f"query($t: String!) {{ linkage(token: $t) {{ ...P }} }} {fragment}",
        {"t": token},
        tenant=OTHER,
        roles=["linker"],
    )
    assert "errors" not in mine and "errors" not in linked, (mine, linked)
    ((subject,), (linked_subject,)) = mine["data"]["subjects"], linked["data"]["linkage"]
    assert (subject.pop("__typename"), linked_subject.pop("__typename")) == ("Subject", "LinkedSubject")
    assert subject == linked_subject and subject["tokens"] == {"t1": token}
