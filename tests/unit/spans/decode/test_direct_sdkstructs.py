"""The SDK Struct paths' lookups (`direct_sdkstructs`) never change an answer: resource keys
by the JSON bytes of a span's resource and scope, Go attribute fields by their Struct (a
value of each Type its own Struct, so an INT64 1 never equals a BOOL true or a 1.0); nor does
picking Go or Python by a line's first key.

Spans drawn from small pools of attributes, resources, scopes and older-name scopes (good,
odd and bad ones) so that the lookups hit, miss, and hit on what an earlier line or example
left: every line the Struct path writes must be what the dict walk writes, and every read
what the general path reads.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.spans.decode import direct_sdkstructs
from agent.spans.decode import sdkstructs as structs
from agent.spans.decode.direct_sdk import GO_ZERO_SPAN_ID, TRACE_FLAGS, go_span_flags
from agent.spans.decode.direct_sdkstructs import go_line, python_line, sdk_line
from agent.spans.encode.direct import DirectWriter
from agent.spans.types import DirectItem
from tests.unit.spans.decode.test_direct import direct_read, same_reads
from tests.unit.spans.decode.test_direct import go_span as go_template
from tests.unit.spans.decode.test_direct import python_span as python_template
from tests.unit.spans.decode.test_direct_otlpstructs import mostly
from tests.unit.spans.decode.test_direct_structs import _both


def _go(key: str, kind: str, value: Any) -> dict[str, Any]:
    return {"Key": key, "Value": {"Type": kind, "Value": value}}


GO_RESOURCES = mostly(
    st.sampled_from(
        [
            None,
            [],
            [_go("service.name", "STRING", "go-svc")],
            [_go("service.name", "STRING", "other"), _go("host", "STRING", "box")],
            [_go("service.name", "STRING", "")],
            [_go("n", "INT64", 1), _go("f", "FLOAT64", 0.5), _go("b", "BOOL", True)],
        ]
    ),
    st.sampled_from(
        [
            [_go("n", "INT64", 1.5)],
            [_go("s", "STRINGSLICE", ["a"])],
            [{"Key": "k"}],
            [_go("service.name", "STRING", 5)],
            {"Key": "k"},
            "r",
        ]
    ),
)
GOOD_GO_VALUES: list[tuple[Any, Any]] = [
    ("STRING", "x"), ("STRING", ""), ("INT64", 1), ("INT64", 0), ("BOOL", True), ("BOOL", False),
    ("FLOAT64", 1.0), ("FLOAT64", 1), ("FLOAT64", 0.0), ("FLOAT64", -0.0),
]  # fmt: skip
ODD_GO_VALUES: list[tuple[Any, Any]] = [
    ("INT64", 1.0), ("INT64", True), ("BOOL", 1), ("FLOAT64", True), ("STRING", 1),
    ("STRING", None), ("INT64", "1"), ("STRINGSLICE", ["x"]), (None, "x"), ("int64", 1),
]  # fmt: skip
GO_VALUES = mostly(st.sampled_from(GOOD_GO_VALUES), st.sampled_from(ODD_GO_VALUES))
GO_ATTRIBUTES = st.lists(
    st.builds(lambda key, typed: _go(key, *typed), st.sampled_from(["a", "b"]), GO_VALUES),
    max_size=3,
)
GO_SCOPES = st.sampled_from(
    [
        None,
        {},
        {"Name": "net/http", "Version": "0.1", "SchemaURL": ""},
        {"Name": "lib"},
        {"SchemaURL": ""},
        {"Name": None},
        {"Name": 5},
        {"Name": "lib", "Extra": 1},
        "s",
    ]
)
PY_RESOURCES = mostly(
    st.sampled_from(
        [
            None,
            {},
            {"attributes": None, "schema_url": ""},
            {"attributes": {"service.name": "py", "team": "core"}, "schema_url": ""},
            {"attributes": {"service.name": "other", "n": 1, "f": 0.5, "b": False}},
            {"attributes": {"service.name": ""}},
        ]
    ),
    st.sampled_from(
        [
            {"attributes": {"l": [1]}},
            {"attributes": {"n": -(2**63) - 1}},
            {"attributes": []},
            {"attributes": "a"},
            [],
            "r",
        ]
    ),
)
_PARENT_ID = "00f067aa0ba902b7"
GO_PARENTS = mostly(
    st.sampled_from(
        [
            {"TraceID": "0" * 32, "SpanID": GO_ZERO_SPAN_ID, "TraceFlags": "00", "TraceState": ""},
            {"TraceID": "0" * 32, "SpanID": GO_ZERO_SPAN_ID, "Remote": False},
            {"SpanID": _PARENT_ID, "Remote": True},
            {"SpanID": _PARENT_ID, "Remote": False, "TraceID": "4bf92f3577b34da6a3ce929d0e0e4736"},
            {"SpanID": _PARENT_ID},
            {},
            None,
        ]
    ),
    st.sampled_from(
        [
            {"SpanID": ""},
            {"SpanID": "0" * 15},
            {"SpanID": GO_ZERO_SPAN_ID.upper() + " "},
            {"SpanID": "00F067AA0BA902B7", "Remote": 1},
            {"SpanID": 5},
            {"SpanID": _PARENT_ID, "Remote": "true"},
            {"TraceID": 5, "SpanID": GO_ZERO_SPAN_ID, "TraceFlags": 1, "TraceState": 2},
            {"TraceID": None, "SpanID": _PARENT_ID, "TraceState": "k=v"},
            "p",
            [],
        ]
    ),
)
_ABSENT = object()
GO_CONTEXT_REMOTES = st.sampled_from([False, True, None, 1, "x", _ABSENT])


def _set(obj: dict[str, Any], key: str, value: Any) -> None:
    if value is _ABSENT:
        obj.pop(key, None)
    else:
        obj[key] = value


@st.composite
def go_lines(draw: st.DrawFn) -> bytes:
    stub = go_template()
    stub["Attributes"] = draw(GO_ATTRIBUTES)
    stub["Events"][0]["Attributes"] = draw(GO_ATTRIBUTES)
    _set(stub, "Resource", draw(GO_RESOURCES | st.just(_ABSENT)))
    _set(stub, "InstrumentationScope", draw(GO_SCOPES | st.just(_ABSENT)))
    _set(stub, "InstrumentationLibrary", draw(GO_SCOPES | st.just(_ABSENT)))
    _set(stub, "Parent", draw(GO_PARENTS | st.just(_ABSENT)))
    remote = draw(GO_CONTEXT_REMOTES)  # the span's own Remote: read by neither path
    _set(stub["SpanContext"], "Remote", remote)
    return json.dumps(stub, separators=(",", ":")).encode()


@st.composite
def python_lines(draw: st.DrawFn) -> bytes:
    record = python_template()
    _set(record, "resource", draw(PY_RESOURCES | st.just(_ABSENT)))
    spaced = draw(st.booleans())  # Python's json writes ", " and ": "; a formatter may not
    return json.dumps(record, separators=(", ", ": ") if spaced else (",", ":")).encode()


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(go_lines() | python_lines(), min_size=1, max_size=5), st.booleans())
def test_repeated_resources_and_scopes_read_as_the_dict_walk_reads_them(
    lines: list[bytes], auto: bool
) -> None:
    for line in lines:
        written, typed, walked = _both(line, go=b'"SpanContext"' in line)
        if written:
            assert typed == walked
        else:
            assert typed == []
    same_reads("auto" if auto else "otel-sdk", lines)


def _go_line(resource: Any, scope: Any = _ABSENT, library: Any = _ABSENT) -> bytes:
    stub = go_template()
    stub["Resource"] = resource
    _set(stub, "InstrumentationScope", scope)
    _set(stub, "InstrumentationLibrary", library)
    return json.dumps(stub).encode()


def _keys(lines: list[bytes]) -> list[Any]:
    encoded, _ = direct_read("otel-sdk", lines)
    same_reads("otel-sdk", lines)
    return [item[0] for item in encoded]


def test_a_repeated_go_resource_that_changes_is_read_again() -> None:
    svc, other = [_go("service.name", "STRING", "a")], [_go("service.name", "STRING", "b")]
    bad = [_go("service.name", "STRINGSLICE", ["a"])]
    keys = _keys([_go_line(svc), _go_line(other), _go_line(bad), _go_line(svc)])
    assert [key[0] for key in keys[:2]] == ["a", "b"]
    assert keys[3] == keys[0]
    scopes = [
        _go_line(svc, {"Name": "x"}, {"Name": "old"}),
        _go_line(svc, {}, {"Name": "old"}),
        _go_line(svc, _ABSENT, {"Name": "old", "Version": "1"}),
        _go_line(svc, {"SchemaURL": ""}, {"Name": "old"}),
    ]
    assert [key[2:] for key in _keys(scopes)] == [("x", ""), ("old", ""), ("old", "1"), ("", "")]


def test_a_repeated_python_resource_that_changes_is_read_again() -> None:
    lines = []
    for resource in (
        {"attributes": {"service.name": "a"}},
        {"attributes": {"service.name": "b", "n": 1}},
        {"attributes": {"service.name": "a", "l": [1]}},
        {"attributes": {"service.name": "a"}},
    ):
        record = python_template()
        record["resource"] = resource
        lines.append(json.dumps(record).encode())
    keys = _keys(lines)
    assert [key[0] for key in keys] == ["a", "b", "a", "a"]
    assert keys[1][1] == (("n", ("int", 1)),)


def test_the_default_service_is_part_of_a_cached_resource() -> None:
    record = python_template()
    del record["resource"]
    lines = [json.dumps(record).encode(), _go_line(None)]
    for line, write in zip(lines, (python_line, go_line), strict=True):
        for service in ("one", "two", "one"):
            items: list[DirectItem] = []
            assert write(line, service, DirectWriter(None), items)
            assert items[0][0][0] == service  # type: ignore[index]


def test_the_first_key_picks_the_language_but_never_the_answer() -> None:
    """A Go object whose first key is Python's `name` (or the other way round) goes to the
    other language's Structs, which decline it: the dict walk writes it, as it would."""
    go = {"name": "x", **go_template()}
    python = {"Name": "x", **python_template()}
    for obj in (go, python):
        line = json.dumps(obj).encode()
        assert sdk_line(line, None, DirectWriter(None), []) is False
        encoded, into = direct_read("otel-sdk", [line])
        assert into.fallbacks == 0
        assert len(encoded) == 1
        same_reads("otel-sdk", [line])


