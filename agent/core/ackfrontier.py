"""The contiguous acknowledged frontier of a sequence of records, with acks in any order.

Pure bookkeeping, no I/O: the disk queue persists :attr:`AckFrontier.frontier` and deletes what
lies below it. Everything below the frontier is done; at and above it only the seqs in the
out-of-order set (and in known gaps, seqs whose records were lost to corruption) are done.
"""

from __future__ import annotations


class AckFrontier:
    def __init__(self, frontier: int = 0) -> None:
        self._frontier = frontier
        self._acked_ahead: set[int] = set()
        # start -> end (exclusive) of seq ranges that hold no deliverable record.
        self._gaps: dict[int, int] = {}
        self._gap_seqs_ahead = 0

    @property
    def frontier(self) -> int:
        """Every seq below this is acknowledged."""
        return self._frontier

    @property
    def acked_ahead(self) -> int:
        """How many seqs at or above the frontier are acknowledged already."""
        return len(self._acked_ahead)

    @property
    def gap_seqs_ahead(self) -> int:
        """How many seqs at or above the frontier belong to known gaps."""
        return self._gap_seqs_ahead

    def is_done(self, seq: int) -> bool:
        return seq < self._frontier or seq in self._acked_ahead

    def ack(self, seq: int) -> bool:
        """Mark ``seq`` done; returns True when the frontier moved."""
        if seq < self._frontier or seq in self._acked_ahead:
            return False
        if seq != self._frontier:
            self._acked_ahead.add(seq)
            return False
        self._frontier += 1
        self._advance()
        return True

    def add_gap(self, start: int, end: int) -> bool:
        """Record that seqs in ``[start, end)`` will never be delivered; True if frontier moved."""
        start = max(start, self._frontier)
        if start >= end:
            return False
        self._gaps[start] = end
        self._gap_seqs_ahead += end - start
        before = self._frontier
        self._advance()
        return self._frontier != before

    def _advance(self) -> None:
        acked, gaps, frontier = self._acked_ahead, self._gaps, self._frontier
        while True:
            if frontier in acked:
                acked.remove(frontier)
                frontier += 1
            elif frontier in gaps:
                end = gaps.pop(frontier)
                self._gap_seqs_ahead -= end - frontier
                frontier = end
            else:
                break
        self._frontier = frontier
