from __future__ import annotations

import pytest

from agent.core.batcher import Accumulator


def test_flushes_at_max_items() -> None:
    acc: Accumulator[int] = Accumulator(max_items=3, max_bytes=1000, linger=10)
    for i in range(7):
        acc.add(i, 1, now=0.0)
    ready = acc.take_ready(now=0.0)
    assert [b.items for b in ready] == [[0, 1, 2], [3, 4, 5]]
    assert acc.pending_items == 1


def test_flushes_before_overflowing_bytes() -> None:
    acc: Accumulator[str] = Accumulator(max_items=100, max_bytes=10, linger=10)
    acc.add("a", 6, now=0.0)
    acc.add("b", 6, now=0.0)  # would make 12 > 10: "a" goes alone
    ready = acc.take_ready(now=0.0)
    assert [b.items for b in ready] == [["a"]]
    assert acc.pending_bytes == 6


def test_oversize_item_forms_a_batch_of_one_and_is_kept() -> None:
    acc: Accumulator[str] = Accumulator(max_items=100, max_bytes=10, linger=10)
    acc.add("huge", 50, now=0.0)
    assert [b.items for b in acc.take_ready(now=0.0)] == [["huge"]]


def test_linger_from_first_item() -> None:
    acc: Accumulator[int] = Accumulator(max_items=100, max_bytes=1000, linger=0.5)
    acc.add(1, 1, now=10.0)
    acc.add(2, 1, now=10.4)
    assert acc.next_deadline() == pytest.approx(10.5)
    assert acc.take_ready(now=10.49) == []
    assert [b.items for b in acc.take_ready(now=10.5)] == [[1, 2]]
    assert acc.next_deadline() is None


def test_force_takes_everything() -> None:
    acc: Accumulator[int] = Accumulator(max_items=100, max_bytes=1000, linger=99)
    acc.add(1, 1, now=0.0)
    assert [b.items for b in acc.take_ready(now=0.0, force=True)] == [[1]]
    assert acc.pending_items == 0


def test_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        Accumulator(max_items=0, max_bytes=1, linger=0)
