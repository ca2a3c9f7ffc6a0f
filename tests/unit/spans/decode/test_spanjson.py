from __future__ import annotations

from typing import Any

import orjson
import pytest

from agent.spans.decode.registry import make_decoder
from agent.spans.model import KIND_CLIENT, KIND_INTERNAL, KIND_SERVER, STATUS_ERROR, Span
from tests.unit.spans.samples.spanjson import SPAN, START, TRACE, record


def decode(
    obj: dict[str, Any] | bytes, service: str | None = "svc"
) -> tuple[list[Span], list[Any]]:
    decoder = make_decoder("span-json", orphan_timeout_ns=0, default_service=service)
    line = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    result = decoder.feed(line, 0)
    return result.spans, [(d.reason, d.detail) for d in result.dead]


def one(obj: dict[str, Any]) -> Span:
    spans, dead = decode(obj)
    assert dead == []
    (span,) = spans
    return span


def test_minimal_record() -> None:
    span = one(record())
    assert span.trace_id == bytes.fromhex(TRACE)
    assert span.span_id == bytes.fromhex(SPAN)
    assert span.parent_span_id == b""
    assert (span.start_ns, span.end_ns) == (START, START + 12_500_000)
    assert span.kind == KIND_INTERNAL
    assert span.service_name == "svc"


def test_full_record() -> None:
    span = one(
        record(
            parent_span_id="0x00F067AA0BA902B8",
            kind="SERVER",
            attributes={"http.status_code": 500, "tags": ["a", "b"], "nested": {"k": 1.5}},
            events=[{"name": "retry", "time": "2024-11-28T07:04:05.5Z", "attributes": {"n": 2}}],
            links=[{"trace_id": TRACE.upper(), "span_id": "1" * 16, "attributes": {"why": "x"}}],
            status={"code": "error", "message": "boom"},
            service="jobs-api",
            resource={"deployment.environment": "prod"},
            scope={"name": "my.lib", "version": "1.2"},
            trace_state="k=v",
            flags=1,
        )
    )
    assert span.parent_span_id == bytes.fromhex("00f067aa0ba902b8")
    assert span.kind == KIND_SERVER
    assert span.attributes["nested"] == {"k": 1.5}
    assert span.events[0].time_ns == 1_732_777_445_500_000_000
    assert span.events[0].attributes == {"n": 2}
    assert span.links[0].trace_id == bytes.fromhex(TRACE)
    assert (span.status_code, span.status_message) == (STATUS_ERROR, "boom")
    assert span.service_name == "jobs-api"
    assert span.resource == {"deployment.environment": "prod"}
    assert (span.scope_name, span.scope_version, span.trace_state, span.flags) == (
        "my.lib",
        "1.2",
        "k=v",
        1,
    )


@pytest.mark.parametrize(
    ("overrides", "start", "end"),
    [
        (
            {"start_time_unix_nano": str(START), "duration_ms": None, "duration_ns": 5},
            START,
            START + 5,
        ),
        ({"duration_ms": None, "end_time_unix_nano": START + 9}, START, START + 9),
        ({"duration_ms": None, "duration_us": 2}, START, START + 2000),
        ({"duration_ms": 3}, START, START + 3_000_000),
        (
            {"start_time_unix_nano": None, "start": "2024-11-28T15:04:05.123456789+08:00"},
            START,
            START + 12_500_000,
        ),
        (
            {"duration_ms": None, "end": "2024-11-28T07:04:06Z"},
            START,
            1_732_777_446_000_000_000,
        ),
    ],
)
def test_time_spellings(overrides: dict[str, Any], start: int, end: int) -> None:
    span = one(record(**overrides))
    assert (span.start_ns, span.end_ns) == (start, end)


@pytest.mark.parametrize(("unit", "nanos"), [("duration_ns", 1000), ("duration_us", 1_000_000)])
def test_an_earlier_duration_unit_wins_over_a_fractional_duration_ms(unit: str, nanos: int) -> None:
    span = one(record(duration_ms=2.5, **{unit: 1000}))
    assert span.end_ns - span.start_ns == nanos


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("client", KIND_CLIENT),
        ("SPAN_KIND_CLIENT", KIND_CLIENT),
        (3, KIND_CLIENT),
        ("SpanKind.CLIENT", 3),
    ],
)
def test_kind_spellings(value: Any, expected: int) -> None:
    assert one(record(kind=value)).kind == expected


