from __future__ import annotations

import asyncio

import pytest

from agent.messages.dedupe import DedupeCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_ids_are_remembered_for_the_window() -> None:
    clock = Clock()
    cache = DedupeCache(window=10, max_ids=100, clock=clock)
    seen = cache.reserve("t", "a")
    cache.settle("t", "a", seen, None)
    assert cache.get("t", "a") is seen and cache.get("other", "a") is None
    clock.now += 10.5
    assert cache.get("t", "a") is None
    cache.reserve("t", "b")  # evicts what expired
    assert len(cache) == 1


async def test_a_failed_put_forgets_the_id_and_tells_waiters() -> None:
    cache = DedupeCache(window=10, max_ids=100)
    seen = cache.reserve("t", "a")
    assert seen.accepted is not None
    waiter = asyncio.ensure_future(asyncio.shield(seen.accepted))
    cache.settle("t", "a", seen, RuntimeError("full"))
    with pytest.raises(RuntimeError):
        await waiter
    assert cache.get("t", "a") is None


async def test_memory_is_bounded_by_max_ids() -> None:
    cache = DedupeCache(window=1000, max_ids=3)
    for name in "abcde":
        cache.settle("t", name, cache.reserve("t", name), None)
    assert len(cache) == 3 and cache.get("t", "a") is None and cache.get("t", "e") is not None


async def test_entry_ids_reach_those_waiting_for_them() -> None:
    cache = DedupeCache(window=10, max_ids=10)
    seen = cache.reserve("t", "a")
    cache.settle("t", "a", seen, None)
    waiting = asyncio.ensure_future(cache.wait_written(seen))
    await asyncio.sleep(0)
    cache.written("t", "a", b"1-0")
    assert await waiting == b"1-0"
    assert await cache.wait_written(seen) == b"1-0"
