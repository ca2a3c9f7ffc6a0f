"""What a disk queue tells the admin port: its failure state for /readyz and /healthz, and its
fault counters for /metrics (``sidecar_queue_*{queue=...}``)."""

from __future__ import annotations

from collections.abc import Callable

from agent.core.diskqueue.stats import DiskQueueStats
from agent.core.lifecycle import Health
from agent.core.metrics import Metrics

StatsSource = Callable[[], DiskQueueStats]

_COUNTERS = {
    "io_errors": "Failed writes or syncs of the disk queue (each followed by a recovery).",
    "recoveries": "Times the disk queue cut back to its last sync and took puts again.",
    "corrupt_records": "Records lost to damage in the disk queue (skipped, copied to quarantine).",
    "records_given_up": "Records appended but not synced when a write failed (their puts failed).",
    "read_errors": "Failed disk-queue reads (retried).",
    "reservations_refused": (
        "Times the file system refused to reserve disk-queue space ahead (appends went on)."
    ),
}


def queue_trouble(name: str, stats: DiskQueueStats, details: dict[str, object]) -> Health | None:
    """A failing Health while the queue refuses puts; None when it takes them.

    Recovering is not ready (puts get 503) but alive; a queue that has not recovered within its
    ``unrecoverable_after`` is not alive either, so /healthz asks for a restart.
    """
    if stats.failed is None:
        return None
    reason = (
        f"{name} disk queue: {stats.failed}; failing for {stats.failing_seconds:.1f}s, "
        f"{stats.recoveries} recoveries so far"
    )
    if stats.unrecoverable:
        return Health(
            False, "failed", f"{reason}; not recovering, restart needed", details, alive=False
        )
    return Health(False, "recovering", reason, details)


def register_queue_metrics(metrics: Metrics, name: str, source: StatsSource) -> None:
    """Export the queue's fault counters, labelled ``queue=name``."""
    for field, doc in _COUNTERS.items():

        def read(field: str = field) -> dict[tuple[str, ...], float]:
            return {(name,): float(getattr(source(), field))}

        metrics.counter_callback(f"queue_{field}", doc, read, ("queue",))


def queue_faults(stats: DiskQueueStats) -> dict[str, object]:
    """The fault figures /status shows for a queue."""
    return {
        "corrupt_records": stats.corrupt_records,
        "corrupt_tail_truncations": stats.corrupt_tail_truncations,
        "io_errors": stats.io_errors,
        "recoveries": stats.recoveries,
        "failed": stats.failed,
    }
