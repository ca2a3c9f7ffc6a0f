"""DiskQueue's space reserved ahead of the frames: zeros after the last frame are no damage,
a torn frame before them still is, sealed and closed segments are trimmed, and the byte limit
counts frames, never the reservation."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.diskqueue.appender import RESERVE_AHEAD
from agent.core.diskqueue.frames import FRAME_OVERHEAD, encode_frame_head
from agent.core.diskqueue.queue import DiskQueue
from agent.core.diskqueue.segment import HEADER_SIZE, encode_header, scan_segment
from tests.unit.core.diskqueue.test_recovery import RECORDS, drain, segment_files

FRAMES_END = HEADER_SIZE + sum(FRAME_OVERHEAD + len(record) for record in RECORDS)


async def crashed_with_reservation(directory: Path) -> Path:
    """A queue that synced RECORDS and then died without trimming its active segment."""
    queue = DiskQueue(directory)
    await queue.open()
    await queue.put_many(RECORDS)
    await queue.abort()  # as kill -9 leaves it
    [segment] = segment_files(directory)
    return segment


async def closed_cleanly(directory: Path) -> Path:
    async with DiskQueue(directory) as queue:
        await queue.put_many(RECORDS)
    [segment] = segment_files(directory)
    assert segment.stat().st_size == FRAMES_END  # a clean close trims
    return segment


def quarantined(directory: Path) -> list[Path]:
    return sorted((directory / "quarantine").glob("*.bad"))


async def test_a_crash_leaves_reserved_space_that_is_cut_without_a_count(tmp_path: Path) -> None:
    segment = await crashed_with_reservation(tmp_path)
    assert segment.stat().st_size == FRAMES_END + RESERVE_AHEAD  # frames, then the zeros
    async with DiskQueue(tmp_path) as queue:
        assert [item.data for item in await drain(queue)] == RECORDS
        stats = queue.stats()
        assert (stats.corrupt_tail_truncations, stats.corrupt_tail_bytes) == (0, 0)
        assert stats.depth_bytes == FRAMES_END
        assert segment.stat().st_size == FRAMES_END  # cut on open, before appends go on
        assert await queue.put(b"delta") == len(RECORDS)
    assert quarantined(tmp_path) == []
    async with DiskQueue(tmp_path) as queue:
        assert [item.data for item in await drain(queue)] == [*RECORDS, b"delta"]


@pytest.mark.parametrize("zeros", [1, FRAME_OVERHEAD - 1, FRAME_OVERHEAD + 7, 4096, 1 << 20])
async def test_zeros_of_any_length_after_the_last_frame_are_reserved_space(
    tmp_path: Path, zeros: int
) -> None:
    segment = await closed_cleanly(tmp_path)
    with segment.open("ab") as handle:
        handle.write(bytes(zeros))
    async with DiskQueue(tmp_path) as queue:
        assert [item.data for item in await drain(queue)] == RECORDS
        assert queue.stats().corrupt_tail_truncations == 0
    assert quarantined(tmp_path) == []
    assert segment.stat().st_size == FRAMES_END


@pytest.mark.parametrize("torn_at", [1, 4, FRAME_OVERHEAD - 1, FRAME_OVERHEAD + 3])
async def test_a_torn_frame_before_the_zeros_is_still_a_torn_tail(
    tmp_path: Path, torn_at: int
) -> None:
    segment = await crashed_with_reservation(tmp_path)
    payload = b"torn-record-payload"
    frame = encode_frame_head(payload, len(RECORDS), 1) + payload
    with segment.open("r+b") as handle:
        handle.seek(FRAMES_END)
        handle.write(frame[:torn_at])  # into the reserved space: the rest stays zeros
    async with DiskQueue(tmp_path) as queue:
        assert [item.data for item in await drain(queue)] == RECORDS
        stats = queue.stats()
        assert stats.corrupt_tail_truncations == 1
        # What was on disk of the frame, not the reserved zeros after it.
        assert stats.corrupt_tail_bytes == len(frame[:torn_at].rstrip(b"\0"))
    [copy] = quarantined(tmp_path)
    assert copy.read_bytes() == frame[:torn_at].rstrip(b"\0")
    assert segment.stat().st_size == FRAMES_END


async def test_a_new_segment_reserved_before_its_header_reached_the_disk(tmp_path: Path) -> None:
    """A crash mid-reservation: the new segment's size is durable, its header is not (the
    segment before it was trimmed and synced before the new one was created)."""
    segment = await closed_cleanly(tmp_path)
    following = segment.with_name(f"{len(RECORDS):020d}.seg")
    following.write_bytes(bytes(64 << 10))
    async with DiskQueue(tmp_path) as queue:
        assert [item.data for item in await drain(queue)] == RECORDS
        assert queue.stats().corrupt_tail_truncations == 0
        assert await queue.put(b"delta") == len(RECORDS)
    assert quarantined(tmp_path) == []
    assert following.read_bytes()[:HEADER_SIZE] != bytes(HEADER_SIZE)
    async with DiskQueue(tmp_path) as queue:
        assert [item.data for item in await drain(queue)] == [*RECORDS, b"delta"]


async def test_a_new_segment_with_its_header_and_reserved_space_only(tmp_path: Path) -> None:
    segment = await closed_cleanly(tmp_path)
    following = segment.with_name(f"{len(RECORDS):020d}.seg")
    following.write_bytes(encode_header(len(RECORDS), 1) + bytes(8192))
    async with DiskQueue(tmp_path) as queue:
        assert [item.data for item in await drain(queue)] == RECORDS
        assert queue.stats().corrupt_tail_truncations == 0
        assert queue.stats().depth_bytes == FRAMES_END + HEADER_SIZE
    assert following.stat().st_size == HEADER_SIZE
    assert quarantined(tmp_path) == []


async def test_sealed_segments_are_trimmed_and_the_limit_counts_frames(tmp_path: Path) -> None:
    record = b"s" * 1000
    frame = FRAME_OVERHEAD + len(record)  # 15 a segment
    async with DiskQueue(tmp_path, max_bytes=64 << 10, segment_bytes=16 << 10) as queue:
        await queue.put_many([record] * 40)
        *sealed, active = segment_files(tmp_path)
        assert len(sealed) == 2
        for path in sealed:
            assert path.stat().st_size == scan_segment(path, int(path.stem)).good_end
        assert active.stat().st_size == 16 << 10  # reserved up to the segment limit
        frames = sum(scan_segment(p, int(p.stem)).good_end for p in segment_files(tmp_path))
        assert queue.stats().depth_bytes == frames == 3 * HEADER_SIZE + 40 * frame
        # The files take 46 KiB with the reservation; 20 KiB more fit the 64 KiB limit only
        # if it counts frames (else the put would block, then fail).
        on_disk = sum(path.stat().st_size for path in segment_files(tmp_path))
        assert on_disk == 2 * (HEADER_SIZE + 15 * frame) + (16 << 10)
        assert on_disk + 20 * frame > 64 << 10
        await queue.put_many([record] * 20)
        assert queue.stats().depth_bytes == 4 * HEADER_SIZE + 60 * frame
    sizes = sum(path.stat().st_size for path in segment_files(tmp_path))
    assert sizes == 4 * HEADER_SIZE + 60 * frame


async def test_reopening_after_a_crash_accounts_the_same_bytes(tmp_path: Path) -> None:
    directory = tmp_path / "queue"
    queue = DiskQueue(directory, max_bytes=64 << 10, segment_bytes=16 << 10)
    await queue.open()
    await queue.put_many([b"x" * 700] * 30)
    before = queue.stats().depth_bytes
    await queue.abort()
    assert sum(path.stat().st_size for path in segment_files(directory)) > before
    async with DiskQueue(directory, max_bytes=64 << 10, segment_bytes=16 << 10) as reopened:
        assert reopened.stats().depth_bytes == before
        assert len(await drain(reopened)) == 30
