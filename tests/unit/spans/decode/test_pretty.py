"""Pretty-printed SDK objects read whole on the direct path (agent.spans.decode.pretty) give
what the framer gives line by line on the general path: the same spans, byte for byte, the
same dead letters and counts, in any batching, with any limits; from split lines, from the
unsplit blocks the tailer reads, and from a file read by the tailer's reader."""

from __future__ import annotations

import copy
import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.spans.decode.auto import AutoDecoder
from agent.spans.decode.otelsdk import OtelSdkDecoder
from agent.spans.decode.pretty import MAX_OBJECT_LINES, object_at
from agent.spans.decode.registry import make_decoder
from agent.spans.encode.direct import DirectWriter
from agent.spans.encode.protobuf import encode_span, span_field
from agent.spans.encode.resources import resource_key
from agent.spans.model import DeadLetter, DecodeResult, Span
from agent.spans.tail.linereader import LineReader, ReadResult
from agent.spans.types import Decoder, LineBlock
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
    "listed",
    "crlf",
)


def listed(tree: dict[str, Any]) -> list[bytes]:
    """One valid object over several lines, each member on a line of its own and each item of
    a list of objects too: those lines begin with `{`, where the framer cuts the object."""
    out, last = [b"{"], len(tree) - 1
    for index, (key, value) in enumerate(tree.items()):
        comma = "," if index < last else ""
        if type(value) is list and value and all(type(item) is dict for item in value):
            items = [json.dumps(item) for item in value]
            out += [f'"{key}": ['.encode(), *(",\n".join(items).encode().split(b"\n"))]
            out.append(f"]{comma}".encode())
        else:
            out.append(f'"{key}": {json.dumps(value)}{comma}'.encode())
    return [*out, b"}"]


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
    if kind == "listed":
        return listed(tree)
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


def block_of(lines: list[bytes]) -> LineBlock:
    return LineBlock(b"".join(line + b"\n" for line in lines), len(lines))


def _sdk_part(decoder: Decoder) -> OtelSdkDecoder:
    if isinstance(decoder, AutoDecoder):
        return decoder.sdk
    assert isinstance(decoder, OtelSdkDecoder)
    return decoder


def block_read(
    fmt: str, batches: list[list[bytes]], limits: tuple[int, int], ways: list[str]
) -> Read:
    """Each batch through `feed_block_direct` as a block, or `feed_direct` split (`ways`:
    "lines", "block" as the decoder chooses, "text" / "split": the block read unsplit, or
    split, whatever the last batch held), then the end of the file."""
    decoder, into, items = _decoder(fmt, limits), DecodeResult(), []
    for batch, way in zip(batches, itertools.cycle(ways), strict=False):
        if way == "lines":
            items += decoder.feed_direct(batch, 0, DirectWriter(None), into)
            continue
        if way != "block":
            _sdk_part(decoder).reads_pretty = way == "text"
        items += decoder.feed_block_direct(block_of(batch), 0, DirectWriter(None), into)
    end = decoder.end_of_file()
    items += end.spans
    into.merge_counts(end)
    return _encoded(items), into.dead, (into.skipped, into.fallbacks)


WAYS = st.lists(st.sampled_from(["lines", "block", "text", "split"]), min_size=1, max_size=4)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(["otel-sdk", "auto"]), LIMITS, WAYS)
def test_blocks_read_as_their_lines(
    data: st.DataObject, fmt: str, limits: tuple[int, int], ways: list[str]
) -> None:
    """A block read unsplit (objects sliced out of its text) or split gives what the general
    path gives for its lines, batch after batch in any mix with split lines."""
    lines = [line for piece in data.draw(st.lists(pieces(), max_size=6)) for line in piece]
    batches = _batches(data.draw, lines)
    spans, dead, (skipped, _) = block_read(fmt, batches, limits, ways)
    general = general_read(fmt, lines, limits)
    assert spans == general[0]
    assert dead == general[1]
    assert skipped == general[2][0]
    event(f"ways {sorted(set(ways))}, spans {min(len(spans), 2)}, dead {min(len(dead), 1)}")


