from __future__ import annotations

import json

import orjson

from agent.spans.decode.registry import FORMATS, make_decoder
from agent.spans.model import DecodeResult
from tests.unit.spans.samples.jobfirst import ended, logrus, started
from tests.unit.spans.samples.otelsdk import go_stub, python_console_output
from tests.unit.spans.samples.otlpjson import otlp_span, request
from tests.unit.spans.samples.spanjson import record


def test_one_file_mixing_every_format_and_other_logs() -> None:
    python_text, _ = python_console_output()
    lines = [
        b"2024-11-28 15:04:05 INFO plain text log line",
        logrus("Server starting", port=8080),
        logrus("Tracing context injected", trace_id="trace_1"),
        started(),
        orjson.dumps(record()),
        orjson.dumps(request(otlp_span())),
        *python_text.encode().split(b"\n"),
        json.dumps(go_stub()).encode(),
        *json.dumps(go_stub(), indent="\t").encode().split(b"\n"),
        ended(),
        b'{"level":"info","msg":"no trace here"}',
        b"",
    ]
    decoder = make_decoder("auto", orphan_timeout_ns=10**9, default_service="svc")
    result: DecodeResult = decoder.feed_many(lines, 0)
    assert result.dead == []
    names = [s.name for s in result.spans]
    assert names == [
        "GET /jobs",
        "SELECT jobs",
        "call db",
        "GET /jobs",
        "GET /jobs",
        "GET /jobs",
        "GET /api/v1/jobs",
    ]
    assert result.skipped == 6  # 4 log lines, 1 blank line, a trailing blank
    assert decoder.pending == 0


def test_auto_state_round_trips_both_parts() -> None:
    pretty = json.dumps(go_stub(), indent="\t").encode().split(b"\n")
    first = make_decoder("auto", orphan_timeout_ns=10**9, default_service=None)
    first.feed_many([started(), *pretty[:3]], 0)
    state = json.loads(json.dumps(first.snapshot()))
    assert set(state) == {"jobfirst", "otel-sdk"}
    second = make_decoder("auto", orphan_timeout_ns=10**9, default_service=None)
    second.restore(state)
    rest = [*pretty[3:], ended()]
    assert second.feed_many(rest, 0).spans == first.feed_many(rest, 0).spans
    assert second.pending == first.pending == 0


def test_broken_span_looking_json_is_a_dead_letter_in_auto() -> None:
    decoder = make_decoder("auto", orphan_timeout_ns=0, default_service=None)
    assert [d.reason for d in decoder.feed(b'{"trace_id": "abc", "span_id"', 0).dead] == [
        "malformed_json"
    ]
    assert decoder.feed(b'{"trace_id": "abc"}', 0).skipped == 1


def test_nan_is_accepted_in_a_one_line_otel_sdk_object_and_nowhere_else() -> None:
    one_line, _ = python_console_output(lambda span: span.to_json(indent=None) + "\n")
    decoder = make_decoder("auto", orphan_timeout_ns=0, default_service=None)
    lines = one_line.replace('"ratio": 0.25', '"ratio": NaN', 1).encode().splitlines()
    result = decoder.feed_many(lines, 0)
    assert (len(result.spans), result.dead) == (2, [])
    with_nan = orjson.dumps(record()).replace(b"}", b', "x": NaN}', 1)
    assert [d.reason for d in decoder.feed(with_nan, 0).dead] == ["malformed_json"]


def test_make_decoder_names() -> None:
    for name in FORMATS:
        assert make_decoder(name, orphan_timeout_ns=0, default_service=None).pending == 0
    try:
        make_decoder("xml", orphan_timeout_ns=0, default_service=None)
    except ValueError as exc:
        assert "span-json" in str(exc)
    else:
        raise AssertionError("an unknown format must be refused")
