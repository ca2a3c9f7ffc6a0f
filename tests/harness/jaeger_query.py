"""Reading spans back from Jaeger's query HTTP API (`/api/...`, the JSON the UI uses).

Spans come back as `StoredSpan`: service name filled in from the trace's process table, tags
and log fields as plain dicts, times in microseconds as Jaeger stores them, and IDs as
lower-case hex padded to OTLP's widths (32 and 16) so they compare equal to what was sent.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tests.harness.errors import HarnessError
from tests.harness.eventually import eventually_sync

_REQUEST_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class SpanLog:
    timestamp_us: int
    fields: dict[str, Any]


@dataclass(frozen=True)
class StoredSpan:
    trace_id: str
    span_id: str
    operation_name: str
    service_name: str
    start_time_us: int
    duration_us: int
    tags: dict[str, Any]
    logs: list[SpanLog]
    references: list[dict[str, Any]]
    process_tags: dict[str, Any]

    @property
    def kind(self) -> str | None:
        """OTLP span kind as Jaeger records it: "server", "client", ...; None for internal."""
        kind = self.tags.get("span.kind")
        return str(kind) if kind is not None else None

    @property
    def parent_span_id(self) -> str | None:
        for reference in self.references:
            if reference.get("refType") == "CHILD_OF":
                return str(reference["spanID"]).zfill(16)
        return None


@dataclass(frozen=True)
class StoredTrace:
    trace_id: str
    spans: list[StoredSpan]


def _tags_to_dict(tags: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in tags or []}


def _parse_span(raw: dict[str, Any], processes: dict[str, Any]) -> StoredSpan:
    process = processes.get(raw.get("processID", ""), {})
    return StoredSpan(
        trace_id=str(raw["traceID"]).zfill(32),
        span_id=str(raw["spanID"]).zfill(16),
        operation_name=raw["operationName"],
        service_name=process.get("serviceName", ""),
        start_time_us=int(raw["startTime"]),
        duration_us=int(raw["duration"]),
        tags=_tags_to_dict(raw.get("tags")),
        logs=[
            SpanLog(int(log["timestamp"]), _tags_to_dict(log.get("fields")))
            for log in raw.get("logs") or []
        ],
        references=list(raw.get("references") or []),
        process_tags=_tags_to_dict(process.get("tags")),
    )


def parse_trace(raw: dict[str, Any]) -> StoredTrace:
    """One element of the query API's `data` list."""
    processes = raw.get("processes") or {}
    spans = [_parse_span(span, processes) for span in raw.get("spans") or []]
    return StoredTrace(trace_id=str(raw["traceID"]).zfill(32), spans=spans)


class JaegerQuery:
    """A small sync client for one Jaeger query API base URL (e.g. http://127.0.0.1:16686)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=_REQUEST_TIMEOUT_S) as response:
            return json.load(response)["data"]

    def services(self) -> list[str]:
        return sorted(self._get("/api/services") or [])

    def operations(self, service: str) -> list[str]:
        quoted = urllib.parse.quote(service, safe="")
        return sorted(self._get(f"/api/services/{quoted}/operations") or [])

    def traces(
        self,
        service: str,
        *,
        limit: int = 100,
        lookback: timedelta = timedelta(hours=1),
        operation: str | None = None,
    ) -> list[StoredTrace]:
        """Traces with a span of `service` that started within `lookback` of now.

        The window also reaches `lookback` into the future, so spans stamped slightly ahead
        (clock skew, synthetic test data) are found too.
        """
        now_us = time.time_ns() // 1_000
        window_us = int(lookback.total_seconds() * 1_000_000)
        params = {
            "service": service,
            "limit": str(limit),
            "start": str(now_us - window_us),
            "end": str(now_us + window_us),
        }
        if operation is not None:
            params["operation"] = operation
        return [parse_trace(raw) for raw in self._get("/api/traces", params) or []]

    def trace(self, trace_id_hex: str) -> StoredTrace | None:
        """The whole trace, or None if Jaeger has not stored it (yet)."""
        try:
            found = self._get(f"/api/traces/{trace_id_hex}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise
        return parse_trace(found[0]) if found else None

    def spans(
        self, service: str, *, limit: int = 100, lookback: timedelta = timedelta(hours=1)
    ) -> list[StoredSpan]:
        """Spans of `service` (not of other services in the same traces), oldest first."""
        found = [
            span
            for trace in self.traces(service, limit=limit, lookback=lookback)
            for span in trace.spans
            if span.service_name == service
        ]
        return sorted(found, key=lambda span: (span.start_time_us, span.span_id))

    def wait_for_spans(
        self,
        service: str,
        count: int,
        *,
        timeout: float = 10.0,
        lookback: timedelta = timedelta(hours=1),
    ) -> list[StoredSpan]:
        """Poll until at least `count` spans of `service` are stored, then return them all.

        Polling is needed: Jaeger answers the OTLP export before the span is queryable.
        """
        # Every trace found holds >= 1 span of the service, so `count` traces are enough.
        limit = max(count, 100)
        found: list[StoredSpan] = []

        def stored_enough() -> bool:
            found[:] = self.spans(service, limit=limit, lookback=lookback)
            return len(found) >= count

        try:
            eventually_sync(stored_enough, timeout=timeout, what=f"{count} spans of {service}")
        except AssertionError:
            raise HarnessError(
                f"Jaeger stored {len(found)} of {count} expected spans of service "
                f"{service!r} after {timeout:.1f}s; operations seen: "
                f"{sorted({span.operation_name for span in found})}"
            ) from None
        return found
