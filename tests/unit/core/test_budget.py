"""The memory budget of work in flight: a holder alone always fits, others only within it."""

from __future__ import annotations

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
