"""AckFrontier: the contiguous acked frontier under acks in any order and known gaps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.core.diskqueue.frontier import AckFrontier


def test_frontier_moves_only_over_contiguous_acks() -> None:
    frontier = AckFrontier(10)
    assert frontier.ack(12) is False
    assert frontier.ack(11) is False
    assert (frontier.frontier, frontier.acked_ahead) == (10, 2)
    assert frontier.ack(10) is True
    assert (frontier.frontier, frontier.acked_ahead) == (13, 0)
    assert frontier.ack(5) is False  # below the frontier: already done
    assert frontier.is_done(12) and not frontier.is_done(13)


def test_gaps_are_crossed_like_acked_seqs() -> None:
    frontier = AckFrontier(0)
    frontier.add_gap(3, 8)
    frontier.ack(1)
    frontier.ack(2)
    assert (frontier.frontier, frontier.gap_seqs_ahead) == (0, 5)
    assert frontier.ack(0) is True
    assert (frontier.frontier, frontier.gap_seqs_ahead) == (8, 0)
    assert frontier.add_gap(8, 10) is True
    assert frontier.frontier == 10


@given(order=st.permutations(range(40)), stop=st.integers(0, 40))
def test_frontier_is_the_smallest_seq_not_acked(order: list[int], stop: int) -> None:
    frontier = AckFrontier(0)
    acked = set(order[:stop])
    for seq in order[:stop]:
        frontier.ack(seq)
    expected = min(set(range(41)) - acked)
    assert frontier.frontier == expected
    assert frontier.acked_ahead == len([seq for seq in acked if seq > expected])


def test_overlapping_gaps_are_counted_once() -> None:
    frontier = AckFrontier(0)
    frontier.add_gap(5, 10)
    frontier.add_gap(3, 12)
    frontier.add_gap(0, 2)
    assert (frontier.frontier, frontier.gap_seqs_ahead) == (2, 9)
    assert frontier.is_done(11) and not frontier.is_done(2) and not frontier.is_done(12)


def test_done_ranges_merge_neighbouring_acks_and_clip() -> None:
    frontier = AckFrontier(0)
    for seq in (5, 7, 6, 9, 20):
        frontier.ack(seq)
    frontier.add_gap(12, 15)
    assert frontier.done_ranges(below=100, limit=10) == [(5, 8), (9, 10), (12, 15), (20, 21)]
    assert frontier.done_ranges(below=14, limit=2) == [(5, 8), (9, 10)]
    assert frontier.done_ranges(below=13, limit=10) == [(5, 8), (9, 10), (12, 13)]
    assert frontier.has_done_at_or_above(20) and not frontier.has_done_at_or_above(21)
    assert AckFrontier(30).has_done_at_or_above(29)


@given(
    acks=st.lists(st.integers(0, 60), max_size=60),
    gaps=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 8)), max_size=4),
)
def test_frontier_and_done_ranges_restore_exactly_what_was_done(
    acks: list[int], gaps: list[tuple[int, int]]
) -> None:
    original = AckFrontier(0)
    for start, length in gaps:
        original.add_gap(start, start + length)
    for seq in acks:
        original.ack(seq)
    restored = AckFrontier(original.frontier, original.done_ranges(below=100, limit=1000))
    assert [restored.is_done(seq) for seq in range(80)] == [
        original.is_done(seq) for seq in range(80)
    ]
    expected_done = set(acks) | {s for start, n in gaps for s in range(start, start + n)}
    assert {seq for seq in range(80) if original.is_done(seq)} == expected_done
    assert restored.frontier == original.frontier
    assert (restored.acked_ahead + restored.gap_seqs_ahead) == (
        original.acked_ahead + original.gap_seqs_ahead
    )
