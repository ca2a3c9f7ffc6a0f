"""The direct path answers exactly what the general path answers, or defers to it.

For every span-json record: the direct writer (`DirectWriter.span_json`) either says "take the
general path" (False), or gives the same answer as `span_from_obj` + the sampler + `resource_key` +
`ProtobufEncoding.encode` — the same key and the same bytes, which also decode field by
field with opentelemetry-proto to the general path's span — or the same "sampled out".
Whole reads through `Outbound.prepare_lines` give the same spans, counts and dead letters as
decoding first with `prepare(decode_lines(...))`.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from agent.config.load import load_config
from agent.core.deadletter import DeadLetterFile
from agent.core.metrics import Metrics
from agent.core.retry import RetryPolicy
from agent.spans.decode.registry import Decoder, make_decoder
from agent.spans.decode.spanjson import span_from_obj
from agent.spans.delivery.book import decode_lines
from agent.spans.encode import direct as direct_module
from agent.spans.encode.direct import DirectWriter, span_identity
from agent.spans.encode.protobuf import span_body, status_field
from agent.spans.encode.resources import Resources, resource_key
from agent.spans.export.batcher import ProtobufEncoding
from agent.spans.export.outbound import Outbound, Token, sampler_for
from agent.spans.export.sender import SpanSender
from agent.spans.model import DecodeResult, Span
from agent.spans.sampling import SpanSampler, make_sampler, trace_filter_of
from agent.spans.types import DirectItem
from agent.spans.validate import MAX_TIME_NS
from tests.unit.spans.samples.mutations import VALID, mutated
from tests.unit.spans.samples.requests import assert_span_matches

START = 1_732_777_445_123_456_789
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
WEEK_NS = 7 * 24 * 3600 * 10**9

# --- records: the shape the fast path takes, then a few fields changed to anything else ---

hex_trace_ids = st.integers(1, 2**128 - 1).map(lambda n: f"{n:032x}")
hex_span_ids = st.integers(1, 2**64 - 1).map(lambda n: f"{n:016x}")
scalars = (
    st.text(max_size=12)
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.none()
)
nested = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner)
)
attribute_keys = st.sampled_from(["http.method", "http.route", "user.id", "rows", ""]) | st.text()
scalar_maps = st.dictionaries(attribute_keys, scalars, max_size=5)
good_times = st.integers(START - 10**6, START + 10**6)


def good_event() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"name": st.text(max_size=8), "time_unix_nano": good_times},
        optional={"attributes": st.none() | scalar_maps},
    )


GOOD: dict[str, st.SearchStrategy[Any]] = {
    "trace_id": hex_trace_ids | hex_trace_ids.map(str.upper),
    "span_id": hex_span_ids | hex_span_ids.map(str.upper),
    "parent_span_id": st.none() | hex_span_ids | st.just("0" * 16),
    "name": st.text(min_size=1, max_size=10),
    "kind": st.none() | st.sampled_from(["server", "client", "internal", "producer", "consumer"]),
    "attributes": st.none() | scalar_maps,
    "events": st.none() | st.lists(good_event(), max_size=3),
    "status": st.none()
    | st.fixed_dictionaries(
        {"code": st.sampled_from(["ok", "error", "unset", "OK", "ERROR", "UNSET"])},
        optional={"message": st.text(max_size=5)},
    ),
    "service": st.none() | st.text(max_size=6),
    "service_name": st.none() | st.text(max_size=6),
}

# Values off the fast path's shape, or at the edge of it, for each field (None: the field is
# left out). Each is tried alone on a fast-path record, and drawn at random in pairs.
ODD_IDS: list[Any] = [
    *("", "0" * 32, "0" * 16, "abc", "0x" + TRACE, "0x" + SPAN, " " + TRACE[1:], TRACE + "0"),
    *("4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "zz" * 16, "zz" * 8, "00 " * 5 + "0", "é" * 16),
    *(TRACE[:16], TRACE.upper(), SPAN.upper(), 0, 5, -1, None, [TRACE], {}, False, True, 1.5),
    # bytes.fromhex skips spaces: these decode to IDs of the right length, yet are not valid
    *(TRACE[:16] + " " + TRACE[16:], SPAN[:8] + " " + SPAN[8:], "00000000 00000000"),
]
ODD_TIMES = [
    *(-1, 0, 1, 2**63 - 1, 2**63, 2**64 - 1, START - 1, START + WEEK_NS, START + WEEK_NS + 1),
    *(str(START), float(START), 1.5, "2024-11-28T07:04:05Z", None, True),
]
ODD_MAPS = [
    *([], 0, "", "x", [1], False, 1, {}, {"a": [1]}, {"a": {"b": 1}}, {"a": []}),
    *({"big": 2**64 - 1}, {"low": -(2**63)}, {"f": 1.0}, {"t": True}, {"n": None}),
    *({"i": 1, "b": True}, {"b": True, "i": 1}, {"": ""}, {"é": "ü" * 200}),
]
ODD_EVENTS = [
    *({}, "x", 0, 1, [], [None], [5], [{}], [{"name": "e"}], [{"time_unix_nano": START}]),
    *([{"name": 5, "time_unix_nano": START}], [{"name": "e", "time": "2024-11-28T07:04:05Z"}]),
    *([{"name": "e", "time_unix_nano": t}] for t in ODD_TIMES),
    *([{"name": "e", "time_unix_nano": START, "attributes": a}] for a in ODD_MAPS),
]
ODD_STATUSES = [
    *({"code": "Error"}, {"code": 2}, {"code": "meh"}, {"message": "m"}, {}, {"code": None}),
    *({"code": "ok", "message": 5}, {"code": "unset", "message": ""}, {"code": "unset"}),
    *({"code": "unset", "message": "x"}, {"code": "ok", "message": None}, "error", 2, 7, [], 0),
]
ODD_SERVICES = ["", 5, ["x"], {"n": 1}, 0, False, None, "é"]
ODD: dict[str, list[Any]] = {
    "trace_id": ODD_IDS,
    "span_id": ODD_IDS,
    "parent_span_id": [*ODD_IDS, "0" * 16, "0x" + "0" * 16, "00000000 0000000"],
    "name": ["", 5, None, ["n"], "é" * 200],
    "kind": [
        *("SERVER", "SPAN_KIND_CLIENT", "SpanKind.SERVER", "unspecified", "sideways"),
        *("", 0, 1, 3, 7, True, 2.0, None),
    ],
    "start_time_unix_nano": ODD_TIMES,
    "end_time_unix_nano": ODD_TIMES,
    "attributes": ODD_MAPS,
    "events": ODD_EVENTS,
    "status": ODD_STATUSES,
    "service": ODD_SERVICES,
    "service_name": ODD_SERVICES,
    "resource": [{"team": "core"}, {"service.name": "r"}, {}, 5],
    "links": [[{"trace_id": TRACE, "span_id": SPAN}], [], 5],
    "scope": [{"name": "lib"}, {}, 5],
    "trace_state": ["k=v", "", 5],
    "flags": [0, 1, 257, "x"],
    "duration_ms": [12.5, 3, -1, "x"],
    "duration_ns": [5, 2.5],
    "start": ["2024-11-28T07:04:05Z", 5],
    "end": ["2024-11-28T07:04:06Z", 5],
    "unknown": [{"x": [1]}],
}

ODD_GENERATED = {"attributes": st.dictionaries(attribute_keys, nested, max_size=3)}


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(good_times)
    record: dict[str, Any] = {key: draw(value) for key, value in GOOD.items()}
    record["start_time_unix_nano"] = start
    record["end_time_unix_nano"] = start + draw(st.integers(0, 10**9) | st.just(WEEK_NS))
    for key in draw(st.lists(st.sampled_from(sorted(ODD)), max_size=2)):
        record[key] = draw(st.sampled_from(ODD[key]) | ODD_GENERATED.get(key, st.nothing()))
    return {key: value for key, value in record.items() if value is not None}


SAMPLERS = ["always_on", "parentbased_always_on", "traceidratio", "parentbased_traceidratio"]
samplers = st.sampled_from([*SAMPLERS, "always_off"])


def general_answer(obj: dict[str, Any], service: str | None, keep: SpanSampler | None) -> Any:
    """What the general path makes of one record: a dead letter, sampled out, or a span."""
    try:
        span = span_from_obj(obj, service)
    except Exception:
        return "dead letter"
    if keep is not None and not keep(span):
        return "sampled out"
    return resource_key(span), ProtobufEncoding.encode(span), span


def same_answer(obj: dict[str, Any], service: str | None, keep: SpanSampler | None) -> str:
    """Checks that both paths agree; says which path answered."""
    direct = DirectWriter(trace_filter_of(keep))
    out: list[DirectItem] = []
    taken = direct.span_json(out, orjson.loads(orjson.dumps(obj)), service)
    general = general_answer(obj, service, keep)
    if not taken:
        assert out == []
        return "general path"
    if direct.sampled_out:
        assert out == []
        assert general == "sampled out"
        return "fast path: sampled out"
    assert general not in ("dead letter", "sampled out")
    key, framed, span = general
    assert out == [(key, framed)]
    assert_span_matches(PbSpan.FromString(span_body(framed)), span)
    assert span_identity(span_body(framed)) == (span.name, span.trace_id, span.span_id)
    return "fast path: span"


def parseable(obj: dict[str, Any]) -> bool:
    """False for an integer orjson cannot write: such a line never parses into a dict."""
    try:
        orjson.dumps(obj)
    except TypeError:
        return False
    return True


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records(), st.sampled_from([None, "default-svc"]), samplers, st.floats(0, 1))
def test_fast_path_answers_as_the_general_path(
    obj: dict[str, Any], service: str | None, sampler: str, ratio: float
) -> None:
    if parseable(obj):
        event(same_answer(obj, service, make_sampler(sampler, ratio)))


def fast_record(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "trace_id": TRACE,
        "span_id": SPAN,
        "name": "GET /api/v1/jobs",
        "kind": "server",
        "start_time_unix_nano": START,
        "end_time_unix_nano": START + 12_500_000,
        "attributes": {"http.method": "GET", "http.status_code": 200, "ok": True, "f": 1.5},
        "events": [{"name": "db.query", "time_unix_nano": START + 50_000, "attributes": {"n": 3}}],
        "service": "jobs-api",
    }
    record.update(overrides)
    return {key: value for key, value in record.items() if value is not None}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"parent_span_id": "b7ad6b7169203331"},
        {"parent_span_id": "0000000000000000", "kind": None},
        {"trace_id": TRACE.upper(), "kind": "consumer"},
        {"status": {"code": "error", "message": "deadlock"}},
        {"status": {"code": "ok"}, "attributes": {"none": None, "big": 2**64 - 1}},
        {"events": [{"name": "retry", "time_unix_nano": START}], "attributes": {}},
        {"events": None, "attributes": None, "service": None, "service_name": "alias"},
        {"unknown_key": [1, {"x": 2}]},
    ],
)
def test_the_usual_shapes_take_the_fast_path(overrides: dict[str, Any]) -> None:
    obj = fast_record(**overrides)
    assert DirectWriter(None).span_json([], obj, None)
    assert same_answer(obj, None, None) == "fast path: span"


# Around the last time there is (2**63 - 1, tested by a shift) and around the largest int a
# compiled module holds unboxed (2**62 - 1): the fast path's answer is the general path's.
EDGE_TIMES = [2**62 - 1, 2**62, 2**62 + 1, 2**63 - 2, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1]


@pytest.mark.parametrize("time", EDGE_TIMES)
def test_times_at_the_edges_get_the_general_paths_answer(time: int) -> None:
    assert 2**direct_module._TIME_BITS - 1 == MAX_TIME_NS
    assert same_answer(fast_record(end_time_unix_nano=time), None, None) == "general path"
    for overrides in (
        {"start_time_unix_nano": time - 1, "end_time_unix_nano": time, "events": None},
        {"start_time_unix_nano": time, "end_time_unix_nano": time, "events": None},
        {"events": [{"name": "e", "time_unix_nano": time}]},
    ):
        obj = fast_record(**overrides)
        if parseable(obj):
            taken = same_answer(obj, None, None) == "fast path: span"
            assert taken == (time < 2**63)
        else:
            assert time >= 2**64


@pytest.mark.parametrize("sampler", ["always_on", "always_off", "parentbased_traceidratio"])
def test_each_odd_field_alone_gets_the_general_paths_answer(sampler: str) -> None:
    keep = make_sampler(sampler, 0.5)
    answers: Counter[str] = Counter()
    for key, values in ODD.items():
        for value in values:
            obj = fast_record(**{key: value})
            if parseable(obj):
                answers[same_answer(obj, None, keep)] += 1
    assert answers["general path"] > 100
    assert answers["fast path: span"] + answers["fast path: sampled out"] > 30


@pytest.mark.parametrize(
    "overrides",
    [
        {"resource": {"team": "core"}},
        {"flags": 1},
        {"kind": "SPAN_KIND_SERVER"},
        {"end_time_unix_nano": None, "duration_ms": 3.5},
        {"attributes": {"list": [1, 2]}},
        {"events": [{"name": "e", "time": "2024-11-28T07:04:05Z"}]},
        {"trace_id": "0x" + TRACE},
        {"span_id": "0" * 16},
    ],
)
def test_other_shapes_take_the_general_path(overrides: dict[str, Any]) -> None:
    assert not DirectWriter(None).span_json([], fast_record(**overrides), None)


def test_sampling_decides_on_the_trace_id_before_the_span_is_kept() -> None:
    dropped = DirectWriter(trace_filter_of(make_sampler("always_off")))
    out: list[DirectItem] = []
    assert dropped.span_json(out, fast_record(), None)
    assert (out, dropped.sampled_out) == ([], 1)
    # invalid: the general path says so
    assert not dropped.span_json(out, fast_record(name=""), None)
    assert (out, dropped.sampled_out) == ([], 1)


def test_unknown_samplers_have_no_trace_id_decision() -> None:
    def custom(span: Span) -> bool:
        return True

    with pytest.raises(ValueError, match="no trace-ID decision"):
        trace_filter_of(custom)


# --- whole reads through Outbound -------------------------------------------------------------


def make_outbound(
    tmp: Path,
    sampler: str,
    ratio: float,
    max_request_bytes: int,
    keep: SpanSampler | None = None,
) -> Outbound[str]:
    config = load_config(
        environ={},
        cli_overrides=[
            f"data_dir={tmp}",
            f"spans.sampler={sampler}",
            f"spans.sampler_arg={ratio}",
            f"export.max_request_bytes={max_request_bytes}",
        ],
    )
    metrics = Metrics()

    async def never_called(record: bytes) -> None:
        raise AssertionError("prepare does not send")

    sender: SpanSender[Token] = SpanSender(
        "spans",
        never_called,
        on_settled=lambda token, outcome: None,
        dead_letter=lambda record, error: never_called(record),
        policy=RetryPolicy.from_config(config.export.retry),
        max_in_flight=1,
        metrics=metrics,
    )
    return Outbound(
        config.export,
        Resources("svc"),
        sender=sender,
        dead_letters=DeadLetterFile(tmp / "dead.jsonl", 1 << 30, metrics, "spans"),
        metrics=metrics,
        keep=keep or sampler_for(config.spans),
    )


def dead_letters(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_bytes().splitlines()
    return [{k: v for k, v in orjson.loads(line).items() if k != "ts"} for line in lines]


Prepare = Callable[[Outbound[str], Decoder, list[bytes]], Any]


async def fast(outbound: Outbound[str], decoder: Decoder, lines: list[bytes]) -> Any:
    return await outbound.prepare_lines(decoder, lines, 0, "file.log", [{"reason": "extra"}])


async def general(outbound: Outbound[str], decoder: Decoder, lines: list[bytes]) -> Any:
    result = decode_lines(decoder, lines, 0)
    return await outbound.prepare(result, "file.log", [{"reason": "extra"}])


def run_read(
    tmp: Path, prepare: Prepare, lines: list[bytes], sampler: str, fmt: str = "span-json"
) -> tuple[Any, ...]:
    """What a read makes: spans, counts, dead letters, and the decoder's state after."""
    tmp.mkdir()
    outbound = make_outbound(tmp, sampler, 0.5, MAX_REQUEST_BYTES)
    decoder = make_decoder(
        fmt,
        orphan_timeout_ns=10**9,
        default_service=None,
        max_line_bytes=MAX_LINE_BYTES,
        max_object_bytes=4096,
    )
    spans = asyncio.run(prepare(outbound, decoder, lines))
    counts = (outbound.spans_decoded, outbound.spans_sampled_out, outbound.spans_too_large)
    return spans, counts, dead_letters(tmp / "dead.jsonl"), decoder.snapshot()


