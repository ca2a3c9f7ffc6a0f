"""otel-sdk: real Python ConsoleSpanExporter output, and Go stdouttrace's shape."""

from __future__ import annotations

import json

import pytest

from agent.spans.decode.registry import make_decoder
from agent.spans.model import KIND_CLIENT, KIND_SERVER, STATUS_ERROR, STATUS_OK, DecodeResult
from tests.unit.spans.samples.otelsdk import go_stub, python_console_output


def decode_text(text: str, fmt: str = "otel-sdk") -> DecodeResult:
    decoder = make_decoder(fmt, orphan_timeout_ns=0, default_service="fallback")
    result: DecodeResult = decoder.feed_many(text.encode().split(b"\n"), 0)
    assert decoder.pending == 0
    return result


@pytest.mark.parametrize("fmt", ["otel-sdk", "auto"])
def test_python_console_exporter_pretty_output(fmt: str) -> None:
    text, recorded = python_console_output()
    assert text.startswith("{\n")
    result = decode_text(text, fmt)
    assert result.dead == []
    assert len(result.spans) == len(recorded) == 2
    db, server = result.spans
    db_sdk, server_sdk = recorded
    assert db.trace_id == server.trace_id == db_sdk.context.trace_id.to_bytes(16, "big")
    assert db.span_id == db_sdk.context.span_id.to_bytes(8, "big")
    assert db.parent_span_id == server.span_id
    assert server.parent_span_id == (0xB7AD6B7169203331).to_bytes(8, "big")
    assert (db.kind, server.kind) == (KIND_CLIENT, KIND_SERVER)
    assert (db.status_code, db.status_message) == (STATUS_ERROR, "deadlock")
    assert server.status_code == STATUS_OK
    assert server.attributes == {
        "http.status_code": 200,
        "tags": ["a", "b"],
        "ratio": 0.25,
        "ok": True,
    }
    assert server.events[0].name == "picked"
    assert server.events[0].attributes == {"queue": "q1"}
    assert server.trace_state == "vendor=abc"
    assert db.links[0].span_id == (0xB7AD6B7169203331).to_bytes(8, "big")
    assert db.links[0].attributes == {"reason": "follows"}
    assert server.service_name == "py-svc"
    assert server.resource["team"] == "core"
    assert "service.name" not in server.resource
    # ISO strings keep microseconds: the decoded times are the SDK's, to the µs.
    assert abs(server.start_ns - server_sdk.start_time) < 1000  # type: ignore[operator]
    assert abs(server.end_ns - server_sdk.end_time) < 1000  # type: ignore[operator]


def test_python_console_exporter_one_object_per_line() -> None:
    text, _ = python_console_output(lambda span: span.to_json(indent=None) + "\n")
    assert text.count("\n") == 2
    result = decode_text(text)
    assert (len(result.spans), result.dead) == (2, [])


def test_python_nan_attributes_are_accepted() -> None:
    text, _ = python_console_output()
    text = text.replace('"ratio": 0.25', '"ratio": NaN', 1)
    result = decode_text(text)
    assert result.dead == []
    assert result.spans[1].attributes["ratio"] != result.spans[1].attributes["ratio"]


@pytest.mark.parametrize("pretty", [True, False])
@pytest.mark.parametrize("fmt", ["otel-sdk", "auto"])
def test_go_stdouttrace_output(pretty: bool, fmt: str) -> None:
    # json.NewEncoder(w).SetIndent("", "\t") in pretty mode; one Encode per span.
    text = "".join(json.dumps(go_stub(), indent="\t" if pretty else None) + "\n" for _ in range(2))
    result = decode_text(text, fmt)
    assert result.dead == []
    assert len(result.spans) == 2
    span = result.spans[0]
    assert span.trace_id == bytes.fromhex("0102030405060708090a0b0c0d0e0f10")
    assert span.parent_span_id == bytes.fromhex("0a0b0c0d0e0f0102")
    assert span.kind == KIND_SERVER
    assert (span.start_ns, span.end_ns) == (1732777445123456789, 1732777445223456789)
    assert span.attributes == {
        "http.method": "GET",
        "http.status_code": 200,
        "ratio": 2.0,
        "hosts": ["a", "b"],
        "blob": b"\x00\x01",
    }
    assert type(span.attributes["ratio"]) is float
    assert span.events[0].time_ns == 1732777445150000000
    assert span.links[0].trace_id == bytes.fromhex("1112131415161718191a1b1c1d1e1f20")
    assert (span.status_code, span.status_message) == (STATUS_ERROR, "boom")
    assert span.service_name == "go-svc"
    assert span.resource == {"host.name": "box"}
    assert (span.scope_name, span.scope_version) == ("net/http", "0.1")
    assert span.trace_state == "key=val"
    assert span.flags == 0x01 | 0x100 | 0x200  # sampled; parent known to be remote


def test_go_root_span_and_older_library_key() -> None:
    zero = {
        "TraceID": "0" * 32,
        "SpanID": "0" * 16,
        "TraceFlags": "00",
        "TraceState": "",
        "Remote": False,
    }
    stub = go_stub(Parent=zero, Links=None, Events=None, Attributes=None)
    del stub["InstrumentationScope"]
    result = decode_text(json.dumps(stub))
    (span,) = result.spans
    assert span.parent_span_id == b""
    assert span.flags == 0x01
    assert span.scope_name == "net/http"


def test_go_without_timestamps_is_a_dead_letter() -> None:
    stub = go_stub(StartTime="0001-01-01T00:00:00Z", EndTime="0001-01-01T00:00:00Z")
    result = decode_text(json.dumps(stub))
    assert [d.reason for d in result.dead] == ["bad_time"]
    assert "WithoutTimestamps" in result.dead[0].detail


def test_framing_errors_resync_at_the_next_object() -> None:
    good = json.dumps(go_stub(), indent="\t")
    truncated = "\n".join(good.split("\n")[:7])
    text = "\n".join(["garbage line", truncated, good, "", good])
    result = decode_text(text)
    assert [d.reason for d in result.dead] == ["not_json", "truncated_object"]
    assert result.dead[1].raw == truncated.encode()
    assert len(result.spans) == 2
    assert result.skipped == 1


def test_unknown_object_shape() -> None:
    result = decode_text('{"hello": "world"}')
    assert [d.reason for d in result.dead] == ["unknown_format"]
