"""Errors of the disk queue, importable without pulling in the queue itself."""

from __future__ import annotations


class DiskQueueError(Exception):
    """Base class of the disk queue's errors."""


class QueueLockedError(DiskQueueError):
    """Another process (or another open queue) owns the queue directory."""


class QueueClosedError(DiskQueueError):
    """The queue is not open (never opened, closing or closed)."""


class RecordTooLargeError(DiskQueueError, ValueError):
    """A record (or a ``put_many`` batch) could never fit, whatever the queue holds."""


class QueueFullError(DiskQueueError):
    """The byte limit leaves no room for the records (at once, or within ``full_timeout``).

    Carries the depth so that the HTTP edge can say how full the buffer is in its 503.
    """

    def __init__(self, depth_items: int, depth_bytes: int, max_bytes: int) -> None:
        super().__init__(
            f"disk queue full: {depth_items} records, {depth_bytes} of {max_bytes} bytes"
        )
        self.depth_items = depth_items
        self.depth_bytes = depth_bytes
        self.max_bytes = max_bytes
