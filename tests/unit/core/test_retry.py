"""The one retry helper: doubling waits capped at the maximum and reset by a success; a step tried
until it works, given up only when the process is told to stop; other errors pass through."""

from __future__ import annotations

import asyncio

import pytest

from exchange.core.retry import Backoff, until_stopped


def test_backoff_doubles_to_its_maximum_and_a_success_starts_it_again():
    backoff = Backoff(first=0.5, maximum=3.0)
    assert [backoff.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.succeeded()
    assert backoff.failed() == 0.5


async def test_a_step_is_tried_until_it_works_and_each_wait_is_reported():
    calls, waits = [], []

    async def step() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("not yet")
        return "up"

    def report(error: BaseException, delay: float) -> None:
        waits.append((type(error), delay))

    result = await until_stopped(step, asyncio.Event(), retry_on=(OSError,), on_retry=report, first=0.01, maximum=0.02)
    assert result == "up" and len(calls) == 3
    assert waits == [(OSError, 0.01), (OSError, 0.02)]


async def test_a_stop_ends_the_wait_with_none():
    stop = asyncio.Event()

    async def step() -> None:
        raise OSError("never")

    async def stop_soon() -> None:
        await asyncio.sleep(0.05)
        stop.set()

    stopper = asyncio.create_task(stop_soon())
    started = asyncio.get_running_loop().time()
    assert (
        await until_stopped(step, stop, retry_on=(OSError,), on_retry=lambda e, d: None, first=30, maximum=30) is None
    )
    assert asyncio.get_running_loop().time() - started < 5, "the 30 s wait was not cut short by the stop"
    await stopper


async def test_an_error_it_was_not_told_to_retry_passes_through_at_once():
    calls = []

    async def step() -> None:
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        await until_stopped(step, asyncio.Event(), retry_on=(OSError,), on_retry=lambda e, d: None)
    assert calls == [1]
