from __future__ import annotations

import msgpack
import pytest

from agent.messages.record import BadRecordError, Record


def test_round_trip_keeps_everything_the_writer_needs() -> None:
    record = Record("t", b"stream:t", "fields", ["a", "b"], [3, 5], b"abcde", 9, True, "ts")
    back = Record.decode(record.encode(), seq=4, enqueued_ns=11)
    assert (back.topic, back.stream, back.layout, back.message_ids) == (
        "t",
        b"stream:t",
        "fields",
        ["a", "b"],
    )
    assert (back.command(0), back.command(1)) == (b"abc", b"de")
    assert (back.confirm_token, back.tracked, back.timestamp, back.seq, back.enqueued_ns) == (
        9,
        True,
        "ts",
        4,
        11,
    )
    assert back.pending_entries() == [0, 1] and not back.finished


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",
        msgpack.packb([2, "t"]),
        msgpack.packb([1, "t"]),
        msgpack.packb([1, "t", b"s", "jobfirst", ["a"], [3], b"ab", 0, False, ""]),
    ],
)
def test_unreadable_records_are_named_errors(data: bytes) -> None:
    with pytest.raises(BadRecordError):
        Record.decode(data)
