"""The OTLP/JSON Struct path's caches (`direct_otlpstructs`) never change an answer.

A line's resource and scope, and each attribute KeyValue, are looked up by their JSON bytes.
Lines drawn from small pools of resources, scopes and KeyValues (good ones, odd ones and bad
ones, compact or spaced, keys repeated) so that the caches hit, miss, and hit on bytes that
now sit in another line: every read must equal the general path's (`same_reads`), and every
line the Struct path writes must be what the dict walk writes. The caches live as long as the
process, so each example also meets what earlier examples left in them.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.spans.decode import direct_otlpstructs
from agent.spans.decode import otlpstructs as structs
from agent.spans.decode.direct import otlp_request
from agent.spans.decode.direct_otlpstructs import otlp_line
from agent.spans.encode.direct import DirectWriter
from agent.spans.encode.wire import PAIR_CACHE_LIMIT, VALUES_PER_KEY_LIMIT
from agent.spans.types import DirectItem
from tests.unit.spans.decode.test_direct import direct_read, same_reads
from tests.unit.spans.samples.otlpjson import SPAN, TRACE

GOOD_VALUES: list[Any] = [
    {"stringValue": "x"}, {"stringValue": "y"}, {"stringValue": ""}, {"stringValue": "é\u2028"},
    {"intValue": "5"}, {"intValue": -3}, {"intValue": "-0"}, {"intValue": "99999999999999999999"},
    {"intValue": 5}, {"intValue": 0}, {"boolValue": True}, {"boolValue": False},
    {"doubleValue": 0.5}, {"doubleValue": 1}, {"doubleValue": 0.0}, {"doubleValue": -0.0},
]  # fmt: skip
ODD_VALUES: list[Any] = [
    {"intValue": "12x"}, {"intValue": 1.5}, {"boolValue": 1}, {"doubleValue": "NaN"}, {},
    {"stringValue": "x", "intValue": "1"}, {"stringValue": None}, {"arrayValue": {"values": []}},
    {"bytesValue": "AAE="}, {"string_value": "x"}, "x", None,
]  # fmt: skip
KEYS = st.sampled_from(["a", "b", "service.name", "k"])


def mostly(good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` three times in four: most lines are then written by the direct path, whose
    answers are what is compared."""
    return good | good | good | odd


def _pair(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": value}


GOOD_KEY_VALUES = st.builds(_pair, KEYS, st.sampled_from(GOOD_VALUES))
BAD_KEY_VALUES = st.sampled_from(
    [
        {"key": 1, "value": {"stringValue": "x"}},
        {"key": "a"},
        {"value": {"stringValue": "x"}},
        {"key": "a", "value": {"stringValue": "x"}, "extra": 1},
        "a",
    ]
)
KEY_VALUES = mostly(
    GOOD_KEY_VALUES, st.builds(_pair, KEYS, st.sampled_from(ODD_VALUES)) | BAD_KEY_VALUES
)
ATTRIBUTES = mostly(st.lists(GOOD_KEY_VALUES, max_size=4), st.lists(KEY_VALUES, max_size=4))
RESOURCES = mostly(
    st.builds(lambda attributes: {"attributes": attributes}, ATTRIBUTES)
    | st.sampled_from([None, {}]),
    st.sampled_from([{"attributes": None}, {"droppedAttributesCount": 2}, {"x": 1}, [], "r"]),
)
SCOPES = mostly(
    st.sampled_from([None, {}, {"name": "lib"}, {"name": "lib", "version": "1.0"}]),
    st.sampled_from(
        [
            {"name": 5},
            {"version": "2", "x": 1},
            {"name": "lib", "attributes": [_pair("a", {"stringValue": "x"})]},
            {"name": "lib", "attributes": [{"key": "a"}]},
        ]
    ),
)
EVENTS = st.lists(
    st.builds(
        lambda attributes, time: {"timeUnixNano": time, "name": "e", "attributes": attributes},
        ATTRIBUTES,
        mostly(st.just("1544712660500000000"), st.sampled_from([1544712660500000000, "x", None])),
    ),
    max_size=2,
)
STATUSES = mostly(
    st.sampled_from([None, {}, {"code": 2, "message": "boom"}, {"code": 1}]),
    st.sampled_from([{"code": 3}, {"message": 1}, {"code": "ERROR"}]),
)


def _span(attributes: Any, events: Any, status: Any) -> dict[str, Any]:
    span = {
        "traceId": TRACE,
        "spanId": SPAN,
        "name": "op",
        "kind": 2,
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "attributes": attributes,
        "events": events,
        "status": status,
    }
    return {key: value for key, value in span.items() if value is not None}


SPANS = st.builds(_span, ATTRIBUTES, EVENTS, STATUSES)


@st.composite
def otlp_lines(draw: st.DrawFn) -> bytes:
    resource, scope = draw(RESOURCES), draw(SCOPES)
    scope_spans: dict[str, Any] = {"spans": draw(st.lists(SPANS, max_size=2))}
    if scope is not None:
        scope_spans["scope"] = scope
    record: dict[str, Any] = {
        "scopeSpans": draw(mostly(st.just([scope_spans]), st.sampled_from([[], None])))
    }
    if resource is not None:
        record["resource"] = resource
    record = {key: value for key, value in record.items() if value is not None}
    tree = draw(st.sampled_from([{"resourceSpans": [record]}, record]))
    spaced = draw(st.booleans())
    return json.dumps(tree, separators=(", ", ": ") if spaced else (",", ":")).encode()


def _struct_and_walk(line: bytes) -> tuple[bool, list[DirectItem], list[DirectItem] | None]:
    typed: list[DirectItem] = []
    written = otlp_line(line, "fallback", DirectWriter(None), typed)
    walked: list[DirectItem] = []
    obj = orjson.loads(line)
    if type(obj) is not dict or not otlp_request(obj, "fallback", DirectWriter(None), walked):
        return written, typed, None
    return written, typed, walked


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(otlp_lines(), min_size=1, max_size=5), st.booleans())
def test_lines_of_repeated_parts_read_as_the_general_path_reads_them(
    lines: list[bytes], auto: bool
) -> None:
    into = same_reads("auto" if auto else "otlp-json", lines)
    for line in lines:
        written, typed, walked = _struct_and_walk(line)
        event(f"structs wrote: {written}")
        if written:
            assert typed == walked
        else:
            assert typed == []
    event(f"fallbacks: {min(into.fallbacks, 1)}")


