"""Hypothesis strategies for the span model, and helpers to read OTLP back."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from agent.spans.model import AttrValue, Span, SpanEvent, SpanLink
from agent.spans.validate import INT64_MAX, INT64_MIN, MAX_DURATION_NS, MAX_TIME_NS

trace_ids = st.binary(min_size=16, max_size=16).filter(any)
span_ids = st.binary(min_size=8, max_size=8).filter(any)
texts = st.text(max_size=20)
scalars = (
    texts
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.binary(max_size=8)
    | st.none()
)
attr_values: st.SearchStrategy[AttrValue] = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
attributes = st.dictionaries(texts, attr_values, max_size=5)
times = st.integers(min_value=1, max_value=MAX_TIME_NS - MAX_DURATION_NS)
flags = st.none() | st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    start = draw(times)
    end = start + draw(st.integers(min_value=0, max_value=MAX_DURATION_NS))
    events = draw(
        st.lists(
            st.builds(
                SpanEvent, st.integers(min_value=1, max_value=MAX_TIME_NS), texts, attributes
            ),
            max_size=2,
        )
    )
    links = draw(
        st.lists(st.builds(SpanLink, trace_ids, span_ids, texts, attributes, flags), max_size=2)
    )
    return Span(
        trace_id=draw(trace_ids),
        span_id=draw(span_ids),
        name=draw(st.text(min_size=1, max_size=20)),
        start_ns=start,
        end_ns=end,
        parent_span_id=draw(st.just(b"") | span_ids),
        kind=draw(st.integers(min_value=0, max_value=5)),
        attributes=draw(attributes),
        events=events,
        links=links,
        status_code=draw(st.integers(min_value=0, max_value=2)),
        status_message=draw(texts),
        trace_state=draw(texts),
        service_name=draw(st.none() | st.text(min_size=1, max_size=10)),
        resource=draw(
            st.dictionaries(texts.filter(lambda k: k != "service.name"), attr_values, max_size=3)
        ),
        scope_name=draw(texts),
        scope_version=draw(texts),
        flags=draw(flags),
    )


def expected_value(value: AttrValue) -> Any:
    """What an attribute should read back as: out-of-int64 ints travel as strings."""
    if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
        return str(value)
    if type(value) is list:
        return [expected_value(v) for v in value]
    if type(value) is dict:
        return {k: expected_value(v) for k, v in value.items()}
    return value


def read_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [read_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: read_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which)


def read_attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: read_value(kv.value) for kv in key_values}


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN and bool never equals int."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (math.isnan(a) and math.isnan(b)) or a == b
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)
