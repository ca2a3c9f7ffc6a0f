"""JobFirst's direct path gives what its general path gives, on generated and changed lines.

Whole spans (start, events, end, other log lines between, spans interleaved) are written as
logrus lines, a few of them changed at random places (a value replaced by an odd one, a key
removed), and read both ways, as `jobfirst` and as `auto`: the same span bytes, dead letters
and counts (`same_reads`). The end lines the writer declines are counted as fallbacks.
"""

from __future__ import annotations

import copy
import json
import random
from functools import partial
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.spans.decode import jobfirst_scan, jobfirst_typed
from agent.spans.decode.assemble import OpenSpanExchange
from agent.spans.decode.common import load_object
from agent.spans.decode.jobfirst import MARKER, MARKERS, JobFirstDecoder, has_marker
from agent.spans.decode.jobfirst_parse import (
    CONSUMED,
    parse_duration,
    parse_go_duration,
    parse_line,
)
from agent.spans.decode.jobfirst_typed import LEARN_LIMIT, MAX_EXTRAS, MISSING, TypedLines
from agent.spans.decode.lookups import KeyedPairs
from agent.spans.decode.registry import make_decoder
from agent.spans.encode.direct import DirectWriter
from agent.spans.encode.protobuf import ATTRIBUTES, EVENT_ATTRIBUTES, encode_span, span_field
from agent.spans.encode.wire import PAIR_CACHE_LIMIT, VALUES_PER_KEY_LIMIT, scalar_key_values
from agent.spans.model import Attributes, DecodeResult, Span
from agent.spans.types import Decoder
from agent.spans.validate import BadRecord
from tests.unit.spans.decode.test_direct import ODD_VALUES, direct_read, same_reads
from tests.unit.spans.samples.jobfirst import ended, logrus, started
from tests.unit.spans.samples.jobfirst import event as jobfirst_event

NAMES = ["GET /api/v1/jobs", "db.query", "POST /x y", "GET /"]
# The last two hold keys the span's own attributes take (`direct_jobfirst._placed`).
EXTRA = [
    {},
    {"user_id": "u-1"},
    {"level": "warn", "attempt": 3},
    {"ratio": 0.5, "ok": True},
    {"http.route": "/r", "level": "info"},
    {"jobfirst.span_id": "s", "http.method": "GET"},
]


# Other log lines a JobFirst file holds: with and without `race` (which `auto` routes on), and
# near misses of the shape `auto` skips without parsing (`auto._other_log_line`).
OTHER_LINES = [
    b'{"level":"info","msg":"request served","trace_id":"x"}',
    b'{"level":"info","msg":"request served","path":"/x","status":200}',
    b"{}",
    b'{"a":1} ',
    b'{"t\\u0072ace_id":"t","span_id":"s","name":"n"}',
    b"plain text",
    b"{",
    b'{"level":"info"',
]


@st.composite
def jobfirst_spans(draw: st.DrawFn) -> list[bytes]:
    """The lines of a few spans, interleaved as concurrent requests write them."""
    spans: list[list[bytes]] = []
    for index in range(draw(st.integers(min_value=1, max_value=4))):
        trace = draw(st.sampled_from(["trace_1732777445000000000", "trace_x", "t"]))
        span = f"span_{1732777445000000001 + index}"
        name = draw(st.sampled_from(NAMES))
        lines = [started(name, trace, span, **draw(st.sampled_from(EXTRA)))]
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            lines.append(jobfirst_event("e", name, trace, **draw(st.sampled_from(EXTRA))))
        if draw(st.booleans()) or not spans:
            duration = draw(st.sampled_from(["1.5ms", "523.417µs", "2m3.5s", "0s", "3", "-1s"]))
            status = draw(st.sampled_from([0, 1, 2]))
            extra = draw(st.sampled_from(EXTRA))
            lines.append(
                ended(duration, status=status, desc="d", name=name, trace=trace, span=span, **extra)
            )
        spans.append(lines)
    merged: list[bytes] = []
    while any(spans):
        lines = draw(st.sampled_from([lines for lines in spans if lines]))
        merged.append(draw(changed_line(lines.pop(0))))
        if draw(st.integers(min_value=0, max_value=5)) == 0:
            merged.append(draw(st.sampled_from(OTHER_LINES)))
    return merged


