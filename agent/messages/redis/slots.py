"""Which of Redis Cluster's 16384 hash slots a key lives in, and which stream key an XADD names.

The slot is CRC16 (XMODEM: polynomial 0x1021, initial value 0) of the key modulo 16384, where a
key holding a non-empty `{...}` hashes only what is between the first `{` and the next `}`
(a hash tag). Computed here from the published definition: it is a few lines, and importing
redis-py for it would cost the agent its RSS.
"""

from __future__ import annotations

import functools

SLOTS = 16_384


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_TABLE = _crc16_table()


def crc16(data: bytes) -> int:
    crc = 0
    table = _TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


def hashed_part(key: bytes) -> bytes:
    """The part of `key` the slot is computed from (the hash tag, if the key has one)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


@functools.lru_cache(maxsize=4096)  # stream keys repeat batch after batch; bounded
def key_slot(key: bytes) -> int:
    return crc16(hashed_part(key)) % SLOTS


def stream_of(command: bytes) -> bytes:
    """The key of one encoded command (`*n $len XADD $len key ...`): its second argument."""
    first = command.index(b"\r\n")  # end of *n
    first = command.index(b"\r\n", first + 2)  # end of $len (of the command name)
    name_end = command.index(b"\r\n", first + 2)  # end of the command name
    size_end = command.index(b"\r\n", name_end + 2)
    size = int(command[name_end + 3 : size_end])
    return command[size_end + 2 : size_end + 2 + size]
