"""Reply interpretation without a server: error replies are built as hiredis ReplyError values,
exactly what the parser hands back; a real server cannot be made to interleave them at will."""

from __future__ import annotations

import asyncio

import pytest

from agent.config.tree import RedisConfig, TopicConfig
from agent.messages.layout import TopicLayout
from agent.messages.message import AcceptTime
from agent.messages.record import Record
from agent.messages.redis.connection import RedisTarget
from agent.messages.redis.resp import ReplyError, decode_command
from agent.messages.redis.writer import SentBatch, StreamWriter, classify, error_code, with_idmp

AT = AcceptTime.at(1_732_806_245_000_000_000)


def record(count: int, *, confirm: int = 0, topic: str = "t", maxlen: int = 0) -> Record:
    layout = TopicLayout(topic, TopicConfig(maxlen=maxlen))
    ids = [f"m{i}" for i in range(count)]
    encoded = layout.encode([(None, i, None, None) for i in range(count)], ids, AT)
    return Record(topic, layout.stream, "jobfirst", ids, encoded.ends, encoded.blob, confirm)


def writer(max_attempts: int = 3) -> StreamWriter:
    return StreamWriter(RedisTarget.from_config(RedisConfig()), "producer-1", max_attempts)


def sent(records: list[Record]) -> SentBatch:
    entries = [record.pending_entries() for record in records]
    future: asyncio.Future[list[object]] = asyncio.get_running_loop().create_future()
    return SentBatch(records, entries, sum(map(len, entries)), future, 0.0)


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("LOADING Redis is loading the dataset in memory", "retry"),
        ("BUSY Redis is busy running a script", "retry"),
        ("READONLY You can't write against a read only replica.", "retry"),
        ("MASTERDOWN Link with MASTER is down", "retry"),
        ("CLUSTERDOWN The cluster is down", "retry"),
        ("TRYAGAIN Multiple keys request during rehashing", "retry"),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", "dead"),
        ("ERR The MAXLEN argument must be >= 0.", "dead"),
        ("ERR syntax error", "dead"),
        ("ERR unknown command 'XADD'", "attempts"),
        ("OOM command not allowed when used memory > 'maxmemory'.", "attempts"),
        ("NOPERM this user has no permissions", "attempts"),
        ("something odd", "dead"),  # no code word: Redis's own convention is ERR
    ],
)
def test_classify(reply: str, verdict: str) -> None:
    assert classify(reply) == verdict


def test_error_code() -> None:
    assert error_code("WRONGTYPE Operation") == "WRONGTYPE"
    assert error_code("lowercase words") == "ERR"


def test_with_idmp_puts_the_ids_right_after_the_key() -> None:
    rec = record(1, maxlen=50)
    command = with_idmp(rec.command(0), b"producer-1", b"m0")
    args = decode_command(command)
    assert args[:9] == [
        b"XADD",
        b"stream:t",
        b"IDMP",
        b"producer-1",
        b"m0",
        b"MAXLEN",
        b"~",
        b"50",
        b"*",
    ]
    assert args[9:] == decode_command(rec.command(0))[6:]


async def test_a_clean_batch_finishes_every_record() -> None:
    records = [record(2), record(3)]
    outcome = writer().settle(sent(records), [b"1-0", b"1-1", b"1-2", b"1-3", b"1-4"])
    assert outcome.clean and outcome.written == 5 and outcome.finished == records


async def test_ids_are_kept_for_records_someone_waits_for() -> None:
    rec = record(2, confirm=7)
    writer().settle(sent([rec]), [b"5-0", b"5-1"])
    assert rec.entry_ids == [b"5-0", b"5-1"] and rec.finished


async def test_a_dead_entry_does_not_fail_or_repeat_its_neighbours() -> None:
    rec = record(3)
    outcome = writer().settle(sent([rec]), [b"1-0", ReplyError("WRONGTYPE nope"), b"1-2"])
    assert outcome.written == 2 and outcome.finished == [rec] and not outcome.unfinished
    assert [(dead.index, dead.reason) for dead in outcome.dead] == [(1, "WRONGTYPE")]
    assert rec.failures == {1: "WRONGTYPE nope"}


async def test_retryable_errors_keep_only_the_unwritten_entries() -> None:
    first, second = record(3), record(2)
    loading = ReplyError("LOADING")
    outcome = writer().settle(sent([first, second]), [b"1-0", loading, loading, loading, loading])
    assert outcome.unfinished == [first, second] and outcome.retry_reason == "LOADING"
    assert first.pending == [1, 2] and second.pending == [0, 1]
    # The retry sends only those entries: the one already written is not duplicated.
    again = sent([first, second])
    assert again.entries == [[1, 2], [0, 1]]
    outcome = writer().settle(again, [b"2-0", b"2-1", b"2-2", b"2-3"])
    assert outcome.finished == [first, second] and first.entry_ids == [b"1-0", b"2-0", b"2-1"]


async def test_a_lost_connection_keeps_everything_without_a_reply() -> None:
    records = [record(2), record(2)]
    outcome = writer().settle(sent(records), [b"1-0"], "connection lost: reset")
    assert outcome.connection_failed and outcome.retry_reason == "connection lost: reset"
    assert [r.pending for r in records] == [[1], [0, 1]] and outcome.written == 1


async def test_attempt_limited_errors_are_dead_after_max_attempts() -> None:
    rec = record(1)
    w = writer(max_attempts=3)
    for attempt in range(1, 4):
        outcome = w.settle(sent([rec]), [ReplyError("OOM used memory > maxmemory")])
        if attempt < 3:
            assert outcome.unfinished == [rec] and not outcome.dead
    assert [dead.reason for dead in outcome.dead] == ["OOM"] and outcome.finished == [rec]
