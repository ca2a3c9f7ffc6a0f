"""JobFirst logrus lines, as its tracing.go/logger.go write them, assembled into spans."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans

from agent.spans.decode.assemble import OpenSpanExchange
from agent.spans.decode.jobfirst_mapping import w3c_span_id, w3c_trace_id
from agent.spans.decode.jobfirst_parse import parse_go_duration
from agent.spans.decode.registry import make_decoder
from agent.spans.encode.direct import DirectWriter
from agent.spans.model import (
    INCOMPLETE_ATTRIBUTE,
    KIND_INTERNAL,
    KIND_SERVER,
    STATUS_ERROR,
    STATUS_UNSET,
    DecodeResult,
)
from tests.unit.spans.samples.jobfirst import SPAN, TRACE, ended, event, logrus, started

SECOND = 1_000_000_000
MINUTE = 60 * SECOND


def decoder(**kw: Any) -> Any:
    options: dict[str, Any] = {"orphan_timeout_ns": MINUTE, "default_service": "jobs-api"}
    options.update(kw)
    return make_decoder("jobfirst", **options)


def feed_all(dec: Any, lines: list[bytes], now_ns: int = 0) -> DecodeResult:
    result: DecodeResult = dec.feed_many(lines, now_ns)
    return result


def test_a_request_span_from_the_gin_middleware() -> None:
    result = feed_all(
        decoder(),
        [
            logrus("Server starting", port=8080),
            started(),
            event("cache miss"),
            ended("523.417µs", status=1, desc="HTTP 500"),
        ],
    )
    assert result.skipped == 1
    assert result.dead == []
    (span,) = result.spans
    start = 1_732_777_445_123_456_789
    assert span.trace_id == w3c_trace_id(TRACE)
    assert span.span_id == w3c_span_id(TRACE, SPAN)
    assert (span.start_ns, span.end_ns) == (start, start + 523_417)
    assert span.kind == KIND_SERVER
    assert span.name == "GET /api/v1/jobs"
    assert (span.status_code, span.status_message) == (STATUS_ERROR, "HTTP 500")
    assert span.service_name == "jobs-api"
    assert span.attributes["jobfirst.trace_id"] == TRACE
    assert span.attributes["jobfirst.span_id"] == SPAN
    assert span.attributes["http.method"] == "GET"
    assert span.attributes["http.route"] == "/api/v1/jobs"
    assert span.attributes["level"] == "info"
    (ev,) = span.events
    assert ev.name == "cache miss"
    assert start <= ev.time_ns <= span.end_ns  # the whole-second stamp, clamped into the span


def test_status_zero_is_unset_and_other_names_are_internal() -> None:
    (span,) = feed_all(decoder(), [started("LoadConfig"), ended(name="LoadConfig")]).spans
    assert span.status_code == STATUS_UNSET
    assert span.status_message == ""
    assert span.kind == KIND_INTERNAL
    assert "http.method" not in span.attributes


def test_ids_are_deterministic_valid_w3c_ids() -> None:
    first = feed_all(decoder(), [started(), ended()]).spans[0]
    replay = feed_all(decoder(), [started(), ended()]).spans[0]
    assert (first.trace_id, first.span_id) == (replay.trace_id, replay.span_id)
    assert len(first.trace_id) == 16 and any(first.trace_id)
    assert len(first.span_id) == 8 and any(first.span_id)
    other = feed_all(decoder(), [started(trace="trace_1"), ended(trace="trace_1")]).spans[0]
    assert other.span_id != first.span_id  # same span string, another trace


@pytest.mark.parametrize("trace", ["trace_1732777445123456000", "t", "trace_é"])
@pytest.mark.parametrize("span", ["span_1732777445123456001", "s"])
def test_the_ids_are_the_documented_blake2b_of_the_originals(trace: str, span: str) -> None:
    """Replays dedupe only while the same input gives the same IDs, release after release."""
    trace_id = hashlib.blake2b(trace.encode(), digest_size=16, person=b"jobfirst.trace")
    span_id = hashlib.blake2b(f"{trace}\x00{span}".encode(), digest_size=8, person=b"jobfirst.span")
    assert w3c_trace_id(trace) == trace_id.digest()
    assert w3c_span_id(trace, span) == span_id.digest()
    lines = [started(trace=trace, span=span), ended(trace=trace, span=span)]
    ((_, framed),) = decoder().feed_direct(lines, 0, DirectWriter(None), DecodeResult())
    (direct,) = ScopeSpans.FromString(framed).spans  # framed: a ScopeSpans.spans field
    assert (direct.trace_id, direct.span_id) == (trace_id.digest(), span_id.digest())


def test_start_time_falls_back_to_trace_nanos_then_line_timestamp() -> None:
    (span,) = feed_all(decoder(), [started(span="span_x"), ended(span="span_x")]).spans
    assert span.start_ns == 1_732_777_445_123_456_000
    lines = [started(trace="t", span="s"), ended(trace="t", span="s", duration="2s")]
    (span,) = feed_all(decoder(), lines).spans
    assert (span.start_ns, span.end_ns) == (1_732_777_445 * SECOND, 1_732_777_447 * SECOND)
    # Nanos a day away from the line's time are not a timestamp (e.g. a counter).
    (span,) = feed_all(decoder(), [started(span="span_17"), ended(span="span_17")]).spans
    assert span.start_ns == 1_732_777_445_123_456_000


def test_end_line_alone_makes_the_span() -> None:
    result = feed_all(decoder(), [event("queued"), ended("2m3.5s")])
    (span,) = result.spans
    assert span.start_ns == 1_732_777_445_123_456_789
    assert span.end_ns == span.start_ns + 123_500_000_000
    assert [e.name for e in span.events] == ["queued"]
    assert span.attributes.get(INCOMPLETE_ATTRIBUTE) is None


@pytest.mark.parametrize("fmt", ["jobfirst", "auto"])
def test_a_span_started_before_a_rotation_and_ended_after_it_is_made_once(fmt: str) -> None:
    """The old file's decoder read the start, the new file's reads the rest: the new one
    takes the open span through the pipeline's exchange and completes it with the start
    line's attributes; nothing is left in the old one to time out as a second copy."""
    exchange = OpenSpanExchange()
    old_file = make_decoder(fmt, orphan_timeout_ns=MINUTE, default_service=None, exchange=exchange)
    new_file = make_decoder(fmt, orphan_timeout_ns=MINUTE, default_service=None, exchange=exchange)
    assert feed_all(old_file, [started(user_id=7), event("queued")]).spans == []
    result = feed_all(new_file, [event("picked up"), ended("2s", status=1, desc="boom")])
    (span,) = result.spans
    assert span.attributes["user_id"] == 7, "the start line's fields"
    assert [e.name for e in span.events] == ["queued", "picked up"]
    assert span.start_ns == 1_732_777_445_123_456_789
    assert span.end_ns == span.start_ns + 2 * SECOND
    assert span.status_code == STATUS_ERROR
    assert INCOMPLETE_ATTRIBUTE not in span.attributes
    assert exchange.handed_over == 1
    assert old_file.pending == 0 and old_file.snapshot() == {}
    assert old_file.expire(10 * MINUTE).spans == [] and new_file.pending == 0