def test_service_name_from_the_resource() -> None:
    span = one(record(resource={"service.name": "from-resource", "team": "core"}))
    assert span.service_name == "from-resource"
    assert span.resource == {"team": "core"}
    span = one(record(service="explicit", resource={"service.name": "from-resource"}))
    assert span.service_name == "explicit"
    assert "service.name" not in span.resource


def test_uuid_and_short_ids_are_normalised() -> None:
    span = one(record(trace_id="4bf92f35-77b3-4da6-a3ce-929d0e0e4736", span_id="abc"))
    assert span.trace_id == bytes.fromhex(TRACE)
    assert span.span_id == bytes.fromhex("0000000000000abc")
    assert one(record(trace_id="a3ce929d0e0e4736")).trace_id == bytes(8) + bytes.fromhex(
        "a3ce929d0e0e4736"
    )


def test_zero_parent_means_root() -> None:
    assert one(record(parent_span_id="0000000000000000")).parent_span_id == b""
    assert one(record(parent_span_id="")).parent_span_id == b""


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"trace_id": "0" * 32}, "bad_trace_id"),
        ({"trace_id": "xyz"}, "bad_trace_id"),
        ({"trace_id": "1" * 33}, "bad_trace_id"),
        ({"trace_id": None}, "bad_trace_id"),
        ({"span_id": "0" * 16}, "bad_span_id"),
        ({"span_id": 12}, "bad_span_id"),
        ({"parent_span_id": "nothex"}, "bad_parent_span_id"),
        ({"name": None}, "missing_field"),
        ({"name": ""}, "missing_field"),
        ({"start_time_unix_nano": None}, "missing_field"),
        ({"duration_ms": None}, "missing_field"),
        ({"start_time_unix_nano": None, "start": 1732777445}, "bad_time"),
        ({"start_time_unix_nano": None, "start": "2024-11-28T15:04:05"}, "bad_time"),
        ({"start_time_unix_nano": 0}, "bad_time"),
        ({"start_time_unix_nano": 2**63}, "bad_time"),
        ({"duration_ms": -1}, "end_before_start"),
        ({"duration_ms": 8 * 24 * 3600 * 1000}, "duration_too_long"),
        ({"kind": "sideways"}, "bad_kind"),
        ({"kind": True}, "bad_kind"),
        ({"status": {"code": "meh"}}, "bad_status"),
        ({"attributes": [1, 2]}, "bad_field"),
        ({"events": [{"name": "e", "time": "yesterday"}]}, "bad_time"),
        ({"links": [{"trace_id": TRACE, "span_id": "0" * 16}]}, "bad_span_id"),
    ],
)
def test_rejections_say_why(overrides: dict[str, Any], reason: str) -> None:
    spans, dead = decode(record(**overrides))
    assert spans == []
    assert [r for r, _ in dead] == [reason]


def test_deeply_nested_attribute_is_a_dead_letter() -> None:
    nested: Any = "leaf"
    for _ in range(40):
        nested = [nested]
    spans, dead = decode(record(attributes={"deep": nested}))
    assert (spans, [r for r, _ in dead]) == ([], ["bad_attribute"])


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"trace_id": "abc"', "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"name": "\xff\xfe"}', "invalid_utf8"),
        (b'{"name": "\\ud800"}', "invalid_utf8"),
        (b"\x00\x01\x02binary", "malformed_json"),
    ],
)
def test_broken_lines(line: bytes, reason: str) -> None:
    spans, dead = decode(line)
    assert spans == []
    assert [r for r, _ in dead] == [reason]


def test_blank_lines_are_skipped_and_bom_tolerated() -> None:
    decoder = make_decoder("span-json", orphan_timeout_ns=0, default_service=None)
    assert decoder.feed(b"", 0).skipped == 1
    assert decoder.feed(b"  \r", 0).skipped == 1
    assert len(decoder.feed(b"\xef\xbb\xbf" + orjson.dumps(record()), 0).spans) == 1


def test_line_too_long() -> None:
    decoder = make_decoder(
        "span-json", orphan_timeout_ns=0, default_service=None, max_line_bytes=100
    )
    result = decoder.feed(orjson.dumps(record(attributes={"pad": "x" * 200})), 0)
    assert [d.reason for d in result.dead] == ["line_too_long"]
    assert decoder.pending == 0
    assert decoder.snapshot() == {}


def test_big_integers_survive() -> None:
    span = one(record(attributes={"u64": 2**64 - 1}))
    assert span.attributes["u64"] == 2**64 - 1
