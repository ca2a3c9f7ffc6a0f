"""Every format's direct path (`Decoder.feed_direct`) gives what its general path gives.

Records that take the direct path, each changed at a few random places in its JSON tree (a
value replaced by an odd one, a key removed or respelled in snake_case), read both ways: the
direct path's spans (encoded, and the `Span`s it handed to the general path, encoded the same
way) must equal the general path's, byte for byte, with the same dead letters and skips. So a
faster path can never change what reaches Jaeger. tests/unit/spans/encode/test_direct.py does
the same for whole reads through `Outbound`, sampling and size limits included.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.spans.decode.registry import make_decoder
from agent.spans.encode.direct import DirectWriter
from agent.spans.encode.protobuf import encode_span, span_field
from agent.spans.encode.resources import resource_key
from agent.spans.model import DecodeResult, Span
from tests.unit.spans.decode.test_jobfirst import ended, started
from tests.unit.spans.decode.test_jobfirst import event as jobfirst_event
from tests.unit.spans.decode.test_otelsdk import go_stub
from tests.unit.spans.decode.test_otlpjson import otlp_span, request
from tests.unit.spans.samples.mutations import VALID, mutated

TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def python_span() -> dict[str, Any]:
    """What `ReadableSpan.to_json()` holds, one line (a formatter writing compact JSON)."""
    return {
        "name": "GET /jobs",
        "context": {"trace_id": "0x" + TRACE, "span_id": "0x" + SPAN, "trace_state": "[]"},
        "kind": "SpanKind.SERVER",
        "parent_id": "0x" + "b7ad6b7169203331",
        "start_time": "2024-11-28T07:04:05.123456Z",
        "end_time": "2024-11-28T07:04:05.223456Z",
        "status": {"status_code": "ERROR", "description": "boom"},
        "attributes": {"http.status_code": 500, "ratio": 0.25, "ok": True, "user": "u-1"},
        "events": [
            {"name": "picked", "timestamp": "2024-11-28T07:04:05.150000Z", "attributes": {"q": 1}}
        ],
        "links": [],
        "resource": {"attributes": {"service.name": "py", "team": "core"}, "schema_url": ""},
    }


def go_span() -> dict[str, Any]:
    stub = go_stub()
    stub["Attributes"] = stub["Attributes"][:3]  # scalars only: what the direct path takes
    stub["Links"] = None
    stub["SpanContext"]["TraceState"] = ""
    return stub


def otlp_record() -> dict[str, Any]:
    span = otlp_span()
    span["attributes"] = span["attributes"][:4]
    span["flags"] = 257
    return request(span)


TEMPLATES: dict[str, list[Any]] = {
    "otlp-json": [otlp_record(), otlp_record()["resourceSpans"][0]],
    "otel-sdk": [python_span(), go_span()],
    "span-json": [
        {
            "trace_id": TRACE,
            "span_id": SPAN,
            "parent_span_id": "b7ad6b7169203331",
            "name": "GET /jobs",
            "kind": "server",
            "start_time_unix_nano": 1_732_777_445_123_456_789,
            "end_time_unix_nano": 1_732_777_445_223_456_789,
            "attributes": {"a": 1, "b": "x", "c": 0.5, "d": False},
            "events": [{"name": "e", "time_unix_nano": 1_732_777_445_150_000_000}],
            "status": {"code": "error", "message": "boom"},
            "service": "jobs-api",
        }
    ],
}
ODD_VALUES = [
    None, "", 0, 1, -1, 2.5, True, False, [], {}, "x", "0", "-7", "1e3", "NaN", "SPAN_KIND_SERVER",
    "Error", "OK", "0x" + SPAN, SPAN, TRACE, "0" * 16, "0" * 32, 2**64, -(2**63), 2**63,
    -(2**63) - 1, 2**64 - 1, 10**20,
    "2024-11-28T07:04:05Z", "2024-11-28T07:04:05.1+08:00", "0001-01-01T00:00:00Z",
    {"stringValue": "v"}, {"intValue": "5"}, {"stringValue": "v", "intValue": 1},
    [{"key": "k", "value": {"boolValue": False}}], [{"Key": "k", "Value": {"Type": "BOOL"}}],
]  # fmt: skip
_CAMEL = re.compile(r"(?<=[a-z])([A-Z])")


def _places(tree: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value in a JSON tree."""
    places = [path] if path else []
    if type(tree) is dict:
        for key, value in tree.items():
            places += _places(value, (*path, key))
    elif type(tree) is list:
        for index, value in enumerate(tree):
            places += _places(value, (*path, index))
    return places