FIRST_KEYS = st.sampled_from(["name", "Name", "context", "SpanContext", "kind", "zz"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.booleans(),
    FIRST_KEYS,
    st.sampled_from([None, 0, 1, 4, "\t", " \t"]),
    st.sampled_from(["", "\r"]),
)
def test_the_first_key_after_any_whitespace_routes_as_a_search_would(
    go: bool, first: str, indent: int | str | None, line_end: str
) -> None:
    """Compact, spaced or pretty-printed (with any indent, CRLF too), with any key first:
    what `sdk_line` writes is what the Struct path of the text's language (`go_line` for a
    text that names a SpanContext, else `python_line`: the route by search) writes; the
    right language's first key is always taken; and the text reads as the general path
    reads it, whichever way it went."""
    obj = go_template() if go else python_template()
    obj = {first: obj.pop(first, "x"), **obj}
    text = json.dumps(obj, indent=indent).replace("\n", line_end + "\n").encode()
    routed: list[DirectItem] = []
    written = sdk_line(text, None, DirectWriter(None), routed)
    searched: list[DirectItem] = []
    by_search = (go_line if b'"SpanContext"' in text else python_line)(
        text, None, DirectWriter(None), searched
    )
    if written:
        assert by_search and routed == searched
    else:
        assert routed == []
    if first in ("name", "Name") and (first == "Name") == go:
        assert written  # the right language first: taken, with no search
    same_reads("otel-sdk", text.split(b"\n"))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(TRACE_FLAGS)) | st.text("0123456789abcdefABCDEF x_+-", max_size=4),
    st.sampled_from([None, "", GO_ZERO_SPAN_ID, "b7ad6b7169203331", 5]),
    st.booleans(),
)
def test_trace_flags_looked_up_are_the_parsed_ones(
    flags: str, parent_hex: object, remote: bool
) -> None:
    """The table holds what `int(text, 16) & 0xFF` makes of Go's two hex digits; any other
    text is parsed as before. And a Go span's flags read as the general path reads them."""
    try:
        parsed = int(flags, 16) & 0xFF
    except ValueError:
        parsed = 0
    has_parent = type(parent_hex) is str and parent_hex not in ("", GO_ZERO_SPAN_ID)
    expected = parsed | ((0x100 | (0x200 if remote else 0)) if has_parent else 0)
    assert go_span_flags(flags, parent_hex, remote) == expected
    stub = go_template()
    stub["SpanContext"]["TraceFlags"] = flags
    same_reads("otel-sdk", [json.dumps(stub).encode()])


