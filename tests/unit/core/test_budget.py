"""The memory budget of work in flight: a holder alone always fits, others only within it."""

from __future__ import annotations

import asyncio

import pytest

from agent.core import budget as budget_module
from agent.core.budget import MemoryBudget
from agent.core.metrics import Metrics


async def test_a_holder_alone_fits_however_heavy_and_others_wait_for_room() -> None:
    budget = MemoryBudget(100, Metrics(), "test")
    assert budget.try_take(60)
    assert budget.try_take(500, held=60)  # the only holder grows past the budget
    assert not budget.try_take(1)  # a second holder does not fit beside it
    budget.give_back(560)
    assert budget.in_use == 0
    assert budget.try_take(60)
    assert budget.try_take(40)
    assert not budget.try_take(1)
    budget.give_back(40)
    assert budget.try_take(30)
    assert budget.in_use == 90


async def test_in_flight_bytes_are_exported() -> None:
    metrics = Metrics()
    budget = MemoryBudget(100, metrics, "publish_requests")
    budget.try_take(42)
    assert b"sidecar_publish_requests_inflight_bytes 42.0" in metrics.render()


async def test_memory_is_trimmed_once_nothing_was_in_flight_for_the_whole_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(budget_module, "TRIM_DELAY", 0.05)
    monkeypatch.setattr(budget_module, "TRIM_AFTER_BYTES", 10)
    trims: list[float] = []
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(budget_module, "_malloc_trim", lambda: lambda: trims.append(loop.time()))
    budget = MemoryBudget(100, Metrics(), "test")
    budget.try_take(20)
    budget.give_back(20)
    idle_from = loop.time()
    for _ in range(3):  # short requests keep it busy: each restarts the delay
        await asyncio.sleep(0.03)
        budget.try_take(20)
        budget.give_back(20)
        idle_from = loop.time()
    assert trims == []
    await asyncio.sleep(0.03)
    budget.try_take(20)  # in flight when the delay ends: no trim
    await asyncio.sleep(0.1)
    assert trims == []
    budget.give_back(20)
    idle_from = loop.time()
    await asyncio.sleep(0.15)
    assert len(trims) == 1
    assert trims[0] >= idle_from + 0.05
