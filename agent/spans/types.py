"""The contracts between the span stages: what a decoder offers, what the encoders hand on.

    decoder = make_decoder("otlp-json", ...)          # agent.spans.decode.registry: a Decoder
    result = decoder.feed_many(lines, now_ns)         # the general path: Spans, dead letters
    into = DecodeResult()
    items = decoder.feed_direct(lines, now_ns, direct, into)   # the direct path
    items = decoder.feed_block_direct(block, now_ns, direct, into)   # the same, lines unsplit

`feed_direct` is the same decoding as `feed_many`, but each span the direct encoder can write
(`DirectWriter`, agent.spans.encode.direct) reaches the list already as an `EncodedSpan`, never
built as a `Span`; the spans it declines come as `Span`s from the general path, in input order
among the others. `into` gets the dead letters and counts, `into.spans` stays empty, and
`into.fallbacks` counts the records the direct path handed to the general one (the pipeline
exports it as a metric, so a fast path that stops applying shows). Either path gives the same
spans, byte for byte once encoded: tests/unit/spans/decode/test_direct.py holds every format to
that.

`feed_block_direct` is `feed_direct(block.lines(), ...)` for the lines of a `LineBlock`, the
form in which the tailer hands on a read that it did not need to split (agent.spans.tail).
Most decoders split it and read the lines; a decoder that can read a run of lines as one text
reads it unsplit (otel-sdk and `auto`: a pretty-printed object is sliced out of the block whole,
agent.spans.decode.pretty), with the same result.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from agent.spans.model import DecodeResult, Span

if TYPE_CHECKING:
    # The writer itself, not a protocol of it: compiled (mypyc) decoders call its methods
    # natively then, not through Python calls with keyword arguments.
    from agent.spans.encode.direct import DirectWriter


class ResourceKey(NamedTuple):
    """Spans with equal keys share one ResourceSpans/ScopeSpans in a request. A named tuple,
    not a bare one: compiled (mypyc) code keeps a bare tuple unboxed and boxes it afresh
    wherever it is stored, and a key made once must stay one object, as the stages compare
    keys by identity first (spans come in runs of one resource)."""

    service: str | None
    attributes: tuple[tuple[str, Hashable], ...]
    """The record's other resource attributes, frozen and sorted."""
    scope_name: str
    scope_version: str


EncodedSpan = tuple[ResourceKey, bytes]
"""A span ready for the batcher: its resource key and its bytes as the encoding holds them."""

DirectItem = EncodedSpan | Span
DirectEvent = tuple[object, object, object]
"""(time in Unix nanoseconds, name, attributes) of one event, for `DirectWriter.span`: as the
decoder found them, unchecked (`span` declines what it does not take)."""


@dataclass(frozen=True, slots=True)
class LineBlock:
    """Complete lines as they were read, not split: `text` holds `count` lines, each followed
    by its newline. The lines are exactly `lines()`; the tailer makes a block only of lines it
    would hand on unchanged (none over the line limit, no carriage return)."""

    text: bytes
    count: int

    def lines(self) -> list[bytes]:
        lines = self.text.split(b"\n")
        lines.pop()  # what follows the last newline: nothing
        return lines


class HeldLines:
    """What a read or a batch of it holds: its complete lines split (`lines`), or unsplit as
    read (`block`, then `lines` is empty). For the tailer's dataclasses to inherit."""

    __slots__ = ()
    lines: list[bytes]
    block: LineBlock | None

    @property
    def line_count(self) -> int:
        return len(self.lines) if self.block is None else self.block.count

    @property
    def records(self) -> list[bytes] | LineBlock:
        """The lines as the decoders take them: split, or the block."""
        return self.lines if self.block is None else self.block

    def all_lines(self) -> list[bytes]:
        """The lines, split (the block's, if there is one)."""
        return self.lines if self.block is None else self.block.lines()


class Decoder(Protocol):
    """One file's decoder: lines in, spans, dead letters and counted skips out. `feed` never
    raises on input; state (open JobFirst spans, a half-read multi-line object) is bounded and
    survives restarts through `snapshot` / `restore`."""

    format: str
    """The format's name as configured (`auto` for auto), the fallback metric's label."""

    def feed(self, line: bytes, now_ns: int) -> DecodeResult: ...

    def feed_many(self, lines: Iterable[bytes], now_ns: int) -> DecodeResult: ...

    def feed_direct(
        self, lines: Sequence[bytes], now_ns: int, direct: DirectWriter, into: DecodeResult
    ) -> list[DirectItem]: ...

    def feed_block_direct(
        self, block: LineBlock, now_ns: int, direct: DirectWriter, into: DecodeResult
    ) -> list[DirectItem]: ...

    def expire(self, now_ns: int) -> DecodeResult: ...

    def end_of_file(self) -> DecodeResult:
        """The file will get no more lines (rotated away and read to its end): what only
        more lines of this file could finish is given up now, as dead letters or spans.
        Not JobFirst's open spans: another file may still end them."""
        ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...

    @property
    def pending(self) -> int: ...
