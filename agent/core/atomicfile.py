"""Crash-safe small-file writes and versioned JSON state files.

A reader after a crash sees either the old file or the new one, never a mix: the bytes go to a
temporary file in the same directory, are fsync'd, renamed over the target with ``os.replace``
(atomic on POSIX), and the directory is fsync'd so the rename itself survives power loss.

State files (checkpoints, queue frontiers) carry a format version and a CRC32 of their payload,
so a file from a newer agent is refused loudly and a damaged file is reported and ignored.
All functions here block on disk I/O: call them from a worker thread in async code.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import zlib
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

StrPath = str | os.PathLike[str]
# Linux refuses writev with more buffers than this (IOV_MAX).
_MAX_IOVECS = 1024
# Buffers and dead letters hold raw payloads of other services: only the agent's user reads them.
FILE_MODE = 0o600
DIR_MODE = 0o700


class StateFileError(Exception):
    """A state file exists but cannot be used as-is (for example, written by a newer format)."""


def fsync_dir(path: StrPath) -> None:
    """Flush a directory's entries (creates, renames, unlinks) to stable storage."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: StrPath) -> None:
    """``mkdir -p`` whose result survives power loss: each directory created is fsync'd into
    its parent before anything inside it is acknowledged. New directories get DIR_MODE."""
    target = Path(path)
    missing: list[Path] = []
    while not target.is_dir():
        missing.append(target)
        if target.parent == target:
            break
        target = target.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue  # another thread or process made it; it made it durable too
        fsync_dir(directory.parent)


def write_atomic(path: StrPath, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new content."""
    target = Path(path)
    # A random suffix keeps concurrent writers of the same file from sharing a temp file.
    temp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(6)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        try:
            write_all(fd, [data])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    fsync_dir(target.parent)


def write_all(fd: int, parts: list[bytes]) -> None:
    """Write every buffer in order, retrying short writes."""
    for start in range(0, len(parts), _MAX_IOVECS):
        batch = parts[start : start + _MAX_IOVECS]
        written = os.writev(fd, batch)
        total = sum(len(part) for part in batch)
        if written < total:
            rest = memoryview(b"".join(batch))[written:]
            while rest:
                rest = rest[os.write(fd, rest) :]


def write_all_at(fd: int, parts: list[bytes], offset: int) -> None:
    """Write every buffer in order from ``offset`` (``pwritev``; the file position is not used
    or moved), retrying short writes."""
    for start in range(0, len(parts), _MAX_IOVECS):
        batch = parts[start : start + _MAX_IOVECS]
        written = os.pwritev(fd, batch, offset)
        total = sum(len(part) for part in batch)
        if written < total:
            rest = memoryview(b"".join(batch))[written:]
            at = offset + written
            while rest:
                count = os.pwrite(fd, rest, at)
                if count == 0:  # no progress on bytes still to write: fail rather than spin
                    raise OSError(errno.EIO, "write made no progress", str(fd))
                rest, at = rest[count:], at + count
        offset += total


def save_state(path: StrPath, version: int, payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` as a versioned, checksummed JSON state file."""
    body = _canonical_json(payload)
    document = {"version": version, "crc32": zlib.crc32(body), "payload": payload}
    write_atomic(path, json.dumps(document, sort_keys=True).encode() + b"\n")


def load_state(path: StrPath, expected_version: int) -> dict[str, Any] | None:
    """Read a state file written by :func:`save_state`.

    Returns ``None`` when the file is missing, or when it is damaged (not JSON, wrong shape,
    checksum mismatch) — the damage is logged so that starting from scratch is never silent.
    Raises :class:`StateFileError` when the file is intact but has a different version: guessing
    at another format could skip data, so the operator has to decide.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    try:
        document = _parse_document(raw)
    except ValueError as error:
        log.error("state file %s is damaged and will be ignored: %s", path, error)
        return None
    version = document["version"]
    if version != expected_version:
        raise StateFileError(
            f"state file {path} has format version {version}, this agent reads version "
            f"{expected_version}; move the file away to start from scratch"
        )
    payload: dict[str, Any] = document["payload"]
    return payload


def _parse_document(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise ValueError("top level is not an object")
    version, crc, payload = document.get("version"), document.get("crc32"), document.get("payload")
    if not isinstance(version, int) or not isinstance(crc, int) or not isinstance(payload, dict):
        raise ValueError("missing or mistyped version, crc32 or payload")
    if zlib.crc32(_canonical_json(payload)) != crc:
        raise ValueError("payload checksum mismatch")
    return document


def _canonical_json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
