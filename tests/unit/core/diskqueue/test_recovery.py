"""DiskQueue recovery: torn tails cut at every byte, flipped bytes, damage in older segments."""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.diskqueue.frames import FRAME_OVERHEAD
from agent.core.diskqueue.queue import DiskQueue, Item
from agent.core.diskqueue.segment import HEADER_SIZE

RECORDS = [b"alpha", b"bravo-bravo", b"charlie" * 3]


async def drain(queue: DiskQueue) -> list[Item]:
    items: list[Item] = []
    while batch := await queue.get(1000, timeout=0):
        items += batch
    return items


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def record_ends(records: list[bytes]) -> list[int]:
    """File offset just past each record of a single segment holding ``records``."""
    ends, offset = [], HEADER_SIZE
    for record in records:
        offset += FRAME_OVERHEAD + len(record)
        ends.append(offset)
    return ends


async def write_records(
    directory: Path,
    records: list[bytes],
    max_bytes: int = 1 << 30,
    segment_bytes: int | None = None,
) -> None:
    async with DiskQueue(directory, max_bytes=max_bytes, segment_bytes=segment_bytes) as queue:
        await queue.put_many(records)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pristine")
    asyncio.run(write_records(directory, RECORDS))
    return directory


def copy_of(pristine: Path, tmp_path: Path, name: str) -> tuple[Path, Path]:
    directory = tmp_path / name
    shutil.copytree(pristine, directory)
    (directory / "LOCK").unlink()
    [segment] = segment_files(directory)
    return directory, segment


