"""What the span pipeline's export side says about itself: its health (buffering through an
endpoint outage, backpressure when the disk queue is full, queue faults) and its gauges."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.core.diskqueue.observe import queue_trouble, register_queue_metrics
from agent.core.diskqueue.queue import DiskQueue
from agent.core.lifecycle import Health
from agent.core.metrics import Metrics
from agent.spans.export.sender import SpanSender


def export_health(sender: SpanSender[Any], queue: DiskQueue, *, reading: bool) -> Health:
    """Ready while the export side can take spans (an outage is what the queue is for);
    `dependency_ok` False while the endpoint fails."""
    records, spans, older, age = sender.queue_depth()
    details: dict[str, Any] = {"spans_queued": spans, "batches_queued": records}
    if age is not None:
        details["oldest_queued_seconds"] = round(age)
    trouble = queue_trouble("spans", queue.stats(), details)
    if trouble is not None:
        return trouble
    if sender.healthy:
        state = "running" if reading else "idle"
        if sender.waiting_for_space:
            state = "backpressure"
        return Health(ready=True, state=state, details=details)
    return Health(
        ready=True,
        state="backpressure" if sender.waiting_for_space else "buffering",
        reason=_outage_reason(sender, spans, older, age),
        details=details,
        dependency_ok=False,
    )


def _outage_reason(
    sender: SpanSender[Any], spans: int, older_batches: int, age: float | None
) -> str:
    error = sender.last_error
    if not error.startswith("otlp endpoint"):
        error = f"otlp endpoint failing: {error}"
    reason = f"{error}; {spans:,} spans queued"
    if older_batches:
        reason += f" (+{older_batches:,} batches from before the restart)"
    if age is not None:
        reason += f", oldest {age:.0f}s"
    if sender.waiting_for_space:
        reason += "; disk queue full, reading paused"
    return reason


def register_span_gauges(
    metrics: Metrics, sender: SpanSender[Any], queue: DiskQueue, in_flight: Callable[[], int]
) -> None:
    register_queue_metrics(metrics, "spans", queue.stats)

    def queue_gauges() -> dict[tuple[str, ...], float]:
        records, spans, _, age = sender.queue_depth()
        return {("batches",): records, ("spans",): spans, ("oldest_age_seconds",): age or 0.0}

    metrics.gauge_callback(
        "span_export_queue",
        "The span disk queue: batches, spans (put by this process), age of the oldest.",
        queue_gauges,
        ("measure",),
    )
    metrics.gauge_callback(
        "span_export_endpoint_up",
        "1 while OTLP exports succeed, 0 from a failure until the next success.",
        lambda: {(): 1.0 if sender.healthy else 0.0},
    )
    metrics.gauge_callback(
        "span_spans_in_flight",
        "Spans read but not yet delivered, sampled out or dead-lettered.",
        lambda: {(): float(in_flight())},
    )
