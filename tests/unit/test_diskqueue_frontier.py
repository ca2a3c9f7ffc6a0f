"""AckFrontier: the contiguous acked frontier under acks in any order and known gaps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.core.ackfrontier import AckFrontier


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
