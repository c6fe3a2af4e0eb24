"""`until_up`: start-up steps retried while an engine is unreachable, for a bounded time."""

from __future__ import annotations

import time

import pytest

from exchange.core.errors import DependencyError
from exchange.core.startup import until_up


def failing(times: int, error: BaseException):
    calls: list[int] = []

    async def step() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "up"

    return step, calls


async def test_a_step_that_fails_while_the_engine_starts_is_retried_until_it_works():
    step, calls = failing(2, DependencyError("postgres", "ConnectionRefusedError"))
    assert await until_up("postgres", step, give_up_after=30) == "up"
    assert len(calls) == 3


async def test_a_refused_connection_counts_as_not_up_yet():
    step, calls = failing(1, ConnectionRefusedError(111, "refused"))
    assert await until_up("kafka", step, give_up_after=30) == "up"
    assert len(calls) == 2


async def test_an_error_that_is_not_about_reachability_is_raised_at_once():
    step, calls = failing(5, ValueError("bad setting"))
    with pytest.raises(ValueError):
        await until_up("s3", step, give_up_after=30)
    assert len(calls) == 1


async def test_an_engine_that_never_comes_up_fails_after_the_wait_with_its_last_error():
    step, calls = failing(1000, DependencyError("postgres", "ConnectionRefusedError"))
    started = time.monotonic()
    with pytest.raises(DependencyError, match="postgres"):
        await until_up("postgres", step, give_up_after=1)
    assert 1 <= time.monotonic() - started < 5
    assert len(calls) >= 2
