"""CheckpointStore persistence and the DeliveryTracker's commit rule."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.atomicfile import save_state
from agent.spans.delivery.checkpoint import CheckpointStore, DeliveryTracker, FileCheckpoint


def sample() -> dict[str, FileCheckpoint]:
    state = {"open_spans": {"span_1": {"name": "GET /", "start": 1}}}
    return {
        "1:2:ab": FileCheckpoint("1:2:ab", "/logs/a.log", 120, state, 1_700_000_000),
        "1:3:cd": FileCheckpoint("1:3:cd", "/logs/b.log", 0, {}, 1_700_000_001),
    }


def test_saved_checkpoints_load_back_equal(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "data" / "span-checkpoints.json")
    store.save(sample())
    assert CheckpointStore(store.path).load() == sample()
    assert [p.name for p in store.path.parent.iterdir()] == ["span-checkpoints.json"]


def test_missing_file_loads_empty(tmp_path: Path) -> None:
    assert CheckpointStore(tmp_path / "none.json").load() == {}


def test_damaged_file_loads_empty_and_is_kept_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = CheckpointStore(tmp_path / "cp.json")
    store.save(sample())
    damaged = store.path.read_bytes()[:-20]
    store.path.write_bytes(damaged)
    with caplog.at_level(logging.WARNING):
        assert store.load() == {}
    [aside] = tmp_path.glob("cp.json.unusable-*")
    assert aside.read_bytes() == damaged
    assert not store.path.exists()
    assert any("moved aside" in record.getMessage() for record in caplog.records)


def test_file_from_another_format_version_is_set_aside_not_fatal(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "cp.json")
    save_state(store.path, 99, {"files": {}})
    assert store.load() == {}
    assert len(list(tmp_path.glob("cp.json.unusable-*"))) == 1


def test_malformed_entries_are_skipped_and_the_rest_kept(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "cp.json")
    good = sample()["1:2:ab"].as_dict()
    save_state(store.path, 1, {"files": {"1:2:ab": good, "bad": {"offset": "x"}}})
    assert list(store.load()) == ["1:2:ab"]
    assert json.loads(store.path.read_text())["version"] == 1


def test_tracker_commits_in_order_only() -> None:
    tracker = DeliveryTracker()
    first = tracker.add_mark(100, 2, {"m": 1})
    second = tracker.add_mark(200, 1, {"m": 2})
    tracker.done(second)
    assert tracker.committable() is None  # the first batch is not delivered yet
    tracker.done(first, 2)
    assert tracker.committable() == (200, {"m": 2})
    assert tracker.outstanding == 0


def test_tracker_empty_mark_commits_at_once_behind_complete_marks() -> None:
    tracker = DeliveryTracker()
    tracker.add_mark(50, 0, {})
    assert tracker.committable() == (50, {})
    pending = tracker.add_mark(80, 1, {})
    tracker.add_mark(90, 0, {})
    assert tracker.committable() == (50, {})
    tracker.done(pending)
    assert tracker.committable() == (90, {})


def test_tracker_refuses_counting_a_unit_twice() -> None:
    tracker = DeliveryTracker()
    mark = tracker.add_mark(10, 1, {})
    tracker.done(mark)
    with pytest.raises(ValueError, match="outstanding"):
        tracker.done(mark)


@st.composite
def marks_and_order(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    pending = draw(st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=30))
    units = [index for index, count in enumerate(pending) for _ in range(count)]
    return pending, draw(st.permutations(units))


@settings(max_examples=300, deadline=None)
@given(marks_and_order())
def test_committed_offset_never_passes_an_undelivered_unit(
    case: tuple[list[int], list[int]],
) -> None:
    pending, completion_order = case
    tracker = DeliveryTracker()
    ids = [tracker.add_mark((i + 1) * 10, count, {"mark": i}) for i, count in enumerate(pending)]
    remaining = list(pending)

    def check() -> None:
        committed = tracker.committable()
        first_open = next((i for i, left in enumerate(remaining) if left), len(remaining))
        if committed is None:
            # Nothing committable means the very first mark is not complete.
            assert first_open == 0
            return
        offset, state = committed
        assert state["mark"] == first_open - 1  # the furthest complete prefix, no further
        assert offset == first_open * 10
        assert tracker.outstanding == sum(remaining)

    check()
    for index in completion_order:
        tracker.done(ids[index])
        remaining[index] -= 1
        check()
    assert tracker.committable() == (len(pending) * 10, {"mark": len(pending) - 1})
