from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from agent.core.garbage import YOUNG_THRESHOLD, tune_garbage_collector


@pytest.fixture
def restored_thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_only_the_young_threshold_is_raised(restored_thresholds: tuple[int, int, int]) -> None:
    tune_garbage_collector()
    young, middle, old = gc.get_threshold()
    assert young == YOUNG_THRESHOLD > restored_thresholds[0]
    assert (middle, old) == restored_thresholds[1:]
    assert gc.isenabled()