def line_of(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


MAX_LINE_BYTES = 3300
MAX_REQUEST_BYTES = 3000


PADS = {"fits": 2400, "span too large": 2900, "line too long": 3000}


def padded(size: int) -> bytes:
    """Lines that fit a request, spans too large for one, and lines over the line limit."""
    return line_of(fast_record(attributes={"pad": "x" * size}))


OTHER_LINES = [
    *(b"", b"  ", b"{", b"}", b"[1]", b"not json", b'{"name": "\xff"}', b'{"msg": "trace me"}'),
    b" " + line_of(fast_record()),  # auto: leading blanks; span-json: fine
    line_of(fast_record(message="Span ended")),  # auto: a JobFirst marker? not in this spelling
    line_of({**fast_record(), "resourceSpans": []}),  # auto: OTLP/JSON by its keys
    line_of({**fast_record(), "context": {}}),  # auto: an otel-sdk object by its keys
]
lines_strategy = st.lists(
    records().map(line_of)
    | st.builds(fast_record).map(line_of)
    | st.sampled_from(list(PADS.values())).map(padded)
    | st.sampled_from(OTHER_LINES)
    | st.sampled_from(VALID)  # every format's lines, multi-line otel-sdk objects included
    | mutated(),
    max_size=14,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines_strategy, samplers, st.sampled_from(["span-json", "auto", "otlp-json", "otel-sdk"]))
def test_a_read_gives_the_same_spans_counts_and_dead_letters(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], sampler: str, fmt: str
) -> None:
    base = tmp_path_factory.mktemp("read")
    fast_answer = run_read(base / "fast", fast, lines, sampler, fmt)
    general_answer_ = run_read(base / "general", general, lines, sampler, fmt)
    assert fast_answer == general_answer_
    _, (decoded, sampled_out, too_large), dead, _ = fast_answer
    event(
        f"{fmt}: spans: {decoded > 0}, sampled out: {sampled_out > 0}, too large: {too_large > 0}"
    )
    event(f"dead letters from decoding: {len(dead) > 1 + too_large}")


