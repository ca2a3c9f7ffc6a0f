from __future__ import annotations

import orjson

from agent.messages.record import Record
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
