"""The fast path for OTLP/protobuf requests: each valid span is forwarded as the SDK encoded it.

`decode.decode_protobuf` turns every span into the span model (every attribute into Python
objects) only for the batcher to encode it back into the same protobuf. Here the request is
still parsed by opentelemetry-proto (upb, in C), but a span is only read as far as the
validity rules need (IDs, times, name, kind, status, event times, link IDs), and its bytes are
taken whole with `SerializeToString` (C again). Resource and scope are decoded once per group,
exactly as the general path does, so spans land in the same resource group of an export
request. Figures: docs/benchmarks.md (bench/otlp_receiver.py).

A span that does not clearly pass goes through `decode.span_from_proto`, so it is rejected with
the same reason and message, or accepted, exactly as the general path decides; a span too
large for any export request goes that way too (to be dead-lettered with its details).
Tests hold both paths equal span for span (tests/unit/receivers/otlp/test_passthrough.py).

Where the two differ, on purpose: the forwarded bytes keep what the SDK wrote that the span
model has no place for (unknown or future fields, dropped-attribute counts, duplicate
attribute keys, attribute values nested deeper than the model's 32 levels). Two edits are
made in place, as the general path makes them: an all-zero parent ID is cleared (a root span)
and the W3C sampled bit is set in non-zero flags (see `decode.SAMPLED_FLAG`).
"""

from __future__ import annotations

from typing import NamedTuple

from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from agent.receivers.otlp.decode import (
    SAMPLED_FLAG,
    Decoded,
    key_values,
    parse_request,
    span_from_proto,
)
from agent.spans.decode.common import pop_service_name
from agent.spans.delivery.receipt import PassThroughRules
from agent.spans.encode.protobuf import span_field
from agent.spans.encode.resources import resource_key
from agent.spans.model import Attributes, Span
from agent.spans.validate import MAX_DURATION_NS, MAX_TIME_NS, MIN_TIME_NS, BadRecord

_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)


def pass_through(body: bytes, rules: PassThroughRules) -> Decoded:
    request = parse_request(body)
    decoded = Decoded()
    for i, resource_spans in enumerate(request.resource_spans):
        try:
            resource = key_values(resource_spans.resource.attributes, 0)
        except BadRecord as error:
            _reject_group(decoded, resource_spans, i, error)
            continue
        service = pop_service_name(resource, None)
        for j, scope_spans in enumerate(resource_spans.scope_spans):
            group = _Group(service, resource, f"resourceSpans[{i}].scopeSpans[{j}]")
            _scope(decoded, scope_spans, rules, group)
    return decoded


class _Group(NamedTuple):
    service: str | None
    resource: Attributes
    where: str


def _scope(
    decoded: Decoded, scope_spans: ScopeSpans, rules: PassThroughRules, group: _Group
) -> None:
    service, resource, where = group
    scope = scope_spans.scope
    scope_name, scope_version = scope.name, scope.version
    header = Span(b"", b"", "", 0, 0, service_name=service, resource=resource)
    header.scope_name, header.scope_version = scope_name, scope_version
    key = resource_key(header)
    limit = rules.span_limit(key)
    keep_trace = rules.keep_trace
    encoded, slow = decoded.encoded, decoded.spans
    for k, span in enumerate(scope_spans.spans):
        if not _clearly_valid(span):
            try:
                slow.append(span_from_proto(span, service, resource, scope_name, scope_version))
            except BadRecord as error:
                decoded.reject(error.reason, f"{where}.spans[{k}]: {error.detail}")
            continue
        if keep_trace is not None and not keep_trace(span.trace_id):
            decoded.sampled_out += 1
            continue
        flags = span.flags
        if flags and not flags & SAMPLED_FLAG:
            span.flags = flags | SAMPLED_FLAG
        if span.parent_span_id == _ZERO_SPAN_ID:
            span.parent_span_id = b""
        framed = span_field(span.SerializeToString())
        if len(framed) > limit:
            slow.append(span_from_proto(span, service, resource, scope_name, scope_version))
            continue
        encoded.append((key, framed))


def _clearly_valid(span: ProtoSpan) -> bool:
    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if not (
        len(trace_id) == 16
        and trace_id != _ZERO_TRACE_ID
        and len(span_id) == 8
        and span_id != _ZERO_SPAN_ID
        and (not parent or len(parent) == 8)
        and MIN_TIME_NS <= start <= end <= MAX_TIME_NS
        and end - start <= MAX_DURATION_NS
        and span.name
        and 0 <= span.kind <= 5
        and 0 <= span.status.code <= 2
    ):
        return False
    for event in span.events:
        if not MIN_TIME_NS <= event.time_unix_nano <= MAX_TIME_NS:
            return False
    for link in span.links:
        link_trace, link_span = link.trace_id, link.span_id
        if not (
            len(link_trace) == 16
            and link_trace != _ZERO_TRACE_ID
            and len(link_span) == 8
            and link_span != _ZERO_SPAN_ID
        ):
            return False
    return True


def _reject_group(
    decoded: Decoded, resource_spans: ResourceSpans, index: int, error: BadRecord
) -> None:
    for scope_spans in resource_spans.scope_spans:
        for _ in scope_spans.spans:
            decoded.reject(error.reason, f"resourceSpans[{index}].resource: {error.detail}")