@pytest.mark.parametrize("fmt", ["otel-sdk", "auto"])
def test_pretty_objects_in_a_block_are_read_from_its_text(fmt: str) -> None:
    """Once a file's read held a pretty-printed object, the next block is read unsplit and
    every object in it whole (none through the framer, none a fallback); an object the
    block ends inside is completed from the next one; a one-line file's blocks are split."""
    objects = [pretty(python_span()) for _ in range(5)] + [pretty(go_span(), "\t")]
    lines = [line for lines in objects for line in lines]
    decoder, into = _decoder(fmt, (1 << 20, 1 << 20)), DecodeResult()
    sdk = _sdk_part(decoder)
    first = decoder.feed_block_direct(block_of(lines[:50]), 0, DirectWriter(None), into)
    assert len(first) == 1 and sdk.reads_pretty and sdk.pending  # split: the line path
    rest = decoder.feed_block_direct(block_of(lines[50:]), 0, DirectWriter(None), into)
    assert [type(item) for item in rest] == [tuple] * 5
    assert into.fallbacks == 0 and into.dead == [] and not sdk.pending and sdk.reads_pretty
    assert _encoded(first + rest) == general_read(fmt, lines, (1 << 20, 1 << 20))[0]
    one_line = [json.dumps(python_span()).encode() for _ in range(3)]
    decoder.feed_block_direct(block_of(one_line), 0, DirectWriter(None), into)
    assert not sdk.reads_pretty


@pytest.mark.parametrize("fmt", ["otel-sdk", "auto"])
def test_a_block_object_is_taken_only_when_it_is_one(fmt: str) -> None:
    """In a block, text after an object up to the next `{` line (other lines, a stray `}`)
    is not taken into it: the object goes to the framer, as on the line path."""
    obj = pretty(python_span())
    lines = [*obj, b"INFO served", b"}", *obj, *obj[:-1], b"}  ", *obj]
    spans, dead, _ = block_read(fmt, [lines], (1 << 20, 1 << 20), ["text"])
    general = general_read(fmt, lines, (1 << 20, 1 << 20))
    assert (spans, dead) == general[:2]
    assert len(spans) == 4  # the other lines: dead letters (otel-sdk) or skipped (auto)


def tail_read(fmt: str, parts: list[bytes], limits: tuple[int, int], reads: list[int]) -> Read:
    """The file written in `parts`, read by the tailer's reader after each (`reads`: the
    chunk sizes, in turn; the end with `read_final`), each read's lines or block decoded."""
    decoder, into, items = _decoder(fmt, limits), DecodeResult(), []
    sizes = itertools.cycle(reads)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "app.log"
        path.write_bytes(b"")
        fd = os.open(path, os.O_RDONLY)
        reader = LineReader(
            fd, str(path), 0, max_line_bytes=limits[0], oversize_dir=Path(scratch) / "spill"
        )
        try:
            for index, part in enumerate(parts):
                with path.open("ab") as file:
                    file.write(part)
                final = index == len(parts) - 1
                while True:
                    read = reader.read_final if final else reader.read
                    result = read(next(sizes) // 8 + 1, next(sizes))
                    items += _decode_read(decoder, result, into)
                    if result.final or (result.at_eof and not final):
                        break
        finally:
            reader.close()
    end = decoder.end_of_file()
    items += end.spans
    into.merge_counts(end)
    return _encoded(items), into.dead, (into.skipped, into.fallbacks)


def _decode_read(decoder: Decoder, result: ReadResult, into: DecodeResult) -> list[Any]:
    if result.block is not None:
        return decoder.feed_block_direct(result.block, 0, DirectWriter(None), into)
    return decoder.feed_direct(result.lines, 0, DirectWriter(None), into)


def plain_lines(data: bytes, max_line_bytes: int) -> list[bytes]:
    """The lines a reader hands on for a file: split on newlines (the last one unterminated
    too, once final), a trailing carriage return dropped, none over the limit (spilled)."""
    records = data.split(b"\n")
    if not records[-1]:
        records.pop()
    return [record.removesuffix(b"\r") for record in records if len(record) <= max_line_bytes]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.data(),
    st.sampled_from(["otel-sdk", "auto"]),
    LIMITS,
    st.lists(st.sampled_from([7, 64, 300, 4096, 1 << 16]), min_size=1, max_size=4),
)
def test_a_file_read_by_the_tailers_reader_decodes_as_its_lines(
    data: st.DataObject, fmt: str, limits: tuple[int, int], reads: list[int]
) -> None:
    """Through the reader (blocks where it makes them, split lines elsewhere: carriage
    returns, small limits), with the file growing in parts cut anywhere (inside a line, an
    object), the decoded spans, dead letters and skips are those of the file's lines."""
    lines = [line for piece in data.draw(st.lists(pieces(), max_size=6)) for line in piece]
    whole = b"".join(line + b"\n" for line in lines)
    if data.draw(st.booleans()):
        whole = whole[:-1]  # the last line unterminated: read_final hands it on
    cuts = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=3)))
    parts = [whole[a:b] for a, b in itertools.pairwise([0, *cuts, len(whole)])]
    spans, dead, (skipped, _) = tail_read(fmt, parts, limits, reads)
    general = general_read(fmt, plain_lines(whole, limits[0]), limits)
    assert spans == general[0]
    assert dead == general[1]
    assert skipped == general[2][0]
