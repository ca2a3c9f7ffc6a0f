"""Valid lines of every format and byte-level mutations of them, for the fuzz tests."""

from __future__ import annotations

import json

import orjson
from hypothesis import strategies as st

from tests.unit.spans.samples.jobfirst import ended, event, started
from tests.unit.spans.samples.otelsdk import go_stub, python_console_output
from tests.unit.spans.samples.otlpjson import otlp_span, request
from tests.unit.spans.samples.spanjson import record


def valid_lines() -> list[bytes]:
    python_text, _ = python_console_output()
    return [
        started(),
        event("e"),
        ended(),
        orjson.dumps(record(attributes={"a": [1, {"b": None}]}, events=[{"name": "x"}])),
        orjson.dumps(request(otlp_span())),
        json.dumps(go_stub()).encode(),
        *json.dumps(go_stub(), indent="\t").encode().split(b"\n")[:6],
        *python_text.encode().split(b"\n")[:8],
    ]


VALID = valid_lines()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    line = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not line:
            break
        at = draw(st.integers(min_value=0, max_value=len(line) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if action == "flip":
            line[at] = draw(st.integers(min_value=0, max_value=255))
        elif action == "cut":
            del line[at:]
        elif action == "insert":
            line[at:at] = draw(
                st.sampled_from([b"{", b"}", b'"', b"\\", b"\xff", b"[", b"0", b"-"])
            )
        else:
            del line[at]
    return bytes(line)
