"""DeliveryBook: checkpoints move only past delivered spans, carry the decoder state, and keep
entries of files still around."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from agent.spans.delivery.book import RETIRED_TTL_NS, DeliveryBook, decode_lines
from agent.spans.delivery.checkpoint import CheckpointStore, FileCheckpoint
from agent.spans.encode.direct import DirectWriter
from agent.spans.model import DecodeResult
from agent.spans.types import DirectItem, LineBlock


class StatefulDecoder:
    """A decoder whose state is the number of lines it has seen (what a snapshot carries).
    The Decoder protocol written out, not a `LineFeeder` subclass: that class may be compiled,
    and a compiled class has no interpreted subclasses."""

    format = "stateful"

    def __init__(self) -> None:
        self.seen = 0
        self.restored: dict[str, Any] | None = None

    def feed(self, line: bytes, now_ns: int) -> DecodeResult:
        return self.feed_many([line], now_ns)

    def feed_many(self, lines: Iterable[bytes], now_ns: int) -> DecodeResult:
        result = DecodeResult()
        for _ in lines:
            self.seen += 1
            result.skipped += 1
        return result

    def feed_direct(
        self, lines: Sequence[bytes], now_ns: int, direct: DirectWriter, into: DecodeResult
    ) -> list[DirectItem]:
        into.merge_counts(self.feed_many(lines, now_ns))
        return []

    def feed_block_direct(
        self, block: LineBlock, now_ns: int, direct: DirectWriter, into: DecodeResult
    ) -> list[DirectItem]:
        return self.feed_direct(block.lines(), now_ns, direct, into)

    def end_of_file(self) -> DecodeResult:
        return DecodeResult()

    def expire(self, now_ns: int) -> DecodeResult:
        return DecodeResult()

    def snapshot(self) -> dict[str, Any]:
        return {"seen": self.seen}

    def restore(self, state: dict[str, Any]) -> None:
        self.restored = state
        self.seen = int(state["seen"])

    @property
    def pending(self) -> int:
        return 0


def book_at(path: Path) -> tuple[DeliveryBook, list[StatefulDecoder]]:
    made: list[StatefulDecoder] = []

    def make(source: str) -> StatefulDecoder:
        made.append(StatefulDecoder())
        return made[-1]

    return DeliveryBook(CheckpointStore(path), make), made


async def test_offset_is_saved_only_once_every_span_before_it_is_settled(tmp_path: Path) -> None:
    book, _ = book_at(tmp_path / "cp.json")
    await book.load()
    state = book.file("k1", "/logs/a.log")
    first = book.mark(state, 100, pending=2)
    second = book.mark(state, 200, pending=1)
    book.settle({second: 1})
    assert not await book.save(live={"k1"}), "the first mark is still out"
    book.settle({first: 2})
    assert await book.save(live={"k1"})
    saved = CheckpointStore(tmp_path / "cp.json").load()
    assert saved["k1"].offset == 200 and saved["k1"].path == "/logs/a.log"
    assert book.outstanding == 0


async def test_the_decoder_state_at_the_offset_travels_with_it(tmp_path: Path) -> None:
    book, decoders = book_at(tmp_path / "cp.json")
    await book.load()
    state = book.file("k1", "/logs/a.log")
    decode_lines(state.decoder, [b"a", b"b", b"c"], 0)
    book.mark(state, 30, pending=0)
    decode_lines(state.decoder, [b"d"], 0)
    book.mark(state, 40, pending=1)  # not delivered: its state must not be saved
    await book.save(live={"k1"})

    again, restored = book_at(tmp_path / "cp.json")
    await again.load()
    assert again.offsets() == {"k1": 30}
    again.file("k1", "/logs/a.log")
    assert restored[0].restored == {"seen": 3}
    assert decoders[0].seen == 4


async def test_entries_of_gone_files_are_pruned_only_after_the_ttl(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    old = 1_000
    CheckpointStore(path).save(
        {
            "gone": FileCheckpoint("gone", "/logs/a.log.1", 10, {}, old),
            "idle": FileCheckpoint("idle", "/logs/b.log", 20, {}, old),
        }
    )
    book, _ = book_at(path)
    await book.load()
    collected = book.collect(now_ns=old + RETIRED_TTL_NS - 1, live={"idle"})
    assert set(collected) == {"gone", "idle"}
    collected = book.collect(now_ns=old + RETIRED_TTL_NS + 1, live={"idle"})
    assert set(collected) == {"idle"}, "a followed file keeps its entry however idle"


async def test_a_failed_save_is_retried_at_the_next_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book, _ = book_at(tmp_path / "cp.json")
    await book.load()
    book.mark(book.file("k1", "/logs/a.log"), 50, pending=0)

    def broken(checkpoints: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(CheckpointStore, "save", lambda self, checkpoints: broken(checkpoints))
    with pytest.raises(OSError, match="disk full"):
        await book.save(live=set())
    monkeypatch.undo()
    assert await book.save(live=set())
    assert CheckpointStore(tmp_path / "cp.json").load()["k1"].offset == 50
