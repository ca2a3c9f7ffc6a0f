from __future__ import annotations

import json

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.spans.decode.framing import ObjectFramer
from agent.spans.decode.registry import make_decoder


def push_all(framer: ObjectFramer, lines: list[bytes]) -> list[tuple[str, bytes]]:
    return [frame for line in lines for frame in framer.push(line)]


def test_braces_and_quotes_inside_strings_do_not_count() -> None:
    obj = {"a": 'x { y } " z \\', "b": ["{", "}}", '\\"'], "c": {"d": "\\\\{"}}
    lines = json.dumps(obj, indent=2).encode().split(b"\n")
    framer = ObjectFramer(1 << 20)
    frames = push_all(framer, lines)
    assert [kind for kind, _ in frames] == ["object"]
    assert orjson.loads(frames[0][1]) == obj
    assert framer.pending == 0


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(st.text() | st.integers(), lambda c: st.lists(c) | st.dictionaries(st.text(), c))
)
def test_any_pretty_printed_object_is_framed_whole(value: object) -> None:
    obj = {"v": value}
    lines = json.dumps(obj, indent=4).encode().split(b"\n")
    frames = push_all(ObjectFramer(1 << 30), lines)
    assert frames == [("object", b"\n".join(lines))]


def test_object_too_large_skips_to_its_end() -> None:
    framer = ObjectFramer(max_object_bytes=64)
    big = json.dumps({"a": ["x" * 10] * 20, "b": {"c": 1}}, indent=2).encode().split(b"\n")
    frames = push_all(framer, [*big, b'{"next": 1}'])
    assert [kind for kind, _ in frames] == ["object_too_large", "object"]
    assert frames[1][1] == b'{"next": 1}'
    assert len(frames[0][1]) < 200


def test_snapshot_restore_mid_object() -> None:
    lines = json.dumps({"a": {"b": "}{"}, "c": [1, 2]}, indent=2).encode().split(b"\n")
    original = ObjectFramer(1 << 20)
    push_all(original, lines[:4])
    state = json.loads(json.dumps(original.snapshot()))
    restored = ObjectFramer(1 << 20)
    restored.restore(state)
    assert restored.snapshot() == original.snapshot()
    assert push_all(restored, lines[4:]) == push_all(original, lines[4:])


def test_snapshot_restore_while_discarding() -> None:
    framer = ObjectFramer(max_object_bytes=10)
    push_all(framer, [b"{", b'  "a": "0123456789",', b'  "b": {'])
    state = framer.snapshot()
    assert state["discarding"] is True
    restored = ObjectFramer(10)
    restored.restore(json.loads(json.dumps(state)))
    assert push_all(restored, [b"  }", b"}", b"{}"]) == [("object", b"{}")]


def test_decoder_snapshot_round_trip_across_a_restart() -> None:
    text = json.dumps({"SpanContext": {"TraceID": "1" * 32}}, indent="\t").encode().split(b"\n")
    first = make_decoder("otel-sdk", orphan_timeout_ns=0, default_service=None)
    first.feed_many(text[:2], 0)
    assert first.pending == 1
    second = make_decoder("otel-sdk", orphan_timeout_ns=0, default_service=None)
    second.restore(first.snapshot())
    tail_first, tail_second = first.feed_many(text[2:], 0), second.feed_many(text[2:], 0)
    assert [(d.reason, d.raw) for d in tail_first.dead] == [
        (d.reason, d.raw) for d in tail_second.dead
    ]
    assert second.pending == 0
