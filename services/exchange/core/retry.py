"""Retries and backoff, one way for every service: tenacity's strategies, in the two shapes the
platform needs besides a plain `AsyncRetrying`.

- `until_stopped`: try a step until it works or the process is told to stop (a worker waiting for
  an engine at start-up).
- `Backoff`: the wait before the next round of a loop that runs until stopped and keeps going
  after failures (the outbox relay); consecutive failures double it, a success resets it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential
from tenacity.wait import wait_base

from exchange.core.aio import sleep_or

T = TypeVar("T")


def doubling(first: float, maximum: float) -> wait_base:
    """Waits of `first`, then twice as long each time, never more than `maximum`."""
    return wait_exponential(multiplier=first, exp_base=2, max=maximum)


async def until_stopped(
    step: Callable[[], Awaitable[T]],
    stop: asyncio.Event,
    *,
    retry_on: tuple[type[BaseException], ...],
    on_retry: Callable[[BaseException, float], None],
    first: float = 0.5,
    maximum: float = 10.0,
) -> T | None:
    """`step()`'s result once it stops raising one of `retry_on`; None when `stop` is set first.
    `on_retry(error, delay)` runs before each wait (log it); any other error propagates."""

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if error is not None:
            on_retry(error, state.next_action.sleep if state.next_action else 0.0)

    async def attempt() -> T:  # a coroutine function: tenacity would not await a lambda's coroutine
        return await step()

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(retry_on),
        wait=doubling(first, maximum),
        stop=lambda _: stop.is_set(),
        sleep=lambda seconds: sleep_or(stop, seconds),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return await retrying(attempt)
    except retry_on:
        if stop.is_set():
            return None
        raise


class Backoff:
    """How long a loop that outlives its failures waits before its next round: tenacity's doubling
    wait by the number of consecutive failures; `succeeded()` starts again from `first`."""

    def __init__(self, first: float, maximum: float) -> None:
        self._wait = doubling(first, maximum)
        self._state = RetryCallState(retry_object=AsyncRetrying(), fn=None, args=(), kwargs={})
        self._state.attempt_number = 0

    def failed(self) -> float:
        """Count a failure; the seconds to wait before the next round."""
        self._state.attempt_number += 1
        return float(self._wait(self._state))

    def succeeded(self) -> None:
        self._state.attempt_number = 0