@st.composite
def changed_line(draw: st.DrawFn, line: bytes) -> bytes:
    if draw(st.integers(min_value=0, max_value=3)):
        return line
    tree = orjson.loads(line)
    key = draw(st.sampled_from(sorted(tree)))
    if key in ("message", "msg"):
        return line  # changing it makes it another log line, which the skips already cover
    if draw(st.booleans()):
        del tree[key]
    else:
        tree[key] = copy.deepcopy(draw(st.sampled_from([*ODD_VALUES, [1, [2]], {"a": {"b": 1}}])))
    return json.dumps(tree, separators=(",", ":")).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobfirst_spans(), st.sampled_from(["jobfirst", "auto"]))
def test_jobfirst_spans_decode_the_same_both_ways(lines: list[bytes], name: str) -> None:
    into = same_reads(name, lines)
    event(f"{name}: fallbacks {min(into.fallbacks, 1)}, dead {min(len(into.dead), 1)}")


def test_whole_spans_take_the_direct_path() -> None:
    lines = [
        started(user_id="u-1"),
        jobfirst_event("cache miss", level="debug"),
        b'{"level":"info","msg":"hello"}',
        ended("523.417\u00b5s", status=1, desc="boom", user_id="u-2"),
    ]
    for name in ("jobfirst", "auto"):
        encoded, into = direct_read(name, lines)
        assert into.fallbacks == 0
        assert [type(item) for item in encoded] == [tuple]
        same_reads(name, lines)


def test_an_end_line_the_writer_declines_is_counted_as_a_fallback() -> None:
    lines = [started(), ended(tags={"nested": {"a": 1}})]  # a nested attribute: general path
    for name in ("jobfirst", "auto"):
        encoded, into = direct_read(name, lines)
        assert into.fallbacks == 1
        assert len(encoded) == 1
        assert same_reads(name, lines).dead == []


def test_an_end_line_without_its_start_takes_the_general_path() -> None:
    encoded, into = direct_read("jobfirst", [ended()])
    assert (len(encoded), into.fallbacks) == (1, 1)
    same_reads("jobfirst", [ended()])


@pytest.mark.parametrize(
    "text", ["1.5ms", "523.417µs", "523.417μs", "7us", "2m", "2m3.5s", "1h2m3.5s", "0.000000001s",
             "12.1234567891ms", "3h", "10ns", "-1.5s", "0s", ".5s", "5.s"],
)  # fmt: skip
def test_the_one_unit_duration_parse_is_the_go_parse(text: str) -> None:
    assert parse_duration(text) == parse_go_duration(text)


_MARKER_PARTS = st.sampled_from(
    [*MARKERS, b'"message":"Span', b'"msg":"Spa', b'"message": "Span ', b"Span ", b'{"', b"\x00"]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=6) | _MARKER_PARTS, max_size=6))
def test_the_marker_searches_are_the_regex(parts: list[bytes]) -> None:
    line = b"".join(parts)
    assert has_marker(line) == (MARKER.search(line) is not None)


def _first_places_increase(line: bytes, needles: list[bytes]) -> bool:
    places = [line.find(needle) for needle in needles]
    return -1 not in places and places == sorted(set(places))


_KEY_PARTS = st.sampled_from([b'"level":', b'"user_id":', b'"a":', b'"', b":", b"", b"\x00"])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=4) | _KEY_PARTS, max_size=8), st.lists(_KEY_PARTS, max_size=4))
def test_the_key_order_search_is_bytes_find(parts: list[bytes], needles: list[bytes]) -> None:
    line = b"".join(parts)
    assert jobfirst_scan.first_places_increase(line, needles) == _first_places_increase(
        line, needles
    )


def _prefixed_digits(text: str, prefix: str) -> int | None:
    rest = text.removeprefix(prefix)
    if rest == text or not 0 < len(rest) <= 19 or any(c not in "0123456789" for c in rest):
        return None
    return int(rest)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["span_", "trace_"]),
    st.text("0123456789٣²_ a", max_size=22) | st.text("0123456789", min_size=18, max_size=21),
    st.sampled_from(["", "span_", "trace_", "spa", "Span_", "span"]),
)
def test_an_ids_digits_are_int(prefix: str, rest: str, head: str) -> None:
    text = head + rest
    assert jobfirst_scan.prefixed_digits(text, prefix) == _prefixed_digits(text, prefix)


