"""Disk queue throughput: group commit against an fsync per append, and drain rate.

    python bench/diskqueue.py [--dir PATH] [--seconds 2]

Every figure comes from the same run on the same disk. ``--dir`` picks the filesystem to
measure (default: a temporary directory under the current one, so the data dir's disk).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from agent.core.diskqueue.queue import DiskQueue

MIB = 1 << 20


def fresh_queue(root: Path, name: str) -> DiskQueue:
    directory = root / name
    shutil.rmtree(directory, ignore_errors=True)
    return DiskQueue(directory, max_bytes=4 << 30)


async def timed(seconds: float, producers: int, work: Callable[[], Awaitable[int]]) -> float:
    """Run ``producers`` loops of ``work`` for about ``seconds``; returns records per second."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            finished = await work()  # not `done += await ...`: that reads `done` before awaiting
            done += finished

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(producers)))
    return done / (time.perf_counter() - started)


async def append_rate(
    root: Path, record: bytes, producers: int, batch: int, seconds: float
) -> tuple[float, int, int]:
    """Durable appends/s with ``producers`` concurrent callers, ``batch`` records per call."""
    async with fresh_queue(root, f"append-{producers}-{batch}-{len(record)}") as queue:
        records = [record] * batch

        async def one_call() -> int:
            if batch == 1:
                await queue.put(record)
            else:
                await queue.put_many(records)
            return batch

        rate = await timed(seconds, producers, one_call)
        stats = queue.stats()
    return rate, stats.appends, stats.fsyncs


async def drain_rate(root: Path, record: bytes, total_bytes: int) -> tuple[float, float, int]:
    """Fill a backlog, reopen, and time get + ack of all of it: (records/s, MB/s, records)."""
    directory = root / f"drain-{len(record)}"
    shutil.rmtree(directory, ignore_errors=True)
    count = total_bytes // len(record)
    async with DiskQueue(directory, max_bytes=4 << 30) as queue:
        chunk = max(1, MIB // len(record))
        for start in range(0, count, chunk):
            await queue.put_many([record] * min(chunk, count - start), durable=False)
    async with DiskQueue(directory, max_bytes=4 << 30) as queue:
        started = time.perf_counter()
        got = 0
        while batch := await queue.get(512, timeout=0):
            got += len(batch)
            queue.ack_many([item.seq for item in batch])
        elapsed = time.perf_counter() - started
    assert got == count, (got, count)
    return got / elapsed, got * len(record) / elapsed / 1e6, got


async def main(root: Path, seconds: float) -> None:
    print(f"disk queue bench in {root} (pid {os.getpid()}), {seconds:.1f}s per append run\n")
    rows: list[tuple[str, str, str]] = []
    record = b"r" * 1024
    single, _appends, single_fsyncs = await append_rate(root, record, 1, 1, seconds)
    rows.append(
        ("1 producer, fsync per append, 1 KiB", f"{single:,.0f} rec/s", f"{single_fsyncs:,} fsyncs")
    )
    grouped, appends, fsyncs = await append_rate(root, record, 64, 1, seconds)
    rows.append(
        (
            "64 producers, group commit, 1 KiB",
            f"{grouped:,.0f} rec/s",
            f"{appends / max(fsyncs, 1):,.0f} appends/fsync",
        )
    )
    batched, appends, fsyncs = await append_rate(root, record, 16, 100, seconds)
    rows.append(
        (
            "16 producers x put_many(100), 1 KiB",
            f"{batched:,.0f} rec/s",
            f"{appends / max(fsyncs, 1):,.0f} appends/fsync",
        )
    )
    big = b"b" * (16 << 10)
    big_rate, _appends, _fsyncs = await append_rate(root, big, 16, 8, seconds)
    rows.append(
        (
            "16 producers x put_many(8), 16 KiB",
            f"{big_rate:,.0f} rec/s",
            f"{big_rate * len(big) / 1e6:,.0f} MB/s",
        )
    )
    for size, total in ((100, 32 * MIB), (4096, 256 * MIB), (64 << 10, 512 * MIB)):
        rate, mbps, count = await drain_rate(root, b"d" * size, total)
        rows.append(
            (f"drain get(512)+ack, {size} B x {count:,}", f"{rate:,.0f} rec/s", f"{mbps:,.0f} MB/s")
        )
    width = max(len(row[0]) for row in rows)
    for name, rate_text, extra in rows:
        print(f"{name:<{width}}  {rate_text:>16}  {extra}")
    print(f"\ngroup commit vs fsync per append: {grouped / single:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dq-bench-", dir=args.dir or Path.cwd()) as temp:
        asyncio.run(main(Path(temp), args.seconds))