def _line(attributes: list[Any], resource: list[Any] | None = None, scope: Any = None) -> bytes:
    span = _span(attributes, [{"timeUnixNano": "1544712660500000000", "name": "e"}], None)
    resource_attributes = [{"key": "service.name", "value": {"stringValue": "svc"}}]
    record = {
        "resource": {"attributes": resource_attributes if resource is None else resource},
        "scopeSpans": [{"scope": scope or {"name": "lib"}, "spans": [span]}],
    }
    return orjson.dumps({"resourceSpans": [record]})


def _written(lines: list[bytes], fmt: str = "otlp-json") -> int:
    encoded, into = direct_read(fmt, lines)
    assert same_reads(fmt, lines).dead == into.dead
    return sum(type(item) is tuple for item in encoded) - into.fallbacks


def test_a_known_key_with_a_bad_value_takes_the_general_path() -> None:
    good = {"key": "http.method", "value": {"stringValue": "GET"}}
    for bad_value in ({"intValue": "12x"}, {"arrayValue": {"values": []}}, {}, {"boolValue": 1}):
        bad = {"key": "http.method", "value": bad_value}
        lines = [_line([good]), _line([good, bad]), _line([bad]), _line([good])]
        encoded, into = direct_read("otlp-json", lines)
        assert into.fallbacks == 2  # the general path reads each or dead-letters it
        assert type(encoded[0]) is tuple
        assert type(encoded[-1]) is tuple
        same_reads("otlp-json", lines)


def test_a_repeated_resource_that_changes_is_read_again() -> None:
    svc = [{"key": "service.name", "value": {"stringValue": "svc"}}]
    other = [{"key": "service.name", "value": {"stringValue": "other"}}]
    bad = [{"key": "service.name", "value": {"arrayValue": {"values": []}}}]
    lines = [_line([], svc), _line([], other), _line([], bad), _line([], svc)]
    encoded, into = direct_read("otlp-json", lines)
    assert into.fallbacks == 1
    assert [item[0][0] for item in encoded] == ["svc", "other", "fallback", "svc"]
    same_reads("otlp-json", lines)
    scopes = [_line([], svc, {"name": "a"}), _line([], svc, {"name": "b", "version": "2"})]
    assert [item[0][2:] for item in direct_read("otlp-json", scopes)[0]] == [("a", ""), ("b", "2")]


def test_the_default_service_is_part_of_a_cached_resource() -> None:
    line = _line([], [])  # no service.name: the file's default service
    for service in ("one", "two", "one"):
        items: list[DirectItem] = []
        assert otlp_line(line, service, DirectWriter(None), items)
        assert items[0][0][0] == service  # type: ignore[index]


