from __future__ import annotations

import asyncio

import pytest

from agent.messages.redis.resp import (
    ConnectionLostError,
    ReplyError,
    _RespProtocol,
    decode_command,
    encode_command,
)


class TransportDouble(asyncio.Transport):
    """Stands in for a socket so replies can arrive split at every byte, which a real server
    on loopback cannot be made to do on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted


def protocol() -> tuple[_RespProtocol, TransportDouble]:
    proto = _RespProtocol()
    transport = TransportDouble()
    proto.connection_made(transport)
    return proto, transport


def test_commands_are_length_prefixed_bulk_strings() -> None:
    command = encode_command([b"XADD", b"k", b"*", b"f", b"a\r\nb"])
    assert command == b"*5\r\n$4\r\nXADD\r\n$1\r\nk\r\n$1\r\n*\r\n$1\r\nf\r\n$4\r\na\r\nb\r\n"
    assert decode_command(command) == [b"XADD", b"k", b"*", b"f", b"a\r\nb"]
    with pytest.raises(ValueError, match="exactly one"):
        decode_command(command + command)


async def test_replies_split_anywhere_go_to_their_batches_in_order() -> None:
    proto, _ = protocol()
    first, second = proto.expect(2), proto.expect(1)
    wire = b"$3\r\n1-0\r\n-WRONGTYPE bad\r\n$3\r\n2-0\r\n"
    for index in range(len(wire)):
        proto.data_received(wire[index : index + 1])
    (written, failed), (other,) = first.result(), second.result()
    assert written == b"1-0" and isinstance(failed, ReplyError) and other == b"2-0"
    assert str(failed) == "WRONGTYPE bad"


async def test_a_lost_connection_fails_pending_batches_with_the_replies_that_came() -> None:
    proto, _ = protocol()
    first, second = proto.expect(3), proto.expect(1)
    proto.data_received(b"$3\r\n1-0\r\n")
    proto.connection_lost(ConnectionResetError("reset"))
    with pytest.raises(ConnectionLostError) as caught:
        first.result()
    assert caught.value.replies == [b"1-0"]
    assert second.exception() is not None
    late = proto.expect(1)  # after the loss: fails at once, nothing is written
    assert isinstance(late.exception(), ConnectionLostError)


async def test_garbage_or_unasked_replies_drop_the_connection() -> None:
    proto, transport = protocol()
    proto.data_received(b"+OK\r\n")  # nobody asked
    assert transport.aborted and "no command asked" in (proto.closed_reason or "")
    proto, transport = protocol()
    pending = proto.expect(1)
    proto.data_received(b"!!garbage\r\n")
    assert transport.aborted and "protocol error" in (proto.closed_reason or "")
    proto.connection_lost(None)
    assert isinstance(pending.exception(), ConnectionLostError)
