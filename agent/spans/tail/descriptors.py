"""How many descriptors the followed files hold: at most ``spans.max_open_files``.

Every followed file used to keep its descriptor, so thousands of matched files held thousands,
out of the same budget the disk queue and the HTTP servers need. Now the least recently read
files are closed ("parked") once the cap is reached and opened again, by device and inode,
when they have something to read (TrackedFile.reopen). Only idle files are parked when
possible. Files rotated away stay open (their path no longer leads to them: the descriptor is
how their last lines are read), and so does a file whose over-long record is being copied.

The cost of a parked file: an open, an fstat and a fingerprint read when it grows again. The
risk: a parked file that is renamed out of its directory, or deleted, before it is read again
loses what was appended after it was parked (logged and counted).
"""

from __future__ import annotations

import logging
import resource
from collections import OrderedDict

from agent.core.metrics import Metrics
from agent.spans.tail.trackedfile import TrackedFile

log = logging.getLogger("agent.spans.tail.tailer")


class OpenFiles:
    """The followed files holding a descriptor, least recently read first. Event loop only."""

    def __init__(self, max_open: int, metrics: Metrics) -> None:
        self.max_open = max_open
        self._open: OrderedDict[tuple[int, int], TrackedFile] = OrderedDict()
        self._parks = metrics.counter(
            "span_files_parked_total",
            "Idle followed files closed to stay within spans.max_open_files.",
        )
        self._reopens = metrics.counter(
            "span_files_reopened_total", "Parked files opened again to read what they got."
        )
        self.lost = metrics.counter(
            "span_files_lost_while_parked_total",
            "Parked files renamed out of sight or deleted before they could be read again.",
        )
        metrics.gauge_callback(
            "span_files_open",
            "Followed span log files holding a descriptor now.",
            lambda: {(): float(len(self._open))},
        )

    def __len__(self) -> int:
        return len(self._open)

    def opened(self, tracked: TrackedFile) -> None:
        """`tracked` holds a descriptor (new, or reopened) and was just used."""
        self._open[tracked.pair] = tracked
        self._open.move_to_end(tracked.pair)

    def reopened(self, tracked: TrackedFile) -> None:
        self._reopens.inc()
        self.opened(tracked)

    def touch(self, tracked: TrackedFile) -> None:
        if tracked.pair in self._open:
            self._open.move_to_end(tracked.pair)

    def closed(self, tracked: TrackedFile) -> None:
        self._open.pop(tracked.pair, None)

    def make_room(self, keep: TrackedFile | None = None, room: int = 0) -> None:
        """Park least recently read files until `room` more fit under the cap; idle ones
        first, then any that can be reopened later. `keep` is about to be read."""
        excess = len(self._open) + room - self.max_open
        if excess <= 0:
            return
        for idle_only in (True, False):
            for tracked in list(self._open.values()):
                if excess <= 0:
                    return
                if tracked is keep or not _parkable(tracked, idle_only=idle_only):
                    continue
                tracked.reader.close_descriptor()
                del self._open[tracked.pair]
                self._parks.inc()
                excess -= 1


def _parkable(tracked: TrackedFile, *, idle_only: bool) -> bool:
    if tracked.gone_since is not None or tracked.reader.spilling or tracked.closed:
        return False
    return not idle_only or (tracked.at_eof and not tracked.queued)


def raise_open_file_limit() -> None:
    """Lift the soft descriptor limit to the hard one, as log shippers commonly do: the cap
    above bounds the files, and the rest is for sockets and the disk queue."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as error:
        log.warning("cannot raise the open file limit", extra={"error": repr(error)})