async def test_cut_at_every_byte_keeps_every_whole_record(pristine: Path, tmp_path: Path) -> None:
    ends = record_ends(RECORDS)
    for cut in range(ends[-1]):
        directory, segment = copy_of(pristine, tmp_path, f"cut{cut}")
        with segment.open("r+b") as handle:
            handle.truncate(cut)
        async with DiskQueue(directory) as queue:
            items = await drain(queue)
            stats = queue.stats()
            whole = sum(1 for end in ends if end <= cut)
            assert [item.data for item in items] == RECORDS[:whole], cut
            clean_boundary = cut == HEADER_SIZE or cut in ends
            assert stats.corrupt_tail_truncations == (0 if clean_boundary else 1), cut
            # The queue goes on: the next record takes the next seq and survives a reopen.
            assert await queue.put(b"after") == whole
        async with DiskQueue(directory) as queue:
            assert [item.data for item in await drain(queue)] == [*RECORDS[:whole], b"after"]
            assert queue.stats().corrupt_tail_truncations == 0


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
async def test_a_flipped_byte_loses_only_its_own_record(
    pristine: Path, tmp_path: Path, data: st.DataObject
) -> None:
    ends = record_ends(RECORDS)
    size = ends[-1]
    position = data.draw(st.integers(0, size - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    directory, segment = copy_of(pristine, tmp_path, f"flip{position}-{flip}-{uuid.uuid4().hex}")
    raw = bytearray(segment.read_bytes())
    raw[position] ^= flip
    segment.write_bytes(bytes(raw))
    async with DiskQueue(directory) as queue:
        items = await drain(queue)
        stats = queue.stats()
    if position < HEADER_SIZE:
        assert items == []
        assert stats.corrupt_tail_truncations == 1
    else:
        damaged = sum(1 for end in ends if end <= position)
        survivors = RECORDS[:damaged] + RECORDS[damaged + 1 :]
        assert [item.data for item in items] == survivors
        assert [item.seq for item in items] == [
            seq for seq in range(len(RECORDS)) if seq != damaged
        ]
        last = damaged == len(RECORDS) - 1  # a bad last frame looks like a torn tail
        assert stats.corrupt_tail_truncations == (1 if last else 0)
        assert stats.corrupt_records == (0 if last else 1)
    assert list((directory / "quarantine").iterdir())  # the damaged bytes were kept aside
    shutil.rmtree(directory)


@pytest.mark.parametrize(
    "where",
    ["marker", "length", "seq", "timestamp", "crc", "payload"],
)
async def test_each_frame_field_is_checked(pristine: Path, tmp_path: Path, where: str) -> None:
    offset_in_frame = {
        "marker": 1,
        "length": 5,
        "seq": 9,
        "timestamp": 17,
        "crc": 25,
        "payload": FRAME_OVERHEAD + 2,
    }
    second_record_start = record_ends(RECORDS)[0]
    directory, segment = copy_of(pristine, tmp_path, where)
    raw = bytearray(segment.read_bytes())
    raw[second_record_start + offset_in_frame[where]] ^= 0x10
    segment.write_bytes(bytes(raw))
    async with DiskQueue(directory) as queue:
        assert [item.data for item in await drain(queue)] == [RECORDS[0], RECORDS[2]]
        assert queue.stats().corrupt_records == 1
    async with DiskQueue(directory) as queue:  # the cut is permanent
        assert [item.data for item in await drain(queue)] == [RECORDS[0], RECORDS[2]]
        assert queue.stats().corrupt_tail_truncations == 0


async def test_a_flipped_bit_in_record_5_of_20_loses_only_record_5(tmp_path: Path) -> None:
    records = [b"record-%02d-" % index + b"z" * 100 for index in range(20)]
    await write_records(tmp_path, records)
    [segment] = segment_files(tmp_path)
    raw = bytearray(segment.read_bytes())
    raw[record_ends(records)[4] + FRAME_OVERHEAD + 3] ^= 0x04
    segment.write_bytes(bytes(raw))
    async with DiskQueue(tmp_path) as queue:
        items = await drain(queue)
        queue.ack_many(item.seq for item in items)
        stats = queue.stats()
        assert stats.depth_items == 0  # the lost seq does not block the frontier
        assert await queue.put(b"next") == 20
    assert [item.data for item in items] == records[:5] + records[6:]
    assert stats.corrupt_records == 1
    [kept] = (tmp_path / "quarantine").iterdir()
    assert b"-05-zzz" in kept.read_bytes()  # the damaged record, for a person to look at


async def several_segments(directory: Path) -> list[bytes]:
    """Fill three or more 4 KiB segments with 1000-byte records; returns the records."""
    records = [bytes([i]) * 1000 for i in range(12)]
    await write_records(directory, records, max_bytes=64 << 10, segment_bytes=4096)
    assert len(segment_files(directory)) >= 3
    return records


async def test_damage_in_an_older_segment_loses_only_the_damaged_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = await several_segments(tmp_path)
    first = segment_files(tmp_path)[0]
    raw = bytearray(first.read_bytes())
    damaged_at = HEADER_SIZE + (FRAME_OVERHEAD + 1000) + FRAME_OVERHEAD + 500
    raw[damaged_at] ^= 0xFF
    first.write_bytes(bytes(raw))
    with caplog.at_level(logging.ERROR):
        async with DiskQueue(tmp_path) as queue:
            items = await drain(queue)
            stats = queue.stats()
            queue.ack_many(item.seq for item in items)
            # The lost seq counts as done, so acking the rest empties the queue.
            assert queue.stats().depth_items == 0
    assert [item.data for item in items] == records[:1] + records[2:]
    assert (stats.corrupt_skips, stats.corrupt_records) == (1, 1)
    assert stats.corrupt_skipped_bytes == FRAME_OVERHEAD + 1000
    assert "skipped" in caplog.text
    assert len(list((tmp_path / "quarantine").iterdir())) == 1
    async with DiskQueue(tmp_path) as queue:
        assert await drain(queue) == []
        assert len(segment_files(tmp_path)) == 1


async def test_a_bad_header_in_an_older_segment_skips_that_segment(tmp_path: Path) -> None:
    records = await several_segments(tmp_path)
    second = segment_files(tmp_path)[1]
    raw = bytearray(second.read_bytes())
    raw[0:6] = b"XXXXXX"
    second.write_bytes(bytes(raw))
    per_segment = (4096 - HEADER_SIZE) // (FRAME_OVERHEAD + 1000)
    async with DiskQueue(tmp_path) as queue:
        items = await drain(queue)
        stats = queue.stats()
    expected = records[:per_segment] + records[2 * per_segment :]
    assert [item.data for item in items] == expected
    assert (stats.corrupt_skips, stats.corrupt_skipped_bytes) == (1, len(raw))


async def test_a_torn_segment_header_is_rewritten(tmp_path: Path) -> None:
    records = await several_segments(tmp_path)
    last = segment_files(tmp_path)[-1]
    last.write_bytes(last.read_bytes()[:10])
    async with DiskQueue(tmp_path) as queue:
        items = await drain(queue)
        assert queue.stats().corrupt_tail_truncations == 1
        next_seq = await queue.put(b"fresh")
    assert next_seq == int(last.stem)
    assert [item.data for item in items] == records[:next_seq]
    async with DiskQueue(tmp_path) as queue:
        assert [item.data for item in await drain(queue)] == [*records[:next_seq], b"fresh"]


async def test_a_damaged_state_file_means_redelivery_not_loss(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path) as queue:
        await queue.put_many([b"a", b"b", b"c"])
        [first] = await queue.get(1)
        queue.ack(first.seq)
    (tmp_path / "frontier.json").write_text("{not json")
    async with DiskQueue(tmp_path) as queue:
        assert [item.data for item in await drain(queue)] == [b"a", b"b", b"c"]


async def test_unrelated_files_in_the_directory_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "123.seg.bak").write_text("old")
    async with DiskQueue(tmp_path) as queue:
        await queue.put(b"x")
    async with DiskQueue(tmp_path) as queue:
        assert [item.data for item in await drain(queue)] == [b"x"]
