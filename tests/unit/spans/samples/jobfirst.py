"""JobFirst logrus lines as its tracing.go writes them, for the decoder tests."""

from __future__ import annotations

import json
from typing import Any

TRACE = "trace_1732777445123456000"


SPAN = "span_1732777445123456789"


STAMP = "2024-11-28T15:04:05+08:00"  # 1732777445 s, whole seconds as logrus writes


def logrus(message: str, **fields: Any) -> bytes:
    """A line as logrus' JSONFormatter writes it: keys sorted, <>& escaped, compact."""
    fields = {"level": "info", "message": message, "timestamp": STAMP, **fields}
    text = json.dumps(dict(sorted(fields.items())), separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def started(
    name: str = "GET /api/v1/jobs", trace: str = TRACE, span: str = SPAN, **kw: Any
) -> bytes:
    return logrus("Span started", span_id=span, span_name=name, trace_id=trace, **kw)


def event(event_name: str, name: str = "GET /api/v1/jobs", trace: str = TRACE, **kw: Any) -> bytes:
    return logrus("Span event added", event_name=event_name, span_name=name, trace_id=trace, **kw)


def ended(
    duration: str = "1.5ms",
    *,
    status: int = 0,
    desc: str = "",
    name: str = "GET /api/v1/jobs",
    trace: str = TRACE,
    span: str = SPAN,
    **kw: Any,
) -> bytes:
    return logrus(
        "Span ended",
        duration=duration,
        span_id=span,
        span_name=name,
        status=status,
        status_desc=desc,
        trace_id=trace,
        **kw,
    )