def test_auto_writes_one_line_records_directly_but_not_inside_a_multi_line_object() -> None:
    auto = make_decoder("auto", orphan_timeout_ns=10**9, default_service=None)
    plain = line_of(fast_record())
    into = DecodeResult()
    items = auto.feed_direct([plain], 0, DirectWriter(None), into)
    assert [type(item) for item in items] == [tuple]
    assert into.fallbacks == 0
    auto.feed(b"{", 0)  # a multi-line otel-sdk object begins: an indented line is part of it
    items = auto.feed_direct([b"    " + plain], 0, DirectWriter(None), into)
    assert items == []
    assert auto.pending == 1
    assert into == DecodeResult()


def test_a_read_mixing_both_paths_keeps_line_order(tmp_path: Path) -> None:
    lines = [
        line_of(fast_record(name="first")),
        line_of(fast_record(name="second", kind="SPAN_KIND_CLIENT")),  # general path
        line_of(fast_record(name="third")),
    ]
    spans, counts, dead, _ = run_read(tmp_path / "read", fast, lines, "always_on")
    names = [PbSpan.FromString(span_body(framed)).name for _, framed in spans]
    assert names == ["first", "second", "third"]
    assert counts == (3, 0, 0)
    assert dead == [{"reason": "extra"}]


@pytest.mark.parametrize(
    ("pad", "reasons"),
    [
        ("fits", ["extra"]),
        ("span too large", ["extra", "span_too_large"]),
        ("line too long", ["line_too_long", "extra"]),  # decoding's dead letters come first
    ],
)
def test_size_limits_give_the_same_dead_letters(
    tmp_path: Path, pad: str, reasons: list[str]
) -> None:
    lines = [padded(PADS[pad])]
    fast_answer = run_read(tmp_path / "fast", fast, lines, "always_on")
    assert fast_answer == run_read(tmp_path / "general", general, lines, "always_on")
    spans, _, dead, _ = fast_answer
    assert [record["reason"] for record in dead] == reasons
    assert len(spans) == (1 if pad == "fits" else 0)


