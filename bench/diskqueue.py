"""Disk queue throughput: group commit against an fsync per append, and drain rate.

    python bench/diskqueue.py [--dir PATH] [--seconds 2] [--parts rate,latency,drain]
                              [--rounds 3] [--appends 2000]

  rate     durable appends/s: one producer (an fdatasync each), group commit, batches
  latency  one durable put at a time, 1 KiB: p50/p99 of the put, and CPU per commit (the
           process, and the writer thread alone), beside the disk's own append + fdatasync
           of the same bytes (O_APPEND write, no queue), interleaved round by round
  drain    get + ack of a backlog reopened from disk

Every figure comes from the same run on the same disk. ``--dir`` picks the filesystem to
measure (default: a temporary directory under the current one, so the data dir's disk).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import threading
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


def thread_cpu_ns(name_prefix: str) -> int:
    """CPU time the kernel charged to the (first) thread named ``name_prefix...``."""
    for thread in threading.enumerate():
        if thread.name.startswith(name_prefix) and thread.native_id is not None:
            with open(f"/proc/self/task/{thread.native_id}/schedstat") as handle:
                return int(handle.read().split()[0])
    return 0


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)]


async def put_latency(root: Path, record: bytes, appends: int) -> dict[str, float]:
    """One durable put at a time: latency percentiles (µs), CPU µs per commit."""
    async with fresh_queue(root, "latency") as queue:
        await queue.put(record)  # the segment exists and the thread runs
        latencies = []
        cpu, writer = time.process_time_ns(), thread_cpu_ns("diskqueue-writer")
        commits = queue.stats().fsyncs
        for _ in range(appends):
            started = time.perf_counter()
            await queue.put(record)
            latencies.append(time.perf_counter() - started)
        commits = queue.stats().fsyncs - commits
        cpu, writer = time.process_time_ns() - cpu, thread_cpu_ns("diskqueue-writer") - writer
    p50, p99 = percentiles(latencies)
    return {
        "p50": p50 * 1e6,
        "p99": p99 * 1e6,
        "cpu": cpu / commits / 1e3,
        "writer": writer / commits / 1e3,
    }


def disk_latency(root: Path, record: bytes, appends: int) -> dict[str, float]:
    """The disk's own append + fdatasync of the same bytes: what a durable put cannot beat."""
    path = root / "bare-append"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    try:
        latencies = []
        cpu = time.process_time_ns()
        for _ in range(appends):
            started = time.perf_counter()
            os.write(fd, record)
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - started)
        cpu = time.process_time_ns() - cpu
    finally:
        os.close(fd)
        path.unlink()
    p50, p99 = percentiles(latencies)
    return {"p50": p50 * 1e6, "p99": p99 * 1e6, "cpu": cpu / appends / 1e3, "writer": 0.0}


async def latency(root: Path, rounds: int, appends: int) -> None:
    record = b"r" * 1024
    runs: dict[str, list[dict[str, float]]] = {"queue put": [], "disk alone": []}
    for _ in range(rounds):
        runs["queue put"].append(await put_latency(root, record, appends))
        runs["disk alone"].append(disk_latency(root, record, appends))
    print(
        f"one durable 1 KiB put at a time, {appends:,} a round, {rounds} rounds (median of rounds)"
    )
    for name, results in runs.items():
        round_p50s = " ".join(f"{run['p50']:.0f}" for run in results)
        figures = {
            key: sorted(run[key] for run in results)[len(results) // 2] for key in results[0]
        }
        print(
            f"  {name:<10}  p50 {figures['p50']:6.0f} µs  p99 {figures['p99']:6.0f} µs"
            f"  CPU {figures['cpu']:5.1f} µs/commit (writer thread {figures['writer']:5.1f})"
            f"   rounds p50: {round_p50s}"
        )
    print()


async def main(root: Path, args: argparse.Namespace) -> None:
    seconds = args.seconds
    print(f"disk queue bench in {root} (pid {os.getpid()}), {seconds:.1f}s per append run\n")
    parts = args.parts.split(",")
    if "latency" in parts:
        await latency(root, args.rounds, args.appends)
    if "rate" in parts:
        await rates(root, seconds)
    if "drain" in parts:
        await drains(root)


async def rates(root: Path, seconds: float) -> None:
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
    print_rows(rows)
    print(f"\ngroup commit vs fsync per append: {grouped / single:.1f}x\n")


async def drains(root: Path) -> None:
    rows: list[tuple[str, str, str]] = []
    for size, total in ((100, 32 * MIB), (4096, 256 * MIB), (64 << 10, 512 * MIB)):
        rate, mbps, count = await drain_rate(root, b"d" * size, total)
        rows.append(
            (f"drain get(512)+ack, {size} B x {count:,}", f"{rate:,.0f} rec/s", f"{mbps:,.0f} MB/s")
        )
    print_rows(rows)


def print_rows(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(row[0]) for row in rows)
    for name, rate_text, extra in rows:
        print(f"{name:<{width}}  {rate_text:>16}  {extra}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--parts", default="latency,rate,drain", help="which parts to run")
    parser.add_argument("--rounds", type=int, default=3, help="latency: interleaved rounds")
    parser.add_argument("--appends", type=int, default=2000, help="latency: puts a round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dq-bench-", dir=args.dir or Path.cwd()) as temp:
        asyncio.run(main(Path(temp), args))
