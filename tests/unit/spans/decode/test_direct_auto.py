"""`auto` keeps the format it decided for a file, and re-decides on a line that does not fit:
a file that mixes formats (and records that look like one format but route to another) reads
the same through the direct path, fed in batches of any size, as through the general path."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.spans.decode.auto import AutoDecoder, _is_span_json, _route
from agent.spans.decode.registry import make_decoder
from agent.spans.encode.direct import DirectWriter
from agent.spans.encode.protobuf import encode_span, span_field
from agent.spans.encode.resources import resource_key
from agent.spans.model import DecodeResult, Span
from tests.unit.spans.decode.test_direct import TEMPLATES, changed_records, general_read
from tests.unit.spans.decode.test_direct_jobfirst import jobfirst_spans

SPAN_JSON = TEMPLATES["span-json"][0]
LOOKALIKES = [
    {**SPAN_JSON, "context": {"trace_id": "x"}},  # routes to otel-sdk
    {**SPAN_JSON, "SpanContext": {}},
    {**SPAN_JSON, "scopeSpans": []},  # routes to otlp-json
    {key: value for key, value in SPAN_JSON.items() if key != "span_id"},  # not a span
    # A JobFirst marker nested in a record of the file's format: that format's span.
    {**SPAN_JSON, "status": {"code": "error", "message": "Span failed"}},
    {**TEMPLATES["otel-sdk"][0], "status": {"status_code": "ERROR", "description": "x"}},
    # Top-level message keys: routed from scratch (a marker makes it a JobFirst line).
    {**SPAN_JSON, "message": "Span started"},
    {**SPAN_JSON, "msg": "hello"},
    {**TEMPLATES["otel-sdk"][0], "message": "Span ended"},
    {**TEMPLATES["otel-sdk"][1], "msg": "Span started"},
    {**TEMPLATES["otlp-json"][0], "message": "Span started"},
]
NESTED_MARKER = orjson.dumps({**SPAN_JSON, "status": {"code": "error", "message": "Span failed"}})
any_line = (
    st.sampled_from(sorted(TEMPLATES)).flatmap(changed_records)
    | st.sampled_from([orjson.dumps(obj) for obj in LOOKALIKES])
    | st.sampled_from([b"", b"{", b"}", b"plain text", b'{"msg":"x","trace_id":"t"}'])
)


def batched_direct_read(lines: list[bytes], sizes: list[int]) -> tuple[list[Any], DecodeResult]:
    decoder = make_decoder("auto", orphan_timeout_ns=10**9, default_service="fallback")
    direct, into, items, at = DirectWriter(None), DecodeResult(), [], 0
    for size in [*sizes, len(lines)]:
        items += decoder.feed_direct(lines[at : at + size], 0, direct, into)
        at += size
    encoded = [
        (resource_key(i), span_field(encode_span(i))) if isinstance(i, Span) else i for i in items
    ]
    return encoded, into


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(any_line | jobfirst_spans().map(b"\n".join), max_size=12),
    st.lists(st.integers(min_value=0, max_value=4), max_size=6),
)
def test_a_mixed_file_reads_the_same_both_ways_in_any_batches(
    chunks: list[bytes], sizes: list[int]
) -> None:
    lines = [line for chunk in chunks for line in chunk.split(b"\n")]
    direct, into = batched_direct_read(lines, sizes)
    general, result = general_read("auto", lines)
    assert direct == general
    assert into.dead == result.dead
    assert (into.skipped, into.incomplete, into.evicted) == (
        result.skipped,
        result.incomplete,
        result.evicted,
    )


def test_the_decision_is_kept_and_changed_by_a_line_that_does_not_fit() -> None:
    decoder = make_decoder("auto", orphan_timeout_ns=10**9, default_service=None)
    assert isinstance(decoder, AutoDecoder)
    direct, into = DirectWriter(None), DecodeResult()
    decoder.feed_direct([orjson.dumps(SPAN_JSON)], 0, direct, into)
    assert decoder.decided == "span-json"
    decoder.feed_direct([orjson.dumps(TEMPLATES["otel-sdk"][1])], 0, direct, into)
    assert decoder.decided == "otel-sdk"
    decoder.feed_direct([orjson.dumps(SPAN_JSON)], 0, direct, into)
    assert (decoder.decided, into.fallbacks) == ("span-json", 0)


def test_the_span_json_test_is_the_routing() -> None:
    for obj in [SPAN_JSON, *LOOKALIKES, *TEMPLATES["otel-sdk"], *TEMPLATES["otlp-json"], {}]:
        assert _is_span_json(obj) == (_route(obj) == "span-json"), obj


def test_a_nested_marker_does_not_take_a_record_of_the_files_format_to_jobfirst() -> None:
    lines = [orjson.dumps(SPAN_JSON), NESTED_MARKER]
    direct, into = batched_direct_read(lines, [])
    general, result = general_read("auto", lines)
    assert direct == general
    assert (len(direct), into.skipped, result.skipped) == (2, 0, 0)


def test_a_jobfirst_line_with_span_json_keys_stays_jobfirst_in_a_span_json_file() -> None:
    decoder = make_decoder("auto", orphan_timeout_ns=10**9, default_service=None)
    assert isinstance(decoder, AutoDecoder)
    direct, into = DirectWriter(None), DecodeResult()
    start = {
        "level": "info",
        "message": "Span started",
        "span_id": "span_1",
        "span_name": "GET /x",
        "name": "GET /x",
        "trace_id": "t1",
        "timestamp": "2024-11-28T07:04:05Z",
    }
    lines = [orjson.dumps(SPAN_JSON), orjson.dumps(start)]
    items = decoder.feed_direct(lines, 0, direct, into)
    assert (len(items), decoder.jobfirst.pending, decoder.decided) == (1, 1, "span-json")


def test_the_first_span_record_decides_after_other_lines() -> None:
    decoder = make_decoder("auto", orphan_timeout_ns=10**9, default_service=None)
    assert isinstance(decoder, AutoDecoder)
    direct, into = DirectWriter(None), DecodeResult()
    lines = [b"plain", b'{"msg":"x","trace_id":"t"}', orjson.dumps(TEMPLATES["otlp-json"][0])]
    items = decoder.feed_direct(lines, 0, direct, into)
    assert (len(items), into.skipped, decoder.decided) == (1, 2, "otlp-json")
