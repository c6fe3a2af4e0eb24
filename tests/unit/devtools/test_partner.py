"""How the chaos partner keeps an answer: the services' own 5xx apart from the ingress's, and the
two 409s of an Idempotency-Key (ADR 0011) apart from each other."""

import httpx
import orjson

from exchange_devtools.partner import Delivery, Partner, outcome


def test_a_services_problem_json_5xx_keeps_its_status() -> None:
    assert outcome(503, "1", "application/problem+json") == "503"
    assert outcome(500, None, "application/problem+json") == "500"


def test_the_ingress_own_5xx_is_marked() -> None:
    # Skipper answers 500 text/plain when a backend closes the connection mid-request.
    assert outcome(500, None, "text/plain; charset=utf-8") == "500-ingress"
    assert outcome(502, None, "") == "502-ingress"


def test_a_409_without_retry_after_is_marked() -> None:
    assert outcome(409, None, "application/problem+json") == "409-without-retry-after"
    assert outcome(409, None, "application/problem+json", "idempotency-key-in-flight") == "409-without-retry-after"
    assert outcome(409, "1", "application/problem+json", "idempotency-key-in-flight") == "409"
    assert outcome(202, None, "application/json") == "202"


def test_a_reused_key_409_is_marked_apart() -> None:
    assert outcome(409, None, "application/problem+json", "idempotency-key-reused") == "409-key-reused"


def _partner(answers: list[httpx.Response]) -> Partner:
    partner = Partner("http://ingest.test", "ingest.test", give_up_after=5)
    partner.client = httpx.AsyncClient(
        base_url="http://ingest.test", transport=httpx.MockTransport(lambda _request: answers.pop(0))
    )
    return partner


def _problem(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = orjson.dumps({"type": "x", "title": "Conflict", "status": status, "code": code})
    return httpx.Response(status, content=body, headers={"Content-Type": "application/problem+json", **(headers or {})})


async def test_an_in_flight_409_is_retried_after_its_retry_after_and_a_reused_one_is_not() -> None:
    accepted = httpx.Response(202, json={"record_id": "r1"})
    async with _partner([_problem(409, "idempotency-key-in-flight", {"Retry-After": "0"}), accepted]) as p:
        d = Delivery("k1", b"{}", "x")
        await p.deliver(d)
    assert d.outcomes == ["409", "202"] and d.record_id == "r1"
    async with _partner([_problem(409, "idempotency-key-reused"), accepted]) as p:
        d = Delivery("k2", b"{}", "x")
        await p.deliver(d)
    assert d.outcomes == ["409-key-reused"] and d.record_id is None and d.done
