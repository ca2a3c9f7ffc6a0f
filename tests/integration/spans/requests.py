"""OTLP request bodies for the exporter tests."""

from __future__ import annotations

import time

from agent.spans.encode.protobuf import build_request, encode_span
from agent.spans.encode.resources import Resources, resource_key
from agent.spans.model import Span


def request_body(service: str, count: int = 3) -> bytes:
    now = time.time_ns()
    spans = [
        Span(
            trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
            span_id=(i + 1).to_bytes(8, "big"),
            name=f"op-{i}",
            start_ns=now,
            end_ns=now + 1_000_000,
            service_name=service,
        )
        for i in range(count)
    ]
    key = resource_key(spans[0])
    return build_request({key: [encode_span(s) for s in spans]}, Resources())
