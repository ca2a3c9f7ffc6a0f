"""span-json records, for the decoder tests."""

from __future__ import annotations

from typing import Any

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


SPAN = "00f067aa0ba902b7"


START = 1_732_777_445_123_456_789


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "trace_id": TRACE,
        "span_id": SPAN,
        "name": "GET /jobs",
        "start_time_unix_nano": START,
        "duration_ms": 12.5,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}
