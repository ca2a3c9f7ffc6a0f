"""JobFirst's direct path gives what its general path gives, on generated and changed lines.

Whole spans (start, events, end, other log lines between, spans interleaved) are written as
logrus lines, a few of them changed at random places (a value replaced by an odd one, a key
removed), and read both ways, as `jobfirst` and as `auto`: the same span bytes, dead letters
and counts (`same_reads`). The end lines the writer declines are counted as fallbacks.
"""

from __future__ import annotations

import copy
import json

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.spans.decode.jobfirst import _duration, parse_go_duration
from tests.unit.spans.decode.test_direct import ODD_VALUES, direct_read, same_reads
from tests.unit.spans.samples.jobfirst import ended, started
from tests.unit.spans.samples.jobfirst import event as jobfirst_event

NAMES = ["GET /api/v1/jobs", "db.query", "POST /x y", "GET /"]
EXTRA = [{}, {"user_id": "u-1"}, {"level": "warn", "attempt": 3}, {"ratio": 0.5, "ok": True}]


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
        merged.append(lines.pop(0))
        if draw(st.integers(min_value=0, max_value=5)) == 0:
            merged.append(b'{"level":"info","msg":"request served","trace_id":"x"}')
    return [draw(changed_line(line)) for line in merged]


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
    assert _duration(text) == parse_go_duration(text)
