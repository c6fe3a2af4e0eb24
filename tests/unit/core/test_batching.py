"""The group-commit coalescer: batching, key exclusion, per-item and whole-batch failures."""

from __future__ import annotations

import asyncio

import pytest

from exchange.core.batching import Coalescer


class Recorder:
    """A flush that records its batches; `gate` holds a flush until the test releases it."""

    def __init__(self) -> None:
        self.batches: list[list[object]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.running = 0
        self.max_running = 0

    async def flush(self, items: list[object]) -> list[object]:
        self.batches.append(list(items))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        return [f"done:{item}" for item in items]


async def test_a_lone_item_is_flushed_at_once():
    rec = Recorder()
    coalescer = Coalescer(rec.flush)
    assert await asyncio.wait_for(coalescer.submit("a"), 1) == "done:a"
    assert rec.batches == [["a"]]


async def test_items_submitted_while_a_flush_runs_share_the_next_one():
    rec = Recorder()
    coalescer = Coalescer(rec.flush, max_concurrent=1)
    rec.gate.clear()
    first = asyncio.create_task(coalescer.submit(0))
    await asyncio.sleep(0.01)  # the first flush is running and held
    rest = [asyncio.create_task(coalescer.submit(i)) for i in range(1, 50)]
    await asyncio.sleep(0.01)
    rec.gate.set()
    results = await asyncio.gather(first, *rest)
    assert results == [f"done:{i}" for i in range(50)]
    assert rec.batches == [[0], list(range(1, 50))]
    assert (coalescer.batches, coalescer.items) == (2, 50)


async def test_batches_respect_max_weight_and_max_concurrent():
    rec = Recorder()
    coalescer: Coalescer[int, object] = Coalescer(rec.flush, max_weight=10, max_concurrent=2, weight=lambda n: n)
    rec.gate.clear()
    tasks = [asyncio.create_task(coalescer.submit(n)) for n in (4, 4, 4, 12, 1)]
    await asyncio.sleep(0.01)
    assert rec.running == 2  # never more than max_concurrent
    rec.gate.set()
    await asyncio.gather(*tasks)
    assert rec.max_running == 2
    for batch in rec.batches:  # an item heavier than max_weight travels alone
        assert sum(batch) <= 10 or len(batch) == 1
    assert sorted(n for batch in rec.batches for n in batch) == [1, 4, 4, 4, 12]


async def test_items_with_one_key_never_share_or_overlap_a_batch():
    rec = Recorder()
    coalescer: Coalescer[tuple[str, int], object] = Coalescer(rec.flush, max_concurrent=4, key=lambda item: item[0])
    rec.gate.clear()
    tasks = [asyncio.create_task(coalescer.submit(("k", n))) for n in range(3)]
    tasks += [asyncio.create_task(coalescer.submit(("other", 9)))]
    await asyncio.sleep(0.01)
    assert rec.running == 1  # ("k", 1) and ("k", 2) wait although flush slots are free
    assert rec.batches == [[("k", 0), ("other", 9)]]
    rec.gate.set()
    await asyncio.gather(*tasks)
    assert rec.batches == [[("k", 0), ("other", 9)], [("k", 1)], [("k", 2)]]


async def test_an_exception_result_goes_to_its_item_alone():
    async def flush(items: list[int]) -> list[object]:
        return [ValueError(f"bad {n}") if n % 2 else n * 10 for n in items]

    coalescer: Coalescer[int, object] = Coalescer(flush)
    results = await asyncio.gather(*(coalescer.submit(n) for n in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad 1"
    assert isinstance(results[3], ValueError)


async def test_a_failed_flush_fails_its_whole_batch_and_the_next_batch_runs():
    calls = 0

    async def flush(items: list[int]) -> list[object]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database gone")
        return list(items)

    coalescer: Coalescer[int, object] = Coalescer(flush, max_concurrent=1)
    first = await asyncio.gather(*(coalescer.submit(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in first)
    assert await coalescer.submit(7) == 7


async def test_a_flush_with_the_wrong_number_of_results_is_an_error():
    async def flush(items: list[int]) -> list[object]:
        return []

    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        await Coalescer(flush).submit(1)


async def test_a_caller_that_went_away_is_skipped():
    rec = Recorder()
    coalescer = Coalescer(rec.flush, max_concurrent=1)
    rec.gate.clear()
    first = asyncio.create_task(coalescer.submit("first"))
    await asyncio.sleep(0.01)
    gone = asyncio.create_task(coalescer.submit("gone"))
    kept = asyncio.create_task(coalescer.submit("kept"))
    await asyncio.sleep(0.01)
    gone.cancel()
    rec.gate.set()
    assert await kept == "done:kept"
    await first
    assert rec.batches == [["first"], ["kept"]]


def test_limits_must_be_positive():
    async def flush(items: list[int]) -> list[object]:
        return list(items)

    with pytest.raises(ValueError):
        Coalescer(flush, max_weight=0)