def test_without_an_exchange_each_file_decodes_on_its_own() -> None:
    old_file, new_file = decoder(), decoder()
    feed_all(old_file, [started(user_id=7)])
    (from_end_line,) = feed_all(new_file, [ended("2s")]).spans
    assert "user_id" not in from_end_line.attributes
    assert old_file.pending == 1


def test_end_line_alone_without_id_nanos_ends_at_its_timestamp() -> None:
    (span,) = feed_all(decoder(), [ended("1.5s", trace="t", span="s")]).spans
    assert span.end_ns == 1_732_777_445 * SECOND
    assert span.start_ns == span.end_ns - 1_500_000_000


def test_orphan_start_is_exported_incomplete_after_the_timeout() -> None:
    dec = decoder()
    assert feed_all(dec, [started(), event("working")], now_ns=10 * MINUTE).spans == []
    assert dec.pending == 1
    assert dec.expire(10 * MINUTE + MINUTE - 1).spans == []
    result = dec.expire(11 * MINUTE)
    (span,) = result.spans
    assert result.incomplete == 1 and result.evicted == 0
    assert span.attributes[INCOMPLETE_ATTRIBUTE] is True
    assert span.attributes["sidecar.incomplete_reason"] == "timeout"
    assert span.status_code == STATUS_UNSET
    assert span.end_ns == span.start_ns  # last activity is the start's second, clamped
    assert [e.name for e in span.events] == ["working"]
    assert dec.pending == 0


