"""Per-file bookkeeping of the span pipeline: decoders, delivery trackers and checkpoints.

Each followed file (by its tailer key) has one decoder, restored from the checkpoint's decoder
state, and one `DeliveryTracker`. A read registers a mark (end offset, spans still to deliver,
decoder snapshot); the sender's settlement of a request credits the marks it carried
(`settle`); `save` persists every file's committable offset. So a checkpoint only ever moves
past spans that Jaeger accepted, that sit fsync'd in the disk queue, that were sampled out or
that were dead-lettered.

Entries of files the tailer let go (rotated away and read to their end) stay in the
checkpoint for `RETIRED_TTL`, so a restart soon after does not read such a file again from the
start if it is still around; after that they are pruned, keeping the file small.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.spans.delivery.checkpoint import CheckpointStore, DeliveryTracker, FileCheckpoint
from agent.spans.model import DecodeResult
from agent.spans.types import Decoder

__all__ = ["Decoder", "DeliveryBook", "FileState", "checkpoint_path", "decode_lines"]

log = logging.getLogger("agent.spans.delivery.book")

RETIRED_TTL_NS = 24 * 3600 * 1_000_000_000
Mark = tuple[str, int]  # (file key, mark id)


DecoderFactory = Callable[[str], Decoder]  # path -> a decoder for that path's format


def decode_lines(decoder: Decoder, lines: list[bytes], now_ns: int) -> DecodeResult:
    """Feed a read's lines; one result for all of them."""
    return decoder.feed_many(lines, now_ns)


@dataclass(slots=True)
class FileState:
    file_key: str
    path: str
    decoder: Decoder
    tracker: DeliveryTracker
    last_end: int
    retired: bool = False
    pending_at_mark: int = 0
    """The decoder's pending count when the last mark took its snapshot."""


class DeliveryBook:
    def __init__(self, store: CheckpointStore, decoder_for: DecoderFactory) -> None:
        self._store = store
        self._decoder_for = decoder_for
        self._saved: dict[str, FileCheckpoint] = {}
        self._files: dict[str, FileState] = {}
        self._dirty = False
        self.saves = 0

    async def load(self) -> None:
        self._saved = await asyncio.to_thread(self._store.load)

    def offsets(self) -> dict[str, int]:
        """Where the tailer resumes each file."""
        return {key: checkpoint.offset for key, checkpoint in self._saved.items()}

    def file(self, file_key: str, path: str) -> FileState:
        state = self._files.get(file_key)
        if state is None:
            state = self._open(file_key, path)
        elif state.path != path:
            state.path = path  # renamed by rotation; same file
        return state

    def _open(self, file_key: str, path: str) -> FileState:
        decoder = self._decoder_for(path)
        saved = self._saved.get(file_key)
        offset = 0
        if saved is not None:
            offset = saved.offset
            if saved.decoder_state:
                decoder.restore(saved.decoder_state)
        state = FileState(file_key, path, decoder, DeliveryTracker(), offset)
        state.pending_at_mark = decoder.pending
        self._files[file_key] = state
        return state

    def files(self) -> list[FileState]:
        return list(self._files.values())

    def mark(self, state: FileState, end_offset: int, pending: int) -> Mark:
        mark_id = state.tracker.add_mark(end_offset, pending, state.decoder.snapshot())
        state.last_end = end_offset
        state.pending_at_mark = state.decoder.pending
        self._dirty = True
        return (state.file_key, mark_id)

    def mark_changed_decoders(self) -> None:
        """A mark (no spans, same offset) for each file whose decoder changed since its last
        mark without reading a line: another file's decoder took open spans from it."""
        for state in self._files.values():
            if state.decoder.pending != state.pending_at_mark:
                self.mark(state, state.last_end, 0)

    def settle(self, marks: Mapping[Mark, int]) -> None:
        """Credit delivered spans to their marks (called when the sender settles a request)."""
        for (file_key, mark_id), count in marks.items():
            self._files[file_key].tracker.done(mark_id, count)
        self._dirty = True

    @property
    def outstanding(self) -> int:
        """Spans read but not yet delivered, over all files."""
        return sum(state.tracker.outstanding for state in self._files.values())

    def collect(self, now_ns: int, live: Collection[str]) -> dict[str, FileCheckpoint]:
        """Every file's committable point merged over what was saved before. Entries of files
        neither open here nor followed by the tailer (`live`) go after RETIRED_TTL."""
        merged = dict(self._saved)
        for key, state in self._files.items():
            committable = state.tracker.committable()
            if committable is None:
                continue
            offset, decoder_state = committable
            previous = merged.get(key)
            unchanged = previous is not None and (
                (previous.offset, previous.path, previous.decoder_state)
                == (offset, state.path, decoder_state)
            )
            if not unchanged:
                merged[key] = FileCheckpoint(key, state.path, offset, decoder_state, now_ns)
        return {
            key: checkpoint
            for key, checkpoint in merged.items()
            if key in self._files or key in live or now_ns - checkpoint.updated_ns < RETIRED_TTL_NS
        }

    async def save(self, live: Collection[str]) -> bool:
        """Persist committable offsets if anything moved; True when a file was written."""
        if not self._dirty:
            return False
        self._dirty = False
        checkpoints = self.collect(time.time_ns(), live)
        if checkpoints == self._saved:
            return False
        try:
            await asyncio.to_thread(self._store.save, checkpoints)
        except BaseException:
            self._dirty = True  # try again next time; the old file is still intact
            raise
        self._saved = checkpoints
        self.saves += 1
        self._forget_finished_files()
        return True

    def _forget_finished_files(self) -> None:
        """Drop the in-memory state of retired files whose every span is delivered and saved."""
        for key, state in list(self._files.items()):
            if state.retired and state.tracker.marks == 0 and not state.decoder.pending:
                del self._files[key]

    def status(self) -> dict[str, Any]:
        return {
            "path": str(self._store.path),
            "files": len(self._saved),
            "saves": self.saves,
            "spans_outstanding": self.outstanding,
        }


def checkpoint_path(data_dir: Path) -> Path:
    return data_dir / "spans" / "checkpoints.json"