def test_a_sampler_that_needs_the_whole_span_gets_every_span_decoded(tmp_path: Path) -> None:
    def drop_named_drop(span: Span) -> bool:
        return span.name != "drop"

    outbound = make_outbound(tmp_path, "always_on", 1.0, MAX_REQUEST_BYTES, drop_named_drop)
    decoder = make_decoder("span-json", orphan_timeout_ns=0, default_service=None)
    lines = [line_of(fast_record(name=name)) for name in ("keep", "drop", "keep")]
    spans = asyncio.run(fast(outbound, decoder, lines))
    assert [PbSpan.FromString(span_body(framed)).name for _, framed in spans] == ["keep"] * 2
    assert (outbound.spans_decoded, outbound.spans_sampled_out) == (3, 1)


@pytest.mark.parametrize("size", [100, 16_300, 16_383, 16_384, 40_000])
@pytest.mark.parametrize("where", ["span", "event", "status"])
def test_spans_and_events_longer_than_the_length_table_get_the_general_paths_bytes(
    size: int, where: str
) -> None:
    """The writer joins a span's (and an event's) pieces once behind a length it looks up for
    bodies under 16 KiB and writes as a varint for longer ones: both as the general path."""
    big = "x" * size
    if where == "span":
        record = fast_record(attributes={"sql": big, "n": 1})
    elif where == "event":
        record = fast_record(
            events=[{"name": "e", "time_unix_nano": START, "attributes": {"s": big}}]
        )
    else:
        record = fast_record(status={"code": "error", "message": big})
    for sampler in (None, make_sampler("always_on", 1.0), make_sampler("always_off", 0.0)):
        assert same_answer(record, None, sampler) != "general path"


@given(
    st.sampled_from([0, 1, 2, 3]),
    st.sampled_from(["", "deadlock"]),
    st.none() | st.integers(-(2**40), 2**40) | st.integers(0, 0x500),
)
def test_flags_fields_written_once_are_the_packed_ones(
    code: int, message: str, flags: int | None
) -> None:
    written = direct_module.status_and_flags(code, message, flags)
    if code > 2:
        assert written is None
        return
    status = status_field(code, message) if code or message else b""
    packed = b"" if flags is None else b"\x85\x01" + struct.pack("<I", flags & 0xFFFFFFFF)
    assert written == status + packed