_UNITS = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
_NUMBERS = st.from_regex(r"[0-9]{0,4}(\.[0-9]{0,12})?", fullmatch=True)
_ODD_PARTS = st.sampled_from(["", "-", "+", ".", " ", "..", "٣", "²", "e", "sm", "µ", "s"])


@st.composite
def durations(draw: st.DrawFn) -> str:
    """Go durations of one unit or several, signs, and near misses of every part."""
    parts = [draw(st.sampled_from(["", "", "-", "+"]))]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        parts += [draw(_NUMBERS), draw(st.sampled_from(_UNITS))]
    for _ in range(draw(st.integers(min_value=0, max_value=1))):
        parts.insert(draw(st.integers(0, len(parts))), draw(_ODD_PARTS))
    return "".join(parts)


def go_duration_string(nanos: int) -> str:
    """What Go's `time.Duration.String()` writes for a non-negative duration."""
    if nanos < 1_000:
        return f"{nanos}ns"
    if nanos < 1_000_000_000:
        unit, scale = ("µs", 1_000) if nanos < 1_000_000 else ("ms", 1_000_000)
        return _decimal(nanos, scale) + unit
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _decimal(rest, 1_000_000_000) + "s"
    if hours:
        return f"{hours}h{minutes}m{seconds}"
    return f"{minutes}m{seconds}" if minutes else seconds


def _decimal(nanos: int, scale: int) -> str:
    whole, frac = divmod(nanos, scale)
    digits = str(frac).rjust(len(str(scale)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def _parsed(parse: Any, text: str) -> Any:
    try:
        return parse(text)
    except (BadRecord, ValueError) as exc:
        return type(exc)


@settings(max_examples=2000, deadline=None)
@given(durations() | st.text(max_size=8))
def test_the_regex_free_duration_parse_is_the_go_parse(text: str) -> None:
    fast = _parsed(parse_duration, text)
    assert fast == _parsed(parse_go_duration, text)
    assert jobfirst_scan.one_unit_duration(text) in (None, fast)
    event(f"parsed: {not isinstance(fast, type)}")


@settings(max_examples=1000, deadline=None)
@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_what_go_writes_is_read_back_exactly(nanos: int) -> None:
    text = go_duration_string(nanos)
    assert parse_duration(text) == parse_go_duration(text) == nanos
    if nanos < 60_000_000_000:  # one unit: read without the general parse
        assert jobfirst_scan.one_unit_duration(text) == nanos


_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
ODD_FIELDS = {
    "duration": st.sampled_from(["1.5ms", "523.417µs", "2m3.5s", "0s", ".5s", "5.s", "1h2m",
                                 "-1.5s", "1.5 ms", "3", "", "10ns", "99999999999h"]) | JSON_VALUES,
    "status": st.sampled_from([0, 1, -1, 2**64, "1", "-2", "x", 1.0, True]) | JSON_VALUES,
    "status_desc": st.text(max_size=6) | JSON_VALUES,
    "timestamp": st.sampled_from(["2024-11-28T07:04:05Z", "2024-11-28 15:04:05", ""]) | JSON_VALUES,
}  # fmt: skip


@st.composite
def lines_with_odd_fields(draw: st.DrawFn) -> list[bytes]:
    """A start, an event and an end with extra keys of every JSON type (attributes), unicode
    names, and any of the consumed fields replaced, made null or left out."""
    name = draw(st.sampled_from([*NAMES, "café ✓", "GET /jobs/é"]))
    lines = []
    for line in (started(name), jobfirst_event("ü", name), ended(name=name)):
        tree = orjson.loads(line)
        extra = draw(st.dictionaries(st.text(min_size=1, max_size=6), JSON_VALUES, max_size=3))
        tree.update({k: v for k, v in extra.items() if k not in ("message", "msg")})
        for key, values in ODD_FIELDS.items():
            if draw(st.integers(min_value=0, max_value=4)) == 0:
                if draw(st.booleans()):
                    tree.pop(key, None)
                else:
                    tree[key] = draw(values)
        lines.append(json.dumps(tree, ensure_ascii=draw(st.booleans())).encode())
    return lines


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines_with_odd_fields(), st.sampled_from(["jobfirst", "auto"]))
def test_extra_keys_and_odd_fields_decode_the_same_both_ways(lines: list[bytes], name: str) -> None:
    into = same_reads(name, lines)
    event(f"{name}: fallbacks {min(into.fallbacks, 1)}, dead {min(len(into.dead), 1)}")


def test_an_end_line_with_a_key_of_its_own_is_read_once_and_keeps_it() -> None:
    lines = [started(), ended(user_id="u-7", attempt=2)]
    encoded, into = direct_read("jobfirst", lines)
    assert into.fallbacks == 0
    parsed = parse_line(load_object(lines[1]))
    assert parsed is not None
    assert parsed.attributes == {"attempt": 2, "level": "info", "user_id": "u-7"}
    assert [type(item) for item in encoded] == [tuple]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (ended(status=True), "bad_status"),  # type: ignore[arg-type]
        (ended(desc=None), None),  # type: ignore[arg-type]
        (ended(desc=3), "bad_field"),  # type: ignore[arg-type]
        (ended("1.5 ms"), "bad_duration"),
        (started(span=""), "missing_field"),
        (started(trace=3), "bad_field"),  # type: ignore[arg-type]
        (jobfirst_event(""), "missing_field"),
        (started().replace(b"2024-11-28T15:04:05+08:00", b"2024-11-28 15:04"), "bad_time"),
    ],
)
def test_the_one_parse_names_each_fault(line: bytes, reason: str | None) -> None:
    try:
        parse_line(load_object(line))
    except BadRecord as exc:
        assert exc.reason == reason
    else:
        assert reason is None


