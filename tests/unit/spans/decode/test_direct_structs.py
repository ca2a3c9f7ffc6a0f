"""The Struct decodes of the direct path write what the dict walks write.

`go_line` and `python_line` (SDK console bytes → `sdkstructs` Structs → writer) against
`go_span` and `python_span` (the same line parsed by orjson, the dict walked → writer): on
generated and changed objects, whenever the Struct path writes a span, the dict path writes
the same bytes under the same resource key; when it declines, nothing was appended.
(test_direct.py holds the dict walks to the general path, so the three agree.)
"""

from __future__ import annotations

import json

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.spans.decode.direct_otlpstructs import otlp_line
from agent.spans.decode.direct_sdk import go_span, python_span
from agent.spans.decode.direct_sdkstructs import go_line, python_line
from agent.spans.encode.direct import DirectWriter
from agent.spans.types import DirectItem
from tests.unit.spans.decode.test_direct import changed_records, otlp_record, same_reads
from tests.unit.spans.decode.test_direct import go_span as go_template
from tests.unit.spans.decode.test_direct import python_span as python_template


def _both(
    line: bytes, *, go: bool = True
) -> tuple[bool, list[DirectItem], list[DirectItem] | None]:
    typed: list[DirectItem] = []
    written = (go_line if go else python_line)(line, "fallback", DirectWriter(None), typed)
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return written, typed, None
    walked: list[DirectItem] = []
    walk = go_span if go else python_span
    if type(obj) is not dict or not walk(obj, "fallback", DirectWriter(None), walked):
        return written, typed, None
    return written, typed, walked


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changed_records("otel-sdk"), st.booleans())
def test_a_span_the_structs_write_is_the_one_the_dict_walk_writes(line: bytes, go: bool) -> None:
    written, typed, walked = _both(line, go=go)
    event(f"go {go}: structs wrote: {written}")
    if written:
        assert typed == walked
    else:
        assert typed == []


def test_the_templates_take_the_struct_path() -> None:
    """So the property above compares the two paths, not two refusals."""
    for template, go in ((go_template(), True), (python_template(), False)):
        written, typed, walked = _both(orjson.dumps(template), go=go)
        assert written
        assert len(typed) == 1
        assert typed == walked
        assert _both(orjson.dumps(template), go=not go)[:2] == (False, [])


def test_the_python_structs_leave_routing_keys_to_the_dict_walk() -> None:
    """Keys whose presence routes the object: the Struct path declines, the dict walk decides."""
    for extra in ({"SpanContext": None}, {"scopeSpans": []}, {"resource_spans": 1}):
        assert _both(orjson.dumps({**python_template(), **extra}), go=False)[:2] == (False, [])
    for missing in ("context", "name"):
        record = python_template()
        del record[missing]
        assert _both(orjson.dumps(record), go=False)[:2] == (False, [])


def test_an_int64_out_of_range_takes_the_dict_path() -> None:
    """orjson reads -2**63 - 1 as a float, which the dict walk refuses: the Structs must not
    take it either."""
    stub = go_template()
    stub["Attributes"][0] = {"Key": "k", "Value": {"Type": "INT64", "Value": -(2**63) - 1}}
    line = json.dumps(stub, separators=(",", ":")).encode()  # orjson writes no such int
    assert _both(line)[:2] == (False, [])


def test_an_empty_scope_takes_the_older_name() -> None:
    for scope, library, name in [
        ({}, {"Name": "lib"}, b"lib"),
        (None, {"Name": "lib"}, b"lib"),
        ({"SchemaURL": ""}, {"Name": "lib"}, b""),
        ({"Name": None}, {"Name": "lib"}, b""),
    ]:
        stub = go_template()
        stub["InstrumentationScope"], stub["InstrumentationLibrary"] = scope, library
        written, typed, walked = _both(orjson.dumps(stub))
        assert written
        assert typed == walked
        assert typed[0][0][2] == name.decode()


def test_otlp_int64_out_of_range_reads_as_the_general_path_reads_it() -> None:
    """An intValue or flags below -2**63: the OTLP Structs refuse it, as the dict walk does
    (orjson reads it as a float), and the general path answers."""
    for path, value in [
        (("attributes", 0, "value"), {"intValue": -(2**63) - 1}),
        (("flags",), -(2**63) - 1),
    ]:
        record = otlp_record()
        span = record["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        *parents, last = path
        for step in parents:
            span = span[step]
        span[last] = value
        line = json.dumps(record, separators=(",", ":")).encode()
        assert otlp_line(line, "fallback", DirectWriter(None), []) is False
        same_reads("otlp-json", [line])
