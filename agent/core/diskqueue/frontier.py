"""The contiguous acknowledged frontier of a sequence of records, with acks in any order.

Pure bookkeeping, no I/O: the disk queue persists :attr:`AckFrontier.frontier` plus
:meth:`AckFrontier.done_ranges` (what is done above it) and deletes what lies below it.
Every seq below the frontier is done. At and above it, a seq is done if it was acked, or if it
lies in a gap: a range holding no deliverable record (lost to corruption, or acked before a
restart and reloaded from the state file).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable


class AckFrontier:
    def __init__(self, frontier: int = 0, gaps: Iterable[tuple[int, int]] = ()) -> None:
        self._frontier = frontier
        self._acked_ahead: set[int] = set()
        # Acked seqs above the frontier as runs [start, end), indexed from both ends so that
        # an ack joins its neighbours in O(1); persisting them stays cheap.
        self._run_end_by_start: dict[int, int] = {}
        self._run_start_by_end: dict[int, int] = {}
        self._gaps: dict[int, int] = {}
        self._gap_starts: list[int] = []
        self._gap_seqs_ahead = 0
        for start, end in gaps:
            self.add_gap(start, end)

    @property
    def frontier(self) -> int:
        """Every seq below this is done."""
        return self._frontier

    @property
    def acked_ahead(self) -> int:
        """How many seqs above the frontier are acked."""
        return len(self._acked_ahead)

    @property
    def gap_seqs_ahead(self) -> int:
        """How many seqs above the frontier lie in gaps."""
        return self._gap_seqs_ahead

    def is_done(self, seq: int) -> bool:
        return seq < self._frontier or seq in self._acked_ahead or self._in_gap(seq)

    def _in_gap(self, seq: int) -> bool:
        index = bisect.bisect_right(self._gap_starts, seq) - 1
        return index >= 0 and seq < self._gaps[self._gap_starts[index]]

    def ack(self, seq: int) -> bool:
        """Mark ``seq`` done; returns True when the frontier moved."""
        if seq == self._frontier and not self._run_end_by_start and not self._gaps:
            self._frontier = seq + 1  # acks in order, nothing above: the common case
            return True
        if self.is_done(seq):
            return False
        if seq != self._frontier:
            self._acked_ahead.add(seq)
            self._join_runs(seq)
            return False
        self._frontier += 1
        self._advance()
        return True

    def _join_runs(self, seq: int) -> None:
        start = self._run_start_by_end.pop(seq, seq)
        end = self._run_end_by_start.pop(seq + 1, seq + 1)
        self._run_end_by_start.pop(start, None)
        self._run_start_by_end.pop(end, None)
        self._run_end_by_start[start] = end
        self._run_start_by_end[end] = start

    def add_gap(self, start: int, end: int) -> bool:
        """Seqs in ``[start, end)`` hold nothing to deliver; True if the frontier moved.

        Parts already done (below the frontier or in an earlier gap) are not counted twice.
        """
        for piece_start, piece_end in self._uncovered(max(start, self._frontier), end):
            self._gaps[piece_start] = piece_end
            bisect.insort(self._gap_starts, piece_start)
            self._gap_seqs_ahead += piece_end - piece_start
        before = self._frontier
        self._advance()
        return self._frontier != before

    def _uncovered(self, start: int, end: int) -> list[tuple[int, int]]:
        pieces = []
        index = max(0, bisect.bisect_right(self._gap_starts, start) - 1)
        for gap_start in self._gap_starts[index:]:
            if gap_start >= end:
                break
            gap_end = self._gaps[gap_start]
            if gap_end <= start:
                continue
            if gap_start > start:
                pieces.append((start, gap_start))
            start = max(start, gap_end)
        if start < end:
            pieces.append((start, end))
        return pieces

    def done_ranges(self, below: int, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` lowest ranges done above the frontier (acked runs and gaps), cut
        at ``below``. What does not fit is simply not persisted: it comes back as duplicates."""
        ranges = sorted([*self._run_end_by_start.items(), *self._gaps.items()])
        clipped = [(start, min(end, below)) for start, end in ranges if start < below]
        return clipped[:limit]

    def has_done_at_or_above(self, seq: int) -> bool:
        """Whether anything at or above ``seq`` is done (what ``done_ranges(seq)`` leaves out)."""
        return (
            self._frontier > seq
            or any(end > seq for end in self._run_start_by_end)
            or any(end > seq for end in self._gaps.values())
        )

    def _advance(self) -> None:
        frontier = self._frontier
        while True:
            run_end = self._run_end_by_start.pop(frontier, None)
            if run_end is not None:
                del self._run_start_by_end[run_end]
                self._acked_ahead.difference_update(range(frontier, run_end))
                frontier = run_end
                continue
            gap_end = self._gaps.pop(frontier, None)
            if gap_end is not None:
                self._gap_starts.remove(frontier)
                self._gap_seqs_ahead -= gap_end - frontier
                frontier = gap_end
                continue
            break
        self._frontier = frontier
