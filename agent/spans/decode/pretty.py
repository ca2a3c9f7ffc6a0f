"""Pretty-printed SDK objects read whole from a batch of lines, for the direct path.

Python's `ConsoleSpanExporter` prints each span as an object indented over ~40 lines by
default. `ObjectFramer` (`agent.spans.decode.framing`) reads such an object line by line: each
line costs a call and a scan of its quotes and braces, and the whole object then takes the
general path, about ten times the cost of the same span on one line. `object_at` instead
finds, from a line that is just `{`, the next line that is just `}` (one C-level search of
the batch's list), and joins the lines between, both included, into the object's text.

That text is exactly the frame the framer would make when it is one valid JSON object: the
framer's brace count is exact on valid JSON (a string cannot hold a raw newline), so it closes
the object on the line of its last `}`, which is that last line. `pretty_direct` proves
validity by decoding the text (msgspec and orjson both refuse trailing data) and hands a text
that is not one object back to the framer, line by line, as before. `object_at` itself
declines what the framer treats differently: an object not closed within the batch (or
within `MAX_OBJECT_LINES`), a line in it that begins with `{` (the framer cuts the object
there), an object over `max_object_bytes` or with a line over `max_line_bytes`. An object a
batch ended inside (the framer holds its first lines) is completed the same way, from the
framer's lines and the next batch's, by `continued_direct`.

An SDK prints every span of a service alike, so an object is most often as many lines as the
one before it: `object_at` takes that count as a hint and takes that many lines when the last
is `}` and no line inside is just `}` (the object would close there) or begins with `{` (the
framer's cut) — then the search finds that same last line, and the hint saves it. Else it
searches, as without a hint. The lines inside are checked by their first bytes (no `{` or
`}`: an indented line has neither); only an object with such a line takes a regular
expression's pass over its text, which tells exactly and costs several times more compiled.
tests/unit/spans/decode/test_pretty.py holds the two roads to the same spans, bytes and dead
letters.

A read the tailer hands on unsplit (`LineBlock`) is read by `block_direct` without making an
object of each line: from a line that is just `{` it finds, in the block's text, the next line
beginning with `{` (where the next object starts, or where the framer would cut this one) and
before it the last line that is just `}` (`agent.spans.linescan.object_close`, in C with the
native build), and reads the text between, both included, as the object, sliced out of the
block in one piece. That text, when it is one valid JSON object
with no line inside beginning with `{`, is again exactly the framer's frame (the framer's
brace count falls to zero only at a valid object's last brace, and nothing cuts it); what is
not is left to the framer as `pretty_direct` leaves it, the first line to `feed` and the rest
with the lines that follow. Runs of other lines are split and read as the decoder reads split
lines. A file whose last read held no pretty-printed object has its next read split instead:
a search of a one-line file's reads for objects that are not there would only cost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Protocol

import orjson

from agent.spans import linescan
from agent.spans.decode.direct_sdk import go_span, python_span
from agent.spans.decode.direct_sdkstructs import sdk_line
from agent.spans.model import DecodeResult
from agent.spans.types import DirectItem, LineBlock

if TYPE_CHECKING:
    from agent.spans.decode.otelsdk import OtelSdkDecoder
    from agent.spans.encode.direct import DirectWriter

Found = tuple[bytes, int]  # the object's text, the index of the line after it
MAX_OBJECT_LINES: Final = 512  # how far to look for the closing line; a longer object: the framer's
_PRETTY_START_MAX: Final = 8
# A line beginning with `{`, where the framer cuts an object. A regular expression finds it in
# a ~1 KB object in 0.46 µs where `b"\n{" in text` takes 1.2 (CPython's two-byte search).
_CUT: Final = re.compile(rb"\n\{")
# The same, or a line just `}` before the last: what a hinted object must not hold.
_CUT_OR_CLOSED: Final = re.compile(rb"\n(?:\{|\}\n)")
_PRETTY_START: Final = re.compile(rb"\n\{\n")  # in a block: a line that is just `{` after another
_object_close: Final = linescan.object_close  # bound once: C when the native build is loaded


class LineRuns(Protocol):
    """A decoder that reads split lines into `out` as its `feed_direct` does: `continued`,
    whether an object its framer holds may be completed whole from these lines (the lines
    follow a batch's end), else the framer reads on line by line."""

    def lines_into(
        self,
        lines: Sequence[bytes],
        now_ns: int,
        *,
        direct: DirectWriter,
        into: DecodeResult,
        out: list[DirectItem],
        continued: bool,
    ) -> None: ...


def object_at(
    lines: Sequence[bytes], at: int, max_line_bytes: int, max_object_bytes: int, hint: int = 0
) -> Found | None:
    """The object whose first line is `at` (a line that is just `{`) and the index after
    it, or None when the framer is to read it (module docstring). `hint`: how many lines
    the object is likely to have (the one before it had), checked before the search."""
    last = at + hint - 1
    if 1 < hint <= MAX_OBJECT_LINES + 1 and last < len(lines) and lines[last] == b"}":
        text = b"\n".join(lines[at : last + 1])
        if _plain_inside(lines, at + 1, last) or _CUT_OR_CLOSED.search(text) is None:
            return _within(
                lines, at, last, text, max_line_bytes=max_line_bytes, room=max_object_bytes
            )
    return _closed(lines, at, at + 1, max_line_bytes, max_object_bytes)


def _plain_inside(lines: Sequence[bytes], first: int, end: int) -> bool:
    """Whether no line from `first` to before `end` begins with `{` or `}`: then none is
    where the framer cuts, nor just `}`. Compiled, a loop over the lines' first bytes costs
    a fraction of the regular expression's pass over their text; only an object with such a
    line takes that pass, which tells exactly."""
    return all(not line or (line[0] != 0x7B and line[0] != 0x7D) for line in lines[first:end])


def _closed(
    lines: Sequence[bytes], start: int, first: int, max_line_bytes: int, room: int
) -> Found | None:
    """The lines from `start` to the first line from `first` that is just `}`, joined, and
    the index after it; None when there is no such line, the text is `room` bytes or more,
    a line in it begins with `{` (after the first) or is over `max_line_bytes`."""
    last = _closing(lines, first)
    if last < 0:
        return None  # not closed in this batch (or not by a line that is just `}`)
    text = b"\n".join(lines[start : last + 1])
    if not _plain_inside(lines, start + 1, last) and _CUT.search(text) is not None:
        return None
    return _within(lines, start, last, text, max_line_bytes=max_line_bytes, room=room)


def _within(
    lines: Sequence[bytes], start: int, last: int, text: bytes, *, max_line_bytes: int, room: int
) -> Found | None:
    """`text` (lines `start` to `last`, joined) and the index after it, or None when it is
    `room` bytes or more or one of its lines is over `max_line_bytes`."""
    if len(text) >= room:
        return None
    if len(text) > max_line_bytes and max(map(len, lines[start : last + 1])) > max_line_bytes:
        return None
    return text, last + 1


def _closing(lines: Sequence[bytes], at: int) -> int:
    """The index of the first line from `at` that is just `}`, or -1."""
    try:
        return lines.index(b"}", at, at + MAX_OBJECT_LINES)
    except ValueError:
        return -1


def is_pretty_start(line: bytes) -> bool:
    """A line that is just `{` (with a few spaces): what starts a pretty-printed object. A
    longer one is left to the framer, which reads it alike, only slower."""
    return len(line) < _PRETTY_START_MAX and line.strip() == b"{"


def pretty_direct(
    decoder: OtelSdkDecoder,
    lines: Sequence[bytes],
    at: int,
    *,
    now_ns: int,
    direct: DirectWriter,
    into: DecodeResult,
    out: list[DirectItem],
) -> int:
    """The pretty-printed object that starts at line `at` (the decoder's framer holds no
    object), written whole when `object_at` finds it; else its first line goes to the framer,
    which reads the rest line by line. The index of the next line to read."""
    decoder.reads_pretty = True
    found = object_at(
        lines, at, decoder.max_line_bytes, decoder.framer.max_object_bytes, decoder.object_lines
    )
    if found is not None and _object_direct(decoder, found[0], direct, into, out):
        decoder.object_lines = found[1] - at
        return found[1]
    decoder.feed_general(lines[at], now_ns, into, out)
    return at + 1


def continued_direct(
    decoder: OtelSdkDecoder,
    lines: Sequence[bytes],
    *,
    direct: DirectWriter,
    into: DecodeResult,
    out: list[DirectItem],
) -> int:
    """The object the decoder's framer holds the first lines of (a batch ended inside it),
    written whole when this batch closes it as `object_at` would find it; the index of the
    next line to read (0: the framer reads on, line by line)."""
    framer = decoder.framer
    held = framer.open_object()
    if held is None or lines[0][:1] == b"{":
        return 0
    found = _closed(lines, 0, 0, decoder.max_line_bytes, framer.max_object_bytes - held[1])
    if found is None or not _object_direct(decoder, held[0] + b"\n" + found[0], direct, into, out):
        return 0
    framer.drop()
    return found[1]


def _object_direct(
    decoder: OtelSdkDecoder,
    text: bytes,
    direct: DirectWriter,
    into: DecodeResult,
    out: list[DirectItem],
) -> bool:
    """An object's text read as the framer's frame of it would be, or False (nothing done)
    when the text is not one JSON object."""
    service = decoder.default_service
    if sdk_line(text, service, direct, out):
        return True
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False  # not one object, or NaN (which only the framer's loader reads)
    if type(obj) is not dict:
        return False
    if "SpanContext" in obj:
        if go_span(obj, service, direct, out):
            return True
    elif python_span(obj, service, direct, out):
        return True
    into.fallbacks += 1
    result = DecodeResult()
    decoder.decode_text(text, result)
    out.extend(result.spans)
    into.merge_counts(result)
    return True


def block_items(
    reader: LineRuns,
    decoder: OtelSdkDecoder,
    block: LineBlock,
    *,
    now_ns: int,
    direct: DirectWriter,
    into: DecodeResult,
) -> list[DirectItem]:
    """`feed_block_direct` of `reader` (`decoder` its otel-sdk part): while the file prints
    pretty-printed objects the block is read by `block_direct`, else split into lines."""
    out: list[DirectItem] = []
    if decoder.reads_pretty:
        block_direct(reader, decoder, block.text, now_ns=now_ns, direct=direct, into=into, out=out)
    else:
        reader.lines_into(block.lines(), now_ns, direct=direct, into=into, out=out, continued=True)
    return out


def block_direct(
    reader: LineRuns,
    decoder: OtelSdkDecoder,
    text: bytes,
    *,
    now_ns: int,
    direct: DirectWriter,
    into: DecodeResult,
    out: list[DirectItem],
) -> None:
    """The lines of a block (`text`, each line followed by its newline) read as `reader`
    reads them split, each pretty-printed object that starts where `decoder`'s framer holds
    none read whole from the text (module docstring). `decoder` is the reader's otel-sdk
    part (the reader itself, or `auto`'s)."""
    pos, end = 0, len(text)
    decoder.reads_pretty = False
    if decoder.framer.pending and end:  # an object the last read ended inside
        start = _next_pretty_start(text, 0)
        lines = _split(text, 0, start)
        reader.lines_into(lines, now_ns, direct=direct, into=into, out=out, continued=True)
        pos = start
    while pos < end:
        if text[pos] == 0x7B and text[pos + 1] == 0x0A and not decoder.framer.pending:
            decoder.reads_pretty = True
            pos = _text_object(decoder, text, pos, now_ns=now_ns, direct=direct, into=into, out=out)
            continue
        start = _next_pretty_start(text, pos)
        lines = _split(text, pos, start)
        reader.lines_into(lines, now_ns, direct=direct, into=into, out=out, continued=False)
        pos = start


def _text_object(
    decoder: OtelSdkDecoder,
    text: bytes,
    at: int,
    *,
    now_ns: int,
    direct: DirectWriter,
    into: DecodeResult,
    out: list[DirectItem],
) -> int:
    """The object whose first line (just `{`) starts at `at`, read whole when the text up to
    the last line that is just `}` before the next line beginning with `{` is one (to the
    framer otherwise, as `pretty_direct` leaves it); the position of the next line to read."""
    close = _object_close(text, at)
    if close >= 0:
        stop = close + 2
        size = stop - at
        if (
            size < decoder.framer.max_object_bytes
            and size <= decoder.max_line_bytes
            and _object_direct(decoder, text[at:stop], direct, into, out)
        ):
            return stop + 1
    decoder.feed_general(text[at : at + 1], now_ns, into, out)
    return at + 2


def _next_pretty_start(text: bytes, at: int) -> int:
    """Where the first line after the one at `at` that is just `{` starts, or the end."""
    found = _PRETTY_START.search(text, at)
    return len(text) if found is None else found.start() + 1


def _split(text: bytes, start: int, end: int) -> list[bytes]:
    """The lines from `start` to `end` (each followed by its newline), split."""
    lines = text[start:end].split(b"\n")
    lines.pop()
    return lines