@st.composite
def changed_records(draw: st.DrawFn, fmt: str) -> bytes:
    tree = copy.deepcopy(draw(st.sampled_from(TEMPLATES[fmt])))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        places = _places(tree)
        if not places:
            break
        *parent_path, last = draw(st.sampled_from(places))
        parent = tree
        for step in parent_path:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "replace", "delete", "respell"]))
        if action == "replace":
            parent[last] = copy.deepcopy(draw(st.sampled_from(ODD_VALUES)))
        elif type(parent) is dict and action == "delete":
            del parent[last]
        elif type(parent) is dict and type(last) is str:  # snake_case, as the general reads it
            parent[_CAMEL.sub(r"_\1", last).lower()] = parent.pop(last)
    return json.dumps(tree, separators=(",", ":")).encode()


def direct_read(fmt: str, lines: list[bytes]) -> tuple[list[Any], DecodeResult]:
    decoder = make_decoder(fmt, orphan_timeout_ns=10**9, default_service="fallback")
    into = DecodeResult()
    items = decoder.feed_direct(lines, 0, DirectWriter(None), into)
    encoded = [
        (resource_key(item), span_field(encode_span(item))) if isinstance(item, Span) else item
        for item in items
    ]
    return encoded, into


def general_read(fmt: str, lines: list[bytes]) -> tuple[list[Any], DecodeResult]:
    decoder = make_decoder(fmt, orphan_timeout_ns=10**9, default_service="fallback")
    result = decoder.feed_many(lines, 0)
    return [(resource_key(s), span_field(encode_span(s))) for s in result.spans], result


def same_reads(fmt: str, lines: list[bytes]) -> DecodeResult:
    direct, into = direct_read(fmt, lines)
    general, result = general_read(fmt, lines)
    assert direct == general
    assert into.dead == result.dead
    assert (into.skipped, into.incomplete, into.evicted) == (
        result.skipped,
        result.incomplete,
        result.evicted,
    )
    assert into.spans == []
    return into


formats = st.sampled_from(sorted(TEMPLATES))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), formats, st.booleans())
def test_changed_records_decode_the_same_both_ways(
    data: st.DataObject, fmt: str, auto: bool
) -> None:
    lines = data.draw(st.lists(changed_records(fmt), min_size=1, max_size=4))
    into = same_reads("auto" if auto else fmt, lines)
    event(f"{fmt}: fallbacks {min(into.fallbacks, 1)}, dead {min(len(into.dead), 1)}")


def test_the_templates_take_the_direct_path() -> None:
    """So the property above compares the direct path with the general one, not the general
    path with itself."""
    for fmt, templates in TEMPLATES.items():
        lines = [orjson.dumps(template) for template in templates]
        for name in (fmt, "auto"):
            encoded, into = direct_read(name, lines)
            assert into.fallbacks == 0, (name, into)
            assert len(encoded) == len(lines)
            assert all(type(item) is tuple for item in encoded)
            assert same_reads(name, lines).dead == []


def test_jobfirst_lines_decode_the_same_both_ways() -> None:
    lines = [started(), jobfirst_event("e"), b'{"level":"info","msg":"hello"}', ended()]
    for name in ("jobfirst", "auto"):
        into = same_reads(name, lines)
        assert into.skipped == 1


def test_a_declined_record_is_counted_as_a_fallback() -> None:
    span = otlp_span(kind="SPAN_KIND_CLIENT")  # an enum name: the general path reads it
    span["attributes"] = []
    lines = [orjson.dumps(request(span)), b"", orjson.dumps(otlp_record())]
    for name in ("otlp-json", "auto"):
        encoded, into = direct_read(name, lines)
        assert into.fallbacks == 1
        assert len(encoded) == 2
        assert Counter(type(item).__name__ for item in encoded) == {"tuple": 2}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(formats, st.lists(st.binary(max_size=120) | st.sampled_from(VALID) | mutated(), max_size=8))
def test_any_bytes_decode_the_same_both_ways_and_never_raise(fmt: str, lines: list[bytes]) -> None:
    for name in (fmt, "auto", "jobfirst"):
        into = same_reads(name, lines)
        assert [d.detail for d in into.dead if d.reason == "internal_error"] == []
