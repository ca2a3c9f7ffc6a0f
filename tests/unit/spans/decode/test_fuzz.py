"""`feed` never raises, whatever the bytes; bugs would show up as `internal_error`."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.spans.decode.registry import FORMATS, Decoder, make_decoder
from agent.spans.model import DecodeResult
from tests.unit.spans.samples.mutations import VALID, mutated
from tests.unit.spans.samples.spanjson import record


def decoders() -> list[Decoder]:
    return [
        make_decoder(name, orphan_timeout_ns=10**9, default_service="svc", max_object_bytes=4096)
        for name in FORMATS
    ]


def check(decoder: Decoder, lines: list[bytes]) -> None:
    result: DecodeResult = decoder.feed_many(lines, 0)
    result.merge(decoder.expire(10**12))
    assert [d.detail for d in result.dead if d.reason == "internal_error"] == []
    json.dumps(decoder.snapshot())  # state stays JSON-able


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_random_bytes(lines: list[bytes]) -> None:
    for decoder in decoders():
        check(decoder, lines)


@settings(max_examples=500, deadline=None)
@given(st.lists(mutated() | st.sampled_from(VALID), min_size=1, max_size=10))
def test_mutated_valid_lines(lines: list[bytes]) -> None:
    for decoder in decoders():
        check(decoder, lines)


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_lines(fmt: str) -> None:
    decoder = make_decoder(fmt, orphan_timeout_ns=10**9, default_service=None)
    deep_json = b'{"trace_id":"' + b"1" * 32 + b'","a":' + b"[" * 5000 + b"]" * 5000 + b"}"
    deep_attr = (
        orjson.dumps(record())[:-1] + b',"attributes":{"d":' + b"[" * 900 + b"]" * 900 + b"}}"
    )
    five_mib = b'{"trace_id":"' + b"a" * (5 << 20) + b'"}'
    lines = [deep_json, deep_attr, five_mib, b"\x00" * 1000, b"{" * 10_000, b'"' * 999]
    result = decoder.feed_many(lines, 0)
    assert result.spans == []
    assert [d.reason for d in result.dead if d.reason == "internal_error"] == []
    assert all(d.reason for d in result.dead)
    if fmt in ("span-json", "otlp-json", "auto"):
        assert "line_too_long" in {d.reason for d in result.dead}