# --- the typed decode (agent.spans.decode.jobfirst_typed) ----------------------------------------
# A line is read through the file's Struct once a line with its keys has been read the general
# way, so the lines below are read twice in a row, or after a whole span that taught their keys.

TEACHER = [
    started(user_id="u-1", attempt=2),
    jobfirst_event("e", user_id="u-1", attempt=2),
    ended(user_id="u-1", attempt=2),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobfirst_spans(), st.sampled_from(["jobfirst", "auto"]))
def test_lines_of_learned_keys_decode_the_same_both_ways(lines: list[bytes], name: str) -> None:
    into = same_reads(name, TEACHER + lines + lines)
    event(f"{name}: fallbacks {min(into.fallbacks, 1)}, dead {min(len(into.dead), 1)}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines_with_odd_fields(), st.sampled_from(["jobfirst", "auto"]))
def test_odd_fields_after_learning_decode_the_same_both_ways(lines: list[bytes], name: str) -> None:
    same_reads(name, [*TEACHER, *lines, *lines])


def _taught(*teachers: bytes) -> JobFirstDecoder:
    """A decoder whose Struct knows the keys of `teachers`."""
    decoder = JobFirstDecoder(default_service=None, orphan_timeout_ns=10**9)
    for line in teachers:
        decoder.typed.learn(orjson.loads(line))
    return decoder


def _typed(decoder: JobFirstDecoder, line: bytes) -> bool:
    return decoder._typed(line, 0, DirectWriter(None), DecodeResult(), [])


@pytest.mark.parametrize(
    "line",
    [
        started(),
        started(level="debug", service="svc"),
        jobfirst_event("cache miss", service_name="svc"),
        ended("523.417µs", status=1, desc="boom"),
        ended("2m3.5s", status=2**63 - 1),
        ended(status=-(2**63)),
        ended(user_id="u-7", attempt=2),
        started(name='a"b\u00e9', user_id="\u2028"),  # escapes: msgspec reads them as orjson
        # a repeated key: its last value in its first place, as orjson reads it
        started(user_id="u").replace(b'"level":"info"', b'"level":"info","user_id":"v","level":3'),
        started().replace(b'"message":"Span started"', b'"message":"Span started","msg":"x"'),
        logrus(
            "Span started", span_id="s", span_name="n", trace_id="t", time="2024-11-28T07:04:05Z"
        ),
    ],
)
def test_the_usual_lines_take_the_typed_decode(line: bytes) -> None:
    assert _typed(_taught(line), line)
    same_reads("jobfirst", [line, line])


@pytest.mark.parametrize(
    "line",
    [
        started(user_id="u-1"),  # a key not learned yet: an attribute
        started(flag=True),  # a value neither a string nor an integer
        started(ratio=0.5),
        started(user_id=None),  # type: ignore[arg-type]
        b"\xef\xbb\xbf" + started(),  # a BOM: load_object takes it off
        started()[:-1],
        started().replace(b"Span started", b"Span paused"),
    ],
)
def test_other_lines_take_the_general_parse(line: bytes) -> None:
    assert not _typed(_taught(started(flag=1, ratio=1)), line)
    same_reads("jobfirst", [started(flag=1, ratio=1), line])


@pytest.mark.parametrize(
    "line",
    [
        ended(status=2**64 - 1),  # an integer past int64: read by the general path
        ended(status=2**64),  # orjson reads it as a float: parse_line says bad_status
        ended(status=-(2**63) - 1),
        ended(status=True),  # type: ignore[arg-type]
        ended(desc=None),  # type: ignore[arg-type]
        ended("1.5 ms"),
        ended(attempt=2**64),
        started(span=""),
        started(trace=""),
        started(name=""),
        jobfirst_event(""),
        started().replace(b'"timestamp":', b'"stamp":'),
        started().replace(b"2024-11-28T15:04:05+08:00", b"2024-11-28 15:04:05"),
        started(attempt=1).replace(b'"attempt":', b'"attempt" :'),  # the order is not found
        started(attempt=1).replace(b'"attempt":', b'"\\u0061ttempt":'),
    ],
)
def test_a_fault_on_a_learned_line_is_named_by_the_general_path(line: bytes) -> None:
    assert not _typed(_taught(*TEACHER), line)
    same_reads("jobfirst", [*TEACHER, line])


def test_attributes_keep_the_order_of_their_line() -> None:
    reader = _taught(started(a="1", b=2)).typed
    line = started().replace(b'"level":"info"', b'"b":3,"level":"info","a":"x"')
    assert list(reader.attributes(reader.read(line), line) or {}) == ["b", "level", "a"]
    same_reads("jobfirst", [started(a="1", b=2), line, ended(span="span_1732777445000000001")])


def test_the_field_indexes_are_the_structs() -> None:
    """`TypedLines.read` is indexed by constants: each names its key's place in the Struct,
    with or without learned keys, and the learned keys follow from `FIRST_EXTRA`."""
    for extras in ([], ["user_id", "attempt"]):
        names = [f.encode_name for f in msgspec.structs.fields(jobfirst_typed.record_type(extras))]
        for key in CONSUMED:
            assert names[getattr(jobfirst_typed, key.upper())] == key
        assert names[jobfirst_typed.FIRST_EXTRA :] == extras
    reader = _taught(started(user_id="u")).typed
    values = reader.read(ended(user_id="u-2", service="svc"))
    assert values[jobfirst_typed.SERVICE] == "svc"
    assert values[jobfirst_typed.DURATION] == "1.5ms"
    assert values[jobfirst_typed.SERVICE_NAME] is MISSING
    assert values[jobfirst_typed.FIRST_EXTRA :] == ("info", "u-2")


def test_learning_is_bounded() -> None:
    reader = TypedLines()
    for index in range(LEARN_LIMIT + 5):
        reader.learn({f"k{index}": "v"})
    assert len(reader.extras) == MAX_EXTRAS
    assert reader._tries == LEARN_LIMIT


def _read(decoder: Decoder, lines: list[bytes], direct: bool) -> list[Any]:
    """Spans (encoded) and dead letters of `lines`, through the direct or the general path."""
    if direct:
        into = DecodeResult()
        items = decoder.feed_direct(lines, 0, DirectWriter(None), into)
    else:
        into = decoder.feed_many(lines, 0)
        items = list(into.spans)
    encoded = [
        span_field(encode_span(item)) if isinstance(item, Span) else item[1] for item in items
    ]
    return [*encoded, *((d.reason, d.raw) for d in into.dead)]


@pytest.mark.parametrize("fmt", ["jobfirst", "auto"])
def test_rotation_and_checkpoints_read_typed_lines_as_the_general_path(fmt: str) -> None:
    """A span started in the old file (checkpointed and restored there) and ended in the new
    one, its lines read through the Struct: the same span as the general path makes."""
    seen = []
    for direct in (True, False):
        make = partial(
            make_decoder, fmt, orphan_timeout_ns=10**9, default_service="s",
            exchange=OpenSpanExchange(),
        )  # fmt: skip
        old, new = make(), make()
        results = [_read(old, [*TEACHER, started(span="span_2", user_id="u-2")], direct)]
        restored = make()
        restored.restore(orjson.loads(orjson.dumps(old.snapshot())))
        del old
        results.append(_read(new, [*TEACHER, jobfirst_event("e", attempt=5)], direct))
        results.append(_read(new, [ended(span="span_2", user_id="u-3", attempt=1)], direct))
        results.append(_read(new, [ended(span="span_3")], direct))  # no start line anywhere
        results.append([s.name for s in restored.expire(10**12).spans])
        seen.append(results)
    assert seen[0] == seen[1]
    assert seen[0][2] and seen[0][4] == []


def test_attributes_are_a_dict_of_their_own_each_time() -> None:
    """The assembler adds an end line's fields to its start line's dict (the general path's
    `_end`): a start line's attributes must not be shared with the next one's."""
    reader = _taught(started(user_id="u")).typed
    first = reader.attributes(reader.read(started()), started())
    assert first == {"level": "info"}
    assert first is not None
    first["user_id"] = "changed"
    assert reader.attributes(reader.read(started()), started()) == {"level": "info"}
    reader.learn(orjson.loads(started(attempt=1)))  # new keys, a new Struct
    again = reader.attributes(reader.read(started(attempt=2)), started(attempt=2))
    assert list((again or {}).items()) == [("attempt", 2), ("level", "info")]  # the line's order


# --- the end line's attribute lookups (agent.spans.decode.lookups.KeyedPairs) ------------------
# One instance across examples, as the direct path keeps one: later examples hit what earlier
# ones left, and the seeded runs below push keys past the per-key and the overall limits.

_KEYED = {tag: KeyedPairs(tag) for tag in (ATTRIBUTES, EVENT_ATTRIBUTES)}
_ATTRIBUTE_VALUES = (
    st.sampled_from(["info", "warn", "", "é", "x" * 70, 0, 1, -1, 2**63, True, False, 1.0, None])
    | st.integers()
    | st.text(max_size=5)
    | st.binary(max_size=3)
    | st.floats()
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)
)


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["level", "user_id", "a", "é", ""]), _ATTRIBUTE_VALUES),
    st.sampled_from([ATTRIBUTES, EVENT_ATTRIBUTES]),
)
def test_keyed_pairs_write_what_the_pair_encoder_writes(attributes: Attributes, tag: bytes) -> None:
    assert _KEYED[tag].fields(attributes) == scalar_key_values(tag, attributes)


@pytest.mark.parametrize("seed", [1, 2])
def test_keyed_pairs_past_their_limits_write_the_same(seed: int) -> None:
    """Keys whose values never repeat (past `VALUES_PER_KEY_LIMIT`, then written from their
    prefix) and more values than `PAIR_CACHE_LIMIT` (the kept ones cleared), mixed with keys
    whose values do repeat."""
    rng = random.Random(seed)
    pairs = KeyedPairs(ATTRIBUTES)
    for index in range(PAIR_CACHE_LIMIT + 3 * VALUES_PER_KEY_LIMIT):
        attributes: Attributes = {
            "level": rng.choice(["info", "warn", 3]),
            f"k{rng.randrange(40)}": rng.choice([f"v{index}", index, f"v{rng.randrange(9)}"]),
            "user_id": f"u-{index}" if rng.random() < 0.9 else "u-0",
        }
        assert pairs.fields(attributes) == scalar_key_values(ATTRIBUTES, attributes)
