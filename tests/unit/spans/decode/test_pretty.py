"""Pretty-printed SDK objects read whole on the direct path (agent.spans.decode.pretty) give
what the framer gives line by line on the general path: the same spans, byte for byte, the
same dead letters and counts, in any batching, with any limits."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.spans.decode.pretty import MAX_OBJECT_LINES, object_at
from agent.spans.decode.registry import make_decoder
from agent.spans.encode.direct import DirectWriter
from agent.spans.encode.protobuf import encode_span, span_field
from agent.spans.encode.resources import resource_key
from agent.spans.model import DeadLetter, DecodeResult, Span
from agent.spans.types import Decoder
from tests.unit.spans.decode.test_direct import ODD_VALUES, go_span, python_span

Read = tuple[list[Any], list[DeadLetter], tuple[int, int]]


def pretty(obj: Any, indent: int | str = 4) -> list[bytes]:
    """What Python's ConsoleSpanExporter (indent 4) or Go's stdouttrace with pretty printing
    (a tab) writes for one span: the object's lines."""
    return json.dumps(obj, indent=indent).encode().split(b"\n")


def _decoder(fmt: str, limits: tuple[int, int]) -> Decoder:
    max_line, max_object = limits
    return make_decoder(
        fmt,
        orphan_timeout_ns=10**9,
        default_service="fallback",
        max_line_bytes=max_line,
        max_object_bytes=max_object,
    )


def _encoded(items: list[Any]) -> list[Any]:
    return [
        (resource_key(item), span_field(encode_span(item))) if isinstance(item, Span) else item
        for item in items
    ]


def direct_read(fmt: str, batches: list[list[bytes]], limits: tuple[int, int]) -> Read:
    """Every batch through `feed_direct`, then the end of the file."""
    decoder, into, items = _decoder(fmt, limits), DecodeResult(), []
    for batch in batches:
        items += decoder.feed_direct(batch, 0, DirectWriter(None), into)
    end = decoder.end_of_file()
    items += end.spans
    into.merge_counts(end)
    return _encoded(items), into.dead, (into.skipped, into.fallbacks)


def general_read(fmt: str, lines: list[bytes], limits: tuple[int, int]) -> Read:
    decoder = _decoder(fmt, limits)
    result = decoder.feed_many(lines, 0)
    end = decoder.end_of_file()
    result.spans += end.spans
    result.merge_counts(end)
    return _encoded(result.spans), result.dead, (result.skipped, 0)


def same_reads(
    fmt: str, batches: list[list[bytes]], limits: tuple[int, int] = (1 << 20, 1 << 20)
) -> Read:
    lines = [line for batch in batches for line in batch]
    direct = direct_read(fmt, batches, limits)
    general = general_read(fmt, lines, limits)
    assert direct[0] == general[0]
    assert direct[1] == general[1]
    assert direct[2][0] == general[2][0]  # skipped
    return direct


def _with_odd_value(draw: st.DrawFn, tree: dict[str, Any]) -> dict[str, Any]:
    tree = copy.deepcopy(tree)
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        key = draw(st.sampled_from(sorted(tree)))
        tree[key] = copy.deepcopy(draw(st.sampled_from(ODD_VALUES)))
    return tree


PIECES = (
    "python",
    "python",
    "go",
    "compact",
    "blank",
    "text",
    "stray",
    "cut",
    "nan",
    "flat",
    "crlf",
)


