"""Where each span log file was read to, saved only once what came before it was delivered.

:class:`DeliveryTracker` is the bookkeeping for one file (no I/O): each read batch leaves a
*mark* (its end offset, how many units — spans, dead letters — it produced, and the decoder's
state there); a mark becomes committable once it and every earlier mark are fully delivered.
The decoder state travels with the offset, so spans still open at the commit point (a JobFirst
"Span started" whose "Span ended" is not read yet) are restored on restart instead of lost.

:class:`CheckpointStore` persists the committed marks of all files as one versioned,
checksummed JSON state file, replaced atomically (temp file, fsync, rename, fsync directory).
A graceful stop that commits everything it read re-sends nothing on restart; after kill -9 only
what was read past the last saved commit point is read and sent again.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.core.atomicfile import StateFileError, load_state, save_state

log = logging.getLogger("agent.spans.delivery.checkpoint")

CHECKPOINT_VERSION = 1


@dataclass(slots=True)
class FileCheckpoint:
    file_key: str
    path: str
    offset: int
    decoder_state: dict[str, Any]
    """The decoder's snapshot at ``offset`` (open JobFirst spans etc.); JSON-serialisable."""
    updated_ns: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "offset": self.offset,
            "decoder_state": self.decoder_state,
            "updated_ns": self.updated_ns,
        }


class CheckpointStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, FileCheckpoint]:
        """The saved checkpoints; {} (with a logged warning) when the file is missing or unusable.

        An unusable file (damaged, or written by another format version) is moved aside as
        ``<name>.unusable-<unix time>`` for inspection, never deleted: starting over re-sends
        spans (which dedupe by their stable IDs) but loses none."""
        if not self.path.exists():
            log.info("no span checkpoint file yet", extra={"path": str(self.path)})
            return {}
        try:
            payload = load_state(self.path, CHECKPOINT_VERSION)
        except StateFileError as error:
            self._set_aside(str(error))
            return {}
        if payload is None:
            self._set_aside("damaged")
            return {}
        return _parse_files(payload.get("files"))

    def save(self, checkpoints: Mapping[str, FileCheckpoint]) -> None:
        """Atomically replace the saved checkpoints (blocking: call from a worker thread)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        files = {key: checkpoint.as_dict() for key, checkpoint in checkpoints.items()}
        save_state(self.path, CHECKPOINT_VERSION, {"files": files})

    def _set_aside(self, reason: str) -> None:
        aside = self.path.with_name(f"{self.path.name}.unusable-{int(time.time())}")
        try:
            os.replace(self.path, aside)
        except OSError as error:
            log.error(
                "span checkpoint file unusable and cannot be moved aside",
                extra={"path": str(self.path), "reason": reason, "error": repr(error)},
            )
            return
        log.warning(
            "span checkpoint file unusable; moved aside, files will be read from the start",
            extra={"path": str(self.path), "moved_to": str(aside), "reason": reason},
        )


def _parse_files(files: Any) -> dict[str, FileCheckpoint]:
    if not isinstance(files, dict):
        log.warning("span checkpoint file holds no file table; starting over")
        return {}
    checkpoints: dict[str, FileCheckpoint] = {}
    for key, entry in files.items():
        checkpoint = _parse_entry(key, entry)
        if checkpoint is None:
            log.warning("skipping a malformed span checkpoint entry", extra={"file_key": key})
            continue
        checkpoints[key] = checkpoint
    return checkpoints


def _parse_entry(key: str, entry: Any) -> FileCheckpoint | None:
    if not isinstance(entry, dict):
        return None
    offset, path = entry.get("offset"), entry.get("path", "")
    state, updated = entry.get("decoder_state", {}), entry.get("updated_ns", 0)
    if not isinstance(offset, int) or offset < 0 or not isinstance(path, str):
        return None
    if not isinstance(state, dict) or not isinstance(updated, int):
        return None
    return FileCheckpoint(key, path, offset, state, updated)


@dataclass(slots=True)
class _Mark:
    mark_id: int
    end_offset: int
    remaining: int
    decoder_state: dict[str, Any]


class DeliveryTracker:
    """Per file: commit points that become durable only when everything before them is
    delivered. Pure logic (no I/O)."""

    def __init__(self) -> None:
        self._marks: deque[_Mark] = deque()
        self._by_id: dict[int, _Mark] = {}
        self._next_id = 0
        self._outstanding = 0
        self._committable: tuple[int, dict[str, Any]] | None = None

    def add_mark(self, end_offset: int, pending: int, decoder_state: dict[str, Any]) -> int:
        """A read batch ended at ``end_offset`` and produced ``pending`` units still to be
        delivered; returns the mark's id for :meth:`done`."""
        if pending < 0:
            raise ValueError(f"pending must be >= 0, got {pending}")
        mark = _Mark(self._next_id, end_offset, pending, decoder_state)
        self._next_id += 1
        self._marks.append(mark)
        self._by_id[mark.mark_id] = mark
        self._outstanding += pending
        self._advance()
        return mark.mark_id

    def done(self, mark_id: int, count: int = 1) -> None:
        """``count`` units of that mark were delivered (accepted downstream or made durable)."""
        if count == 0:
            return
        mark = self._by_id.get(mark_id)
        if mark is None or count > mark.remaining or count < 0:
            # Counting a unit twice would let the checkpoint pass an undelivered one.
            remaining = 0 if mark is None else mark.remaining
            raise ValueError(f"mark {mark_id} has {remaining} units outstanding, not {count}")
        mark.remaining -= count
        self._outstanding -= count
        if mark.remaining == 0 and self._marks[0] is mark:
            self._advance()

    def committable(self) -> tuple[int, dict[str, Any]] | None:
        """The furthest (offset, decoder state) such that that mark and all earlier ones are
        complete; None until the first mark completes."""
        return self._committable

    @property
    def outstanding(self) -> int:
        """Units read but not yet delivered."""
        return self._outstanding

    @property
    def marks(self) -> int:
        """Marks not yet committable."""
        return len(self._marks)

    def _advance(self) -> None:
        while self._marks and self._marks[0].remaining == 0:
            mark = self._marks.popleft()
            del self._by_id[mark.mark_id]
            self._committable = (mark.end_offset, mark.decoder_state)
