"""How the chaos partner keeps an answer: the services' own 5xx apart from the ingress's."""

from exchange_devtools.partner import outcome


def test_a_services_problem_json_5xx_keeps_its_status() -> None:
    assert outcome(503, "1", "application/problem+json") == "503"
    assert outcome(500, None, "application/problem+json") == "500"


def test_the_ingress_own_5xx_is_marked() -> None:
    # Skipper answers 500 text/plain when a backend closes the connection mid-request.
    assert outcome(500, None, "text/plain; charset=utf-8") == "500-ingress"
    assert outcome(502, None, "") == "502-ingress"


def test_a_409_without_retry_after_is_marked() -> None:
    assert outcome(409, None, "application/problem+json") == "409-without-retry-after"
    assert outcome(409, "1", "application/problem+json") == "409"
    assert outcome(202, None, "application/json") == "202"
