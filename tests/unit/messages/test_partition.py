"""Partitioned topics without a server: which stream each message goes to, and why."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config.tree import TopicConfig
from agent.messages.codec import BodyError, Envelope, envelopes_from
from agent.messages.message import AcceptTime
from agent.messages.partition import PartitionedLayout, layout_for, partition_of
from agent.messages.record import Record
from agent.messages.redis.resp import decode_command
from agent.messages.redis.slots import key_slot, stream_of

AT = AcceptTime.at(1_732_806_245_000_000_000)


def keyed(*keys: str | None) -> list[Envelope]:
    return envelopes_from(
        [{"data": i} if key is None else {"data": i, "key": key} for i, key in enumerate(keys)]
    )


def streams(layout: PartitionedLayout, envelopes: list[Envelope]) -> list[bytes]:
    ids = [f"m{i}" for i in range(len(envelopes))]
    encoded = layout.encode(envelopes, ids, AT)
    starts = [0, *encoded.ends[:-1]]
    got = [stream_of(encoded.blob[a:b]) for a, b in zip(starts, encoded.ends, strict=True)]
    order = encoded.order or range(len(got))
    by_request = [b""] * len(got)
    for entry, index in enumerate(order):
        by_request[index] = got[entry]
    return by_request  # the stream of each message, in the request's order


def test_one_partition_is_the_plain_layout() -> None:
    assert not isinstance(layout_for("t", TopicConfig()), PartitionedLayout)


def test_every_message_with_one_key_goes_to_one_partition_in_order() -> None:
    layout = PartitionedLayout("orders", TopicConfig(partitions=8))
    got = streams(layout, keyed("alice", "bob", "alice", "carol", "alice"))
    assert got[0] == got[2] == got[4] == b"stream:orders:%d" % partition_of("alice", 8)
    assert got[1] == b"stream:orders:%d" % partition_of("bob", 8)
    encoded = layout.encode(keyed("alice", "alice"), ["a", "b"], AT)
    assert encoded.stream == b"stream:orders:%d" % partition_of("alice", 8)  # one stream


def test_the_partition_of_a_key_is_stable_across_processes() -> None:
    # CRC32, not hash() (salted per process): a restarted agent picks the same partition.
    assert partition_of("alice", 8) == zlib.crc32(b"alice") % 8


def test_messages_without_a_key_go_round_robin() -> None:
    layout = PartitionedLayout("t", TopicConfig(partitions=3))
    got = streams(layout, keyed(None, None, None, None, None, None))
    assert sorted(got) == sorted([b"stream:t:0", b"stream:t:1", b"stream:t:2"] * 2)
    assert layout.encode(keyed(None, None), ["a", "b"], AT).stream == b""  # mixed streams


def test_partition_streams_have_no_hash_tag_so_they_spread_over_slots() -> None:
    layout = PartitionedLayout("orders", TopicConfig(partitions=16))
    keys = [part.stream for part in layout.partitions]
    assert all(b"{" not in key for key in keys)
    assert len({key_slot(key) for key in keys}) == 16


def test_the_key_is_kept_as_metadata_partition_key() -> None:
    layout = PartitionedLayout("t", TopicConfig(partitions=2))
    encoded = layout.encode(keyed("alice"), ["m0"], AT)
    fields = decode_command(encoded.blob)
    assert b'"metadata":{"partitionKey":"alice"}' in fields[fields.index(b"data") + 1]


def test_a_dapr_partition_key_header_routes_too() -> None:
    layout = PartitionedLayout("t", TopicConfig(partitions=4))
    envelopes: list[Envelope] = [(None, 1, {"partitionKey": "bob"}, None)]
    assert streams(layout, envelopes) == [b"stream:t:%d" % partition_of("bob", 4)]


def test_a_bad_entry_is_named_by_its_index_in_the_request() -> None:
    layout = PartitionedLayout("t", TopicConfig(partitions=4, layout="fields"))
    good: list[Envelope] = [(None, {"n": i}, None, {"partitionKey": k}) for i, k in enumerate("ab")]
    bad: list[Envelope] = [(None, "not an object", None, {"partitionKey": k}) for k in "cde"]
    with pytest.raises(BodyError) as caught:
        layout.encode([*good, *bad], ["v", "w", "x", "y", "z"], AT)
    assert caught.value.index == 2  # the first bad one, whichever partition it went to
    assert str(caught.value).startswith("entry 2:")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"data": 1, "key": 5}, "key must be a string"),
        ({"data": 1, "key": ""}, "key must be a string"),
        ({"data": 1, "key": "k" * 257}, "key must be a string"),
        ({"data": 1, "key": "a", "metadata": {"partitionKey": "b"}}, "differ"),
    ],
)
def test_a_bad_key_is_a_clear_400(entry: dict[str, object], problem: str) -> None:
    with pytest.raises(BodyError) as caught:
        envelopes_from([{"data": 0}, entry])
    assert caught.value.status == 400
    assert caught.value.index == 1
    assert problem in caught.value.message


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e", None]), min_size=1, max_size=40))
def test_a_request_comes_grouped_by_partition_with_order_kept_per_key(
    keys: list[str | None],
) -> None:
    layout = PartitionedLayout("t", TopicConfig(partitions=4))
    envelopes = keyed(*keys)
    encoded = layout.encode(envelopes, [f"m{i}" for i in range(len(keys))], AT)
    starts = [0, *encoded.ends[:-1]]
    entries = [encoded.blob[a:b] for a, b in zip(starts, encoded.ends, strict=True)]
    order = encoded.order or list(range(len(keys)))
    assert sorted(order) == list(range(len(keys)))  # every message once
    runs = encoded.runs or [(encoded.stream or b"", len(keys))]
    assert sum(count for _, count in runs) == len(keys)
    assert len({stream for stream, _ in runs}) == len(runs)  # one run per partition
    entry = 0
    for stream, count in runs:
        assert {stream_of(command) for command in entries[entry : entry + count]} == {stream}
        group = order[entry : entry + count]
        assert group == sorted(group), "each partition's messages stay in request order"
        entry += count
    for entry, index in enumerate(order):  # each entry is the message order names
        fields = decode_command(entries[entry])
        assert b'"data":%d,' % index in fields[fields.index(b"data") + 1]


def test_a_record_read_back_from_disk_finds_the_same_runs() -> None:
    layout = PartitionedLayout("t", TopicConfig(partitions=3))
    encoded = layout.encode(keyed(None, None, None, None, "x"), ["a", "b", "c", "d", "e"], AT)
    record = Record("t", b"", "jobfirst", ["a", "b", "c", "d", "e"], encoded.ends, encoded.blob)
    assert encoded.runs is not None and len(encoded.runs) == 3
    assert Record.decode(record.encode()).stream_runs() == encoded.runs


def test_messages_without_keys_are_dealt_in_even_runs_that_keep_the_request_order() -> None:
    layout = PartitionedLayout("t", TopicConfig(partitions=12))
    encoded = layout.encode(keyed(*[None] * 1000), [f"m{i}" for i in range(1000)], AT)
    assert encoded.order is None  # slices of the request: nothing reordered
    assert encoded.runs is not None
    assert sorted(count for _, count in encoded.runs) == [83] * 8 + [84] * 4
    assert len({stream for stream, _ in encoded.runs}) == 12
    # The round robin goes on from where the last request left it, a message at a time.
    small = [streams(layout, keyed(None, None, None, None, None)) for _ in range(2)]
    assert len(set(small[0] + small[1])) == 10


def test_a_bad_entry_of_a_request_without_keys_is_named_by_its_index_in_the_request() -> None:
    layout = PartitionedLayout("t", TopicConfig(partitions=4, layout="fields"))
    envelopes: list[Envelope] = [(None, {"n": i}, None, None) for i in range(9)]
    envelopes[6] = (None, "not an object", None, None)  # in the third of four slices
    with pytest.raises(BodyError) as caught:
        layout.encode(envelopes, [f"m{i}" for i in range(9)], AT)
    assert caught.value.index == 6
    assert str(caught.value).startswith("entry 6:")
