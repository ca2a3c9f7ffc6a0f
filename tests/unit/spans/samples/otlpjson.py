"""OTLP/JSON spans and requests, for the decoder tests."""

from __future__ import annotations

import base64
from typing import Any

TRACE = "5b8efff798038103d269b633813fc60c"


SPAN = "eee19b7ec3c1b174"


def otlp_span(**overrides: Any) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": TRACE,
        "spanId": SPAN,
        "name": "SELECT jobs",
        "kind": 3,
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "attributes": [
            {"key": "db.system", "value": {"stringValue": "mysql"}},
            {"key": "rows", "value": {"intValue": "42"}},
            {"key": "ratio", "value": {"doubleValue": 0.5}},
            {"key": "ok", "value": {"boolValue": True}},
            {"key": "raw", "value": {"bytesValue": base64.b64encode(b"\x00\x01").decode()}},
            {"key": "list", "value": {"arrayValue": {"values": [{"intValue": 1}, {}]}}},
            {
                "key": "map",
                "value": {"kvlistValue": {"values": [{"key": "a", "value": {"stringValue": "b"}}]}},
            },
        ],
        "events": [{"timeUnixNano": "1544712660500000000", "name": "fetch", "attributes": []}],
        "status": {"code": 2, "message": "timeout"},
    }
    span.update(overrides)
    return span


def request(*spans: dict[str, Any], resource: dict[str, Any] | None = None) -> dict[str, Any]:
    attributes = [{"key": "service.name", "value": {"stringValue": "db-proxy"}}]
    return {
        "resourceSpans": [
            {
                "resource": resource if resource is not None else {"attributes": attributes},
                "scopeSpans": [{"scope": {"name": "sqlx", "version": "0.7"}, "spans": list(spans)}],
            }
        ]
    }