def test_the_go_span_tuple_indexes_name_the_fields() -> None:
    """`go_line` reads a GoSpan Struct as one tuple, by index: each index must be its
    field's, and the fields from `_GO_ROUTING` on are the keys `_struct_plain` tests."""
    names = [field.name for field in msgspec.structs.fields(structs.GoSpan)]
    for index, name in [
        ("_GO_NAME", "Name"),
        ("_GO_CONTEXT", "SpanContext"),
        ("_GO_PARENT", "Parent"),
        ("_GO_KIND", "SpanKind"),
        ("_GO_START", "StartTime"),
        ("_GO_END", "EndTime"),
        ("_GO_ATTRIBUTES", "Attributes"),
        ("_GO_EVENTS", "Events"),
        ("_GO_LINKS", "Links"),
        ("_GO_STATUS", "Status"),
        ("_GO_RESOURCE", "Resource"),
        ("_GO_SCOPE", "InstrumentationScope"),
        ("_GO_LIBRARY", "InstrumentationLibrary"),
    ]:
        assert names[getattr(direct_sdkstructs, index)] == name
    routing = names[direct_sdkstructs._GO_ROUTING :]
    assert routing == [
        "resourceSpans",
        "resource_spans",
        "scopeSpans",
        "scope_spans",
        "message",
        "msg",
    ]