@st.composite
def pieces(draw: st.DrawFn) -> list[bytes]:
    """The lines of one thing an SDK's output file may hold."""
    kind = draw(st.sampled_from(PIECES))
    tree = _with_odd_value(draw, python_span() if kind != "go" else go_span())
    if kind == "go":
        return pretty(tree, "\t")
    if kind == "compact":
        return [json.dumps(tree).encode()]
    if kind == "blank":
        return [b"", b"   "]
    if kind == "text":
        return [b"INFO starting", b"}", b"{ not json"]
    if kind == "stray":  # a line just `}` with no object open
        return [b"INFO done", b"}"]
    lines = pretty(tree)
    if kind == "cut":  # a writer that died mid-object
        return lines[: draw(st.integers(min_value=1, max_value=len(lines) - 1))]
    if kind == "nan":  # Python's json writes NaN, which only the framer's loader reads
        tree["ratio"] = float("nan")
        return pretty(tree)
    if kind == "flat":  # nested objects not indented: a line inside begins with { or }
        return [line.lstrip() if b"{" in line or b"}" in line else line for line in lines]
    if kind == "crlf":
        return [line + b"\r" for line in lines]
    return lines


def _batches(draw: st.DrawFn, lines: list[bytes]) -> list[list[bytes]]:
    cuts = sorted(draw(st.lists(st.integers(0, len(lines)), max_size=4)))
    edges = [0, *cuts, len(lines)]
    return [lines[a:b] for a, b in itertools.pairwise(edges)]


LIMITS = st.sampled_from([(1 << 20, 1 << 20), (1 << 20, 700), (60, 1 << 20), (60, 900)])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(["otel-sdk", "auto"]), LIMITS)
def test_sdk_output_reads_the_same_both_ways(
    data: st.DataObject, fmt: str, limits: tuple[int, int]
) -> None:
    lines = [line for piece in data.draw(st.lists(pieces(), max_size=5)) for line in piece]
    spans, dead, (_, fallbacks) = same_reads(fmt, _batches(data.draw, lines), limits)
    event(f"spans {min(len(spans), 2)}, dead {min(len(dead), 1)}, fallbacks {min(fallbacks, 1)}")


def test_pretty_objects_take_the_direct_path() -> None:
    """So the property above compares the two roads, not the framer with itself."""
    lines = [*pretty(python_span()), *pretty(go_span(), "\t"), *pretty(python_span())]
    for fmt in ("otel-sdk", "auto"):
        decoder, into = _decoder(fmt, (1 << 20, 1 << 20)), DecodeResult()
        items = decoder.feed_direct(lines, 0, DirectWriter(None), into)
        assert [type(item) for item in items] == [tuple, tuple, tuple]
        assert into.fallbacks == 0 and decoder.pending == 0
        same_reads(fmt, [lines])


@pytest.mark.parametrize("fmt", ["otel-sdk", "auto"])
@pytest.mark.parametrize("cut", [1, 5, 17, 30])
def test_an_object_split_between_batches_is_read_whole(fmt: str, cut: int) -> None:
    """The framer holds the first part; the next batch's closing line completes it whole."""
    lines = [*pretty(python_span()), *pretty(python_span())]
    spans, dead, _ = same_reads(fmt, [lines[:cut], lines[cut:]])
    assert len(spans) == 2 and dead == []
    decoder, into = _decoder(fmt, (1 << 20, 1 << 20)), DecodeResult()
    assert decoder.feed_direct(lines[:cut], 0, DirectWriter(None), into) == []
    items = decoder.feed_direct(lines[cut:], 0, DirectWriter(None), into)
    assert [type(item) for item in items] == [tuple, tuple]
    assert into.fallbacks == 0 and decoder.pending == 0


def test_a_checkpoint_between_batches_keeps_the_open_object() -> None:
    lines = pretty(python_span())
    first = _decoder("otel-sdk", (1 << 20, 1 << 20))
    first.feed_direct(lines[:10], 0, DirectWriter(None), DecodeResult())
    second = _decoder("otel-sdk", (1 << 20, 1 << 20))
    second.restore(json.loads(json.dumps(first.snapshot())))
    into = DecodeResult()
    items = second.feed_direct(lines[10:], 0, DirectWriter(None), into)
    assert _encoded(items) == general_read("otel-sdk", lines, (1 << 20, 1 << 20))[0]