def test_activity_postpones_the_timeout() -> None:
    dec = decoder()
    feed_all(dec, [started()], now_ns=0)
    feed_all(dec, [event("still busy")], now_ns=50 * SECOND)
    assert dec.expire(MINUTE + SECOND).spans == []
    assert len(dec.expire(2 * MINUTE).spans) == 1


def test_orphan_events_become_dead_letters_after_the_timeout() -> None:
    dec = decoder()
    line = event("lost", trace="trace_9")
    feed_all(dec, [line], now_ns=0)
    assert dec.pending == 1
    result = dec.expire(2 * MINUTE)
    assert [(d.reason, d.raw) for d in result.dead] == [("orphan_event", line)]
    assert dec.pending == 0


def test_open_span_cap_evicts_the_oldest_as_incomplete() -> None:
    dec = decoder(max_open_spans=2)
    lines = [started(name="A", span="span_1"), started(name="B", span="span_2")]
    assert feed_all(dec, lines).spans == []
    result = feed_all(dec, [started(name="C", span="span_3")])
    (evicted,) = result.spans
    assert evicted.name == "A"
    assert evicted.attributes["sidecar.incomplete_reason"] == "evicted"
    assert (result.evicted, result.incomplete, dec.pending) == (1, 1, 2)


def test_events_join_the_latest_open_span_of_that_name() -> None:
    lines = [
        started(name="work", span="span_1"),
        started(name="work", span="span_2"),
        event("inner", name="work"),
        ended(name="work", span="span_2"),
        event("outer", name="work"),
        ended(name="work", span="span_1"),
    ]
    spans = feed_all(decoder(), lines).spans
    assert [(s.attributes["jobfirst.span_id"], [e.name for e in s.events]) for s in spans] == [
        ("span_2", ["inner"]),
        ("span_1", ["outer"]),
    ]


def test_service_level_and_extra_fields() -> None:
    lines = [
        started(service="billing", request_id="r-1", **{"fields.level": "debug"}),
        event("hit", cache="redis"),
        ended(level="warning", rows=3),
    ]
    (span,) = feed_all(decoder(), lines).spans
    assert span.service_name == "billing"
    assert span.attributes["request_id"] == "r-1"
    assert span.attributes["fields.level"] == "debug"
    assert span.attributes["level"] == "warning"
    assert span.attributes["rows"] == 3
    assert span.events[0].attributes == {"cache": "redis", "level": "info"}


def test_escaped_names_and_msg_key() -> None:
    name = "POST /a&b<c>"
    line = logrus("Span started", span_id=SPAN, span_name=name, trace_id=TRACE)
    assert b"\\u0026" in line
    end = orjson.loads(ended(name=name))
    end["msg"] = end.pop("message")
    (span,) = feed_all(decoder(), [line, orjson.dumps(end)]).spans
    assert span.name == name


