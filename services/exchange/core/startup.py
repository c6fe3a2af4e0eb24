"""Start-up that waits for the engines instead of crashing.

Kubernetes starts a pipeline's Pods together, so a service or Job often comes up before Postgres,
Kafka or S3 answers. Exiting then costs a restart back-off (10 s, 20 s, 40 s, ...) on every cold
start and shows CrashLoopBackOff for a pipeline that is merely starting. `until_up` retries the
step with backoff while the error says an engine is unreachable (`DependencyError`, a refused or
reset connection), for at most `STARTUP_WAIT_SECONDS`, then raises the last error: a pipeline
whose engine never comes does crash, and says so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from botocore.exceptions import BotoCoreError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay, wait_exponential

from exchange.core.errors import DependencyError
from exchange.core.logging import get_logger

T = TypeVar("T")
UNREACHABLE: tuple[type[BaseException], ...] = (DependencyError, OSError, BotoCoreError)
"""Errors meaning "not there yet" (botocore's connection errors are BotoCoreErrors; an S3 answer
such as 403 is a ClientError and is not retried)."""
FIRST_DELAY = 0.5
MAX_DELAY = 5.0

log = get_logger(__name__)


async def until_up(what: str, step: Callable[[], Awaitable[T]], give_up_after: float) -> T:
    """Run `step` until it stops failing with an UNREACHABLE error, for at most about `give_up_after`
    seconds; its result, or the last error once the time is up (any other error at once)."""

    def waiting(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        # Our own errors carry a PII-free reason ("postgres: gaierror" is DNS, not the database).
        reason = str(error) if isinstance(error, DependencyError) else type(error).__name__
        log.warning("dependency_unavailable_at_start", dependency=what, error_class=type(error).__name__, reason=reason)

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(UNREACHABLE),
        wait=wait_exponential(multiplier=FIRST_DELAY, max=MAX_DELAY),
        stop=stop_after_delay(give_up_after),
        before_sleep=waiting,
        reraise=True,
    )

    async def attempt() -> T:  # a coroutine function: tenacity would not await a lambda's coroutine
        return await step()

    return await retrying(attempt)