def test_the_framers_faults_stay_its_own() -> None:
    """A line beginning with `{` inside cuts the object; an object over the size limit is
    skipped to its end: both dead letters, as the framer names them."""
    lines = pretty(python_span())
    cut = [*lines[:5], *pretty(python_span())]
    _, dead, _ = same_reads("otel-sdk", [cut])
    assert [d.reason for d in dead] == ["truncated_object"]
    _, dead, _ = same_reads("otel-sdk", [[*lines, *lines]], limits=(1 << 20, 300))
    assert [d.reason for d in dead] == ["object_too_large", "object_too_large"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), LIMITS)
def test_a_hinted_object_is_the_searched_one(data: st.DataObject, limits: tuple[int, int]) -> None:
    """Whatever the hint (right, short, long, past the batch), `object_at` answers what its
    search answers, from any line; and that is the plain reading of the lines."""
    lines = [
        line for piece in data.draw(st.lists(pieces(), min_size=1, max_size=4)) for line in piece
    ]
    starts = [index for index, line in enumerate(lines) if line == b"{"]
    anywhere = st.integers(0, len(lines) - 1)
    at = data.draw(st.sampled_from(starts) | anywhere if starts else anywhere)
    searched = object_at(lines, at, *limits)
    right = 0 if searched is None else searched[1] - at
    near = st.integers(max(right - 3, 0), right + 3)
    hint = data.draw(
        st.just(right) | near | st.integers(0, len(lines) + 2) | st.just(MAX_OBJECT_LINES + 1)
    )
    event(f"searched {searched is not None}, hint right {hint == right}")
    assert searched == plainly_found(lines, at, limits)
    assert object_at(lines, at, *limits, hint=hint) == searched


def plainly_found(lines: list[bytes], at: int, limits: tuple[int, int]) -> Any:
    """What `object_at` answers, written the plain way: the lines from `at` to the first line
    after it (within MAX_OBJECT_LINES) that is just `}`, joined, and the index after them;
    None when there is none, a line after the first begins with `{`, the text reaches the
    object limit or a line is over the line limit."""
    max_line, max_object = limits
    ends = range(at + 1, min(len(lines), at + 1 + MAX_OBJECT_LINES))
    last = next((index for index in ends if lines[index] == b"}"), None)
    if last is None:
        return None
    inside = lines[at : last + 1]
    text = b"\n".join(inside)
    if any(line.startswith(b"{") for line in inside[1:]):
        return None
    if len(text) >= max_object or max(map(len, inside)) > max_line:
        return None
    return text, last + 1


def test_a_hint_is_checked_before_it_is_taken() -> None:
    """A hint that lands on a `}` line past the object's own end, or past a line where the
    framer cuts it, gives the searched answer."""
    first, second = pretty(python_span()), pretty({"name": "short"})
    limits = (1 << 20, 1 << 20)
    lines = [*second, *first]
    assert object_at(lines, 0, *limits, hint=len(lines)) == (b"\n".join(second), len(second))
    stray = [*second, b"INFO served", b"}"]  # a hint past a line that is just `}`
    assert object_at(stray, 0, *limits, hint=len(stray)) == (b"\n".join(second), len(second))
    cut = [b"{", b'  "a": 1', b"{", b"}", b"}"]
    assert object_at(cut, 0, *limits, hint=5) is None
    assert object_at(cut, 0, *limits, hint=4) is None


def test_object_at_declines_what_it_cannot_prove() -> None:
    lines = pretty(python_span())
    limits = (1 << 20, 1 << 20)
    found = object_at(lines, 0, *limits)
    assert found == (b"\n".join(lines), len(lines))
    assert object_at(lines[:-1], 0, *limits) is None  # not closed in the batch
    assert object_at([b"{", b'  "a": {', b"{", b"}"], 0, *limits) is None  # a cut inside
    assert object_at(lines, 0, 1 << 20, len(found[0])) is None  # too large
    assert object_at(lines, 0, 20, 1 << 20) is None  # a line over the limit
    long = [b"{", *[b'  "k": 1,'] * MAX_OBJECT_LINES, b'  "z": 1', b"}"]
    assert object_at(long, 0, *limits) is None  # the framer reads very long objects