def test_a_key_given_twice_keeps_its_first_place_and_its_last_value() -> None:
    attributes = [
        {"key": "a", "value": {"stringValue": "1"}},
        {"key": "b", "value": {"intValue": "2"}},
        {"key": "a", "value": {"boolValue": True}},
    ]
    for _ in range(2):  # a miss, then hits
        assert _written([_line(attributes)]) == 1


def test_doubles_equal_as_numbers_keep_their_own_bytes() -> None:
    """0.0 == -0.0 (and a Struct holding one equals a Struct holding the other), but their
    fields differ; a NaN equals nothing."""
    for values in ([0.0, -0.0, 0.0], [-0.0, 0.0], ["NaN", "NaN"], [1, 1.0, True]):
        lines = [_line([{"key": "d", "value": {"doubleValue": value}}]) for value in values]
        same_reads("otlp-json", lines)
    lines = [
        _line([{"key": "n", "value": value}]) for value in ({"intValue": 1}, {"boolValue": True})
    ]
    assert _written(lines) == 2


def test_a_bad_resource_fails_its_line_without_scope_spans() -> None:
    bad = {"resource": {"attributes": [{"key": "k", "value": {"bytesValue": "!"}}]}}
    for tree in ({"resourceSpans": [{**bad, "scopeSpans": []}]}, {**bad, "scopeSpans": []}):
        line = orjson.dumps(tree)
        assert otlp_line(line, "fallback", DirectWriter(None), []) is False
        same_reads("otlp-json", [line])


def test_the_caches_stay_bounded_and_right() -> None:
    """Unbounded keys and values, resources and scopes: every answer still the general
    path's, no cache over its limit, and a key with too many values stops being kept."""
    pairs = direct_otlpstructs._span_pairs
    lines = [
        _line(
            [
                {"key": f"k{i % 700}", "value": {"stringValue": f"v{i}"}},
                {"key": "user.id", "value": {"stringValue": f"u-{i}"}},
            ],
            [{"key": "n", "value": {"intValue": str(i)}}],
            {"name": f"s{i % 3}"},
        )
        for i in range(10_000)
    ]
    assert _written(lines) == len(lines)
    assert len(direct_otlpstructs._keys) <= direct_otlpstructs._keys.limit
    assert len(pairs._fields) <= PAIR_CACHE_LIMIT
    assert pairs._per_key["user.id"] <= VALUES_PER_KEY_LIMIT
    long_value = {"key": "sql", "value": {"stringValue": "x" * 1000}}
    assert _written([_line([long_value])] * 2) == 2
    assert "sql" not in pairs._per_key


def test_the_span_tuple_indexes_name_the_fields() -> None:
    """`_span` reads a Span Struct as one tuple, by index: each index must be its field's."""
    names = [field.name for field in msgspec.structs.fields(structs.Span)]
    for index, name in [
        ("_TRACE_ID", "traceId"),
        ("_SPAN_ID", "spanId"),
        ("_PARENT_SPAN_ID", "parentSpanId"),
        ("_NAME", "name"),
        ("_KIND", "kind"),
        ("_START", "startTimeUnixNano"),
        ("_END", "endTimeUnixNano"),
        ("_ATTRIBUTES", "attributes"),
        ("_EVENTS", "events"),
        ("_STATUS", "status"),
        ("_FLAGS", "flags"),
        ("_TRACE_STATE", "traceState"),
        ("_LINKS", "links"),
    ]:
        assert names[getattr(direct_otlpstructs, index)] == name
    assert [field.name for field in msgspec.structs.fields(structs.AnyValue)] == [
        "stringValue",
        "intValue",
        "boolValue",
        "doubleValue",
    ]  # `key_and_value` unpacks them in this order


def test_the_last_lines_resource_is_not_taken_for_a_different_one() -> None:
    """The resource key of the last line is compared by bytes before anything is hashed:
    lines that alternate resources and scopes, or change only the default service, each get
    their own key."""
    svc = [{"key": "service.name", "value": {"stringValue": "svc"}}]
    other = [{"key": "service.name", "value": {"stringValue": "other"}}]
    lines = [
        _line([], svc, {"name": "a"}),
        _line([], svc, {"name": "a"}),
        _line([], other, {"name": "a"}),
        _line([], svc, {"name": "b"}),
        _line([], svc, {"name": "b"}),
    ]
    keys = [item[0][0:3:2] for item in direct_read("otlp-json", lines)[0]]
    assert keys == [("svc", "a"), ("svc", "a"), ("other", "a"), ("svc", "b"), ("svc", "b")]
    same_reads("otlp-json", lines)
    unnamed = _line([], [])
    for service in ("one", "one", "two"):
        items: list[DirectItem] = []
        assert otlp_line(unnamed, service, DirectWriter(None), items)
        assert items[0][0][0] == service  # type: ignore[index]
