"""Hash slots as Redis computes them: the check values come from the Redis Cluster spec and
from `CLUSTER KEYSLOT` on a real server."""

from __future__ import annotations

import pytest

from agent.messages.redis.resp import encode_command
from agent.messages.redis.slots import crc16, hashed_part, key_slot, stream_of


def test_crc16_matches_the_specs_check_value() -> None:
    assert crc16(b"123456789") == 0x31C3


@pytest.mark.parametrize(
    ("key", "slot"),
    [
        (b"foo", 12182),
        (b"user1000", 3443),
        (b"{user1000}.following", 3443),  # the hash tag decides
        (b"foo{}{bar}", 8363),  # an empty tag does not count
        (b"stream:orders:0", 3785),
        (b"stream:orders:1", 7912),
    ],
)
def test_key_slot_agrees_with_cluster_keyslot(key: bytes, slot: int) -> None:
    assert key_slot(key) == slot


def test_an_empty_hash_tag_hashes_the_whole_key() -> None:
    assert hashed_part(b"foo{}{bar}") == b"foo{}{bar}"
    assert hashed_part(b"foo{{bar}}zap") == b"{bar"
    assert hashed_part(b"a{b}c{d}") == b"b"


def test_stream_of_reads_the_key_of_an_encoded_command() -> None:
    args = [b"XADD", b"stream:a b\r\nc", b"MAXLEN", b"~", b"10", b"*", b"f", b"v"]
    command = encode_command(args)
    assert stream_of(command) == b"stream:a b\r\nc"
