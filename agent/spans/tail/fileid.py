"""Which file is which: device + inode + a fingerprint of the file's first line.

A path is not an identity (rotation moves names around) and neither is an inode alone (a
deleted file's inode is reused by the next file created). The key used for checkpoints is
``"<dev>:<inode>:<fingerprint>"``, where the fingerprint is a hash of the first line, newline
included, or of the first ``FINGERPRINT_BYTES`` bytes when the first line is longer than that.

Hashing the first line rather than "the first N bytes" keeps the identity stable while the file
grows: once the first newline (or byte N) is written, those bytes never change in an append-only
file. Until then the file has no complete line and so nothing to read or checkpoint, and its
identity is simply not settled yet (``read_fingerprint`` returns None). A file that is truncated
in place (copytruncate) gets its fingerprint recomputed from its new content.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

FINGERPRINT_BYTES = 1024


@dataclass(frozen=True, slots=True)
class FileIdentity:
    dev: int
    inode: int
    fingerprint: str
    """Hex digest of the first line (newline included) or of the first FINGERPRINT_BYTES bytes."""

    @property
    def key(self) -> str:
        """Stable string naming this file in checkpoints, across renames and restarts."""
        return f"{self.dev}:{self.inode}:{self.fingerprint}"


def parse_key(key: str) -> tuple[int, int, str] | None:
    """The (dev, inode, fingerprint) of a key made by FileIdentity.key; None if it is not one."""
    parts = key.split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return int(parts[0]), int(parts[1]), parts[2]


def fingerprint_of(head: bytes) -> str:
    return hashlib.blake2b(head, digest_size=8).hexdigest()


def settled_head(head: bytes, *, final: bool = False) -> bytes | None:
    """The bytes that fingerprint a file whose first bytes are ``head`` (at most
    FINGERPRINT_BYTES long), or None while they may still change. ``final`` is for a file that
    will not grow any more (let go after rotation): whatever it holds is its head."""
    newline = head.find(b"\n")
    if newline >= 0:
        return head[: newline + 1]
    if len(head) >= FINGERPRINT_BYTES or final:
        return head[:FINGERPRINT_BYTES]
    return None


def read_fingerprint(fd: int, *, final: bool = False) -> str | None:
    """Fingerprint of the open file ``fd``, or None while its first line is incomplete."""
    head = settled_head(os.pread(fd, FINGERPRINT_BYTES, 0), final=final)
    return None if head is None else fingerprint_of(head)
