from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.config.tree import RedisConfig
from agent.core.deadletter import DeadLetterFile
from agent.core.diskqueue.queue import DiskQueue
from agent.core.metrics import Metrics
from agent.core.retry import RetryPolicy
from agent.messages.deadletters import MessageDeadLetters
from agent.messages.record import Record
from agent.messages.redis.connection import RedisTarget, ServerInfo
from agent.messages.redis.replay import (
    CLOCK_SLACK_MS,
    FORWARD_MARGIN,
    MAX_LOOKBACK,
    ids_in_tail,
    lookback,
    lookups,
    mark_found,
    message_id_of,
)
from agent.messages.redis.writer import StreamWriter
from agent.messages.sender import SenderLimits, StreamSender


def entry(entry_id: bytes, message_id: str) -> list[object]:
    data = orjson.dumps({"id": message_id, "topic": "t", "data": 1})
    return [entry_id, [b"data", data, b"topic", b"t"]]


def test_message_ids_per_layout() -> None:
    assert message_id_of("jobfirst", [b"data", b'{"id":"m1"}', b"topic", b"t"]) == "m1"
    assert message_id_of("fields", [b"message_id", b"m2", b"a", b"1"]) == "m2"
    assert message_id_of("raw", [b"body", b'{"id":"m3"}']) is None
    assert message_id_of("jobfirst", [b"data", b"not json"]) is None  # another producer's entry


def test_ids_in_tail_keeps_the_newest_entry_of_an_id() -> None:
    reply = [entry(b"3-0", "b"), entry(b"2-0", "a"), entry(b"1-0", "b"), [b"bad"]]
    assert ids_in_tail("jobfirst", reply) == {"b": b"3-0", "a": b"2-0"}
    assert ids_in_tail("jobfirst", None) == {}


def test_only_entries_actually_found_are_marked_written() -> None:
    record = Record("t", b"stream:t", "jobfirst", ["a", "b", "c"], [1, 2, 3], b"xyz")
    record.uncertain = {0, 1, 2}
    assert mark_found([record], {"a": b"1-0", "c": b"1-2"}) == 2
    # "c" being there does not make "b" written: an error reply may have refused it.
    assert record.pending == [1] and record.entry_ids == [b"1-0", None, b"1-2"]
    assert record.uncertain is None


def test_lookback_grows_with_the_uncertain_entries_and_is_capped() -> None:
    assert lookback(10) == 220 and lookback(10**6) == MAX_LOOKBACK


def test_the_forward_read_starts_a_little_before_the_oldest_record_was_queued() -> None:
    old = Record("t", b"s", "jobfirst", ["a", "b"], [1, 2], b"xy", enqueued_ns=5_000_000_000)
    new = Record("t", b"s", "jobfirst", ["c"], [1], b"z", enqueued_ns=9_000_000_000)
    old.uncertain, new.uncertain = {0, 1}, {0}
    found = lookups([new, old])
    assert list(found) == [b"s"] and found[b"s"].wanted == {"a", "b", "c"}
    start, count = found[b"s"].forward_range()
    assert start == b"%d" % (5_000 - CLOCK_SLACK_MS)
    assert count == b"%d" % (2 * 3 + FORWARD_MARGIN)
    assert found[b"s"].tail_count() == b"%d" % lookback(3)


class MasterReadsConnectionDouble:
    """Stands in for the connection to a master whose stream already holds the entries of a
    batch whose WAIT failed (written there, on no replica yet): every read answers them.
    A real cluster shows this only by chance, when a replica lags past `redis.wait_timeout`."""

    def __init__(self, entries: list[list[object]]) -> None:
        self.entries = entries
        self.commands: list[bytes] = []

    async def call(self, *args: bytes) -> Any:
        self.commands.append(args[0])
        return self.entries


def sender_over(
    tmp_path: Path, master: MasterReadsConnectionDouble, wait_replicas: int
) -> tuple[StreamSender, list[Record]]:
    metrics = Metrics()
    writer = StreamWriter(
        RedisTarget.from_config(RedisConfig()), "producer-1", 3, wait_replicas=wait_replicas
    )
    writer.connection = master  # type: ignore[assignment]
    writer.server = ServerInfo((7, 0, 15))  # no IDMP: the lookup decides what is resent
    finished: list[Record] = []
    dead_letters = MessageDeadLetters(
        DeadLetterFile(tmp_path / "dead.jsonl", 1 << 20, metrics, "messages"), writer, metrics
    )
    sender = StreamSender(
        DiskQueue(tmp_path / "queue"),  # never opened: acks are no-ops
        writer,
        dead_letters,
        on_finished=finished.append,
        policy=RetryPolicy(),
        limits=SenderLimits(100, 1 << 20, 0.001, 1, 1.0),
        metrics=metrics,
    )
    return sender, finished


@pytest.mark.parametrize(("wait_replicas", "resent"), [(0, []), (1, [0, 1])])
async def test_an_entry_found_on_the_master_counts_as_written_only_without_wait_replicas(
    tmp_path: Path, wait_replicas: int, resent: list[int]
) -> None:
    master = MasterReadsConnectionDouble([entry(b"2-0", "b"), entry(b"1-0", "a")])
    sender, finished = sender_over(tmp_path, master, wait_replicas)
    record = Record("t", b"stream:t", "jobfirst", ["a", "b"], [1, 2], b"xy")
    record.uncertain = {0, 1}

    to_send = await sender._skip_already_written([record])

    # Without WAIT the master's copy is the write. With it, acking on the master's copy would
    # lose both entries if the master died before its replica had them: they go out again,
    # and the resend's WAIT confirms them.
    assert [r.pending_entries() for r in to_send] == ([resent] if resent else [])
    assert finished == ([] if resent else [record])
    assert sender.replays_skipped == 2 - len(resent)
    assert master.commands == ([] if resent else [b"XREVRANGE"])