def test_other_lines_are_skipped_before_parsing() -> None:
    dec = decoder()
    lines = [
        b"plain text, not json at all \xff",
        logrus("Tracing context injected", trace_id=TRACE),
        logrus("Span something else", trace_id=TRACE),
        b"",
    ]
    result = feed_all(dec, lines)
    assert (result.skipped, result.spans, result.dead) == (4, [], [])


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (ended(duration="1.5 parsecs"), "bad_duration"),
        (ended(duration="-1.5s"), "end_before_start"),
        (logrus("Span started", span_name="x", trace_id=TRACE), "missing_field"),
        (logrus("Span ended", span_id=SPAN, span_name="x"), "missing_field"),
        (
            logrus("Span started", span_id=SPAN, span_name="x", trace_id=TRACE, timestamp="now"),
            "bad_time",
        ),
        (b'{"message":"Span started","trace_id":', "malformed_json"),
        (b'{"message":"Span started","span_name":"\xff"}', "invalid_utf8"),
    ],
)
def test_bad_lines_are_dead_letters(line: bytes, reason: str) -> None:
    result = feed_all(decoder(), [line])
    assert [(d.reason, d.raw) for d in result.dead] == [(reason, line)]


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("0s", 0),
        ("0", 0),
        ("100ns", 100),
        ("1.5µs", 1500),
        ("1.5μs", 1500),
        ("1.5us", 1500),
        ("523.417µs", 523_417),
        ("1.5ms", 1_500_000),
        ("2m3.5s", 123_500_000_000),
        ("1h2m3.5s", 3_723_500_000_000),
        ("-1.5s", -1_500_000_000),
        ("1.000000001s", 1_000_000_001),
        ("2562047h47m16.854775807s", 2**63 - 1),
    ],
)
def test_go_durations(text: str, nanos: int) -> None:
    assert parse_go_duration(text) == nanos


def test_snapshot_restore_round_trip_is_exact() -> None:
    lines = [
        started(name="A", span="span_1"),
        event("a1", name="A"),
        started(name="B", span="span_2", extra={"k": [1, 2.5, None]}),
        event("waiting", name="Z", trace="trace_z"),
    ]
    original = decoder()
    feed_all(original, lines, now_ns=5 * SECOND)
    state = original.snapshot()
    restored = decoder()
    restored.restore(json.loads(json.dumps(state)))  # as a checkpoint file stores it
    assert restored.snapshot() == state
    assert restored.pending == original.pending == 3

    rest = [ended(name="A", span="span_1"), ended(name="Z", trace="trace_z", span="span_9")]
    assert feed_all(restored, rest).spans == feed_all(original, rest).spans
    later = 10 * MINUTE
    assert_same_expiry(original.expire(later), restored.expire(later))


def assert_same_expiry(a: DecodeResult, b: DecodeResult) -> None:
    assert a.spans == b.spans and len(a.spans) == 1
    assert [(d.reason, d.raw) for d in a.dead] == [(d.reason, d.raw) for d in b.dead]


def test_empty_state_and_bad_state() -> None:
    dec = decoder()
    assert dec.snapshot() == {}
    dec.restore({})
    assert dec.pending == 0
    with pytest.raises(ValueError, match="version"):
        dec.restore({"v": 99})
    with pytest.raises(ValueError, match="bad jobfirst"):
        dec.restore({"v": 1, "open": [["too", "short"]], "waiting": []})


def _snapshot_with_waiting() -> dict[str, Any]:
    dec = decoder()
    feed_all(dec, [started(name="A", span="span_1"), event("a1", name="A")], now_ns=SECOND)
    feed_all(dec, [event("w", name="Z", trace="trace_z")], now_ns=SECOND)
    state: dict[str, Any] = json.loads(json.dumps(dec.snapshot()))
    return state


@pytest.mark.parametrize(
    ("part", "index", "bad"),
    [
        ("open", 0, 7),  # trace id not text
        ("open", 3, "1"),  # start time not an int
        ("open", 3, True),
        ("open", 6, 5),  # service neither text nor null
        ("open", 7, []),  # attributes not a map
        ("open", 8, None),  # raw line not text
        ("open", 9, {}),  # events not a list
        ("waiting", 2, 1.5),  # last seen not an int
        ("waiting", 3, "x"),
    ],
)
def test_a_state_field_of_the_wrong_type_is_refused(part: str, index: int, bad: Any) -> None:
    state = _snapshot_with_waiting()
    state[part][0][index] = bad
    dec = decoder()
    with pytest.raises(ValueError, match="bad jobfirst"):
        dec.restore(state)
    dec.restore(_snapshot_with_waiting())
    assert dec.snapshot() == _snapshot_with_waiting()


@pytest.mark.parametrize(("index", "bad"), [(0, 1), (1, "t"), (2, []), (3, b"raw")])
def test_an_event_field_of_the_wrong_type_is_refused(index: int, bad: Any) -> None:
    state = _snapshot_with_waiting()
    state["open"][0][9][0][index] = bad
    with pytest.raises(ValueError, match="bad jobfirst"):
        decoder().restore(state)
