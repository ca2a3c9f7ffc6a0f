"""DiskQueue in real processes: kill -9 mid-append, and a write error from the kernel."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from agent.core.diskqueue.queue import DiskQueue, Item

REPO = Path(__file__).resolve().parents[4]

# Four producers append in a loop and print each seq once put() says it is durable.
APPENDER = """
import asyncio, sys
from agent.core.diskqueue.queue import DiskQueue

async def main(directory, run):
    async with DiskQueue(directory, max_bytes=64 << 20, segment_bytes=16 << 10) as queue:
        async def produce(producer):
            index = 0
            while True:
                record = b"%d:%d:%d:" % (run, producer, index) + b"x" * 200
                seq = await queue.put(record)
                print(seq, record.decode(), flush=True)
                index += 1
        await asyncio.gather(*(produce(p) for p in range(4)))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def run_and_kill(directory: Path, run: int, after_lines: int) -> dict[int, bytes]:
    """Start the appender, SIGKILL it after it reported ``after_lines`` durable seqs."""
    process = subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(directory), str(run)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout is not None
    reported: dict[int, bytes] = {}
    try:
        while len(reported) < after_lines:
            line = process.stdout.readline()
            assert line, "appender exited early"
            seq, record = line.split()
            reported[int(seq)] = record
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    return reported


async def read_back(directory: Path) -> list[Item]:
    async with DiskQueue(directory, max_bytes=64 << 20, segment_bytes=16 << 10) as queue:
        items: list[Item] = []
        while batch := await queue.get(1000, timeout=0):
            items += batch
        return items


def test_every_seq_reported_durable_survives_kill_9(tmp_path: Path) -> None:
    durable: dict[int, bytes] = {}
    for run, after_lines in enumerate([150, 400, 50]):
        durable.update(run_and_kill(tmp_path, run, after_lines))
        items = asyncio.run(read_back(tmp_path))
        on_disk = {item.seq: item.data.split(b"x")[0] for item in items}
        missing = [seq for seq in durable if seq not in on_disk]
        assert missing == []
        assert all(on_disk[seq] == record.split(b"x")[0] for seq, record in durable.items())
        # Seqs are dense: nothing vanished in the middle, only an unreported tail may be cut.
        assert [item.seq for item in items] == list(range(len(items)))
    assert len(list(tmp_path.glob("*.seg"))) > 3  # the kills also landed across segment rolls


# The kernel refuses to grow files past RLIMIT_FSIZE (EFBIG), like a full disk would; lifting
# the limit is the space coming back.
FILE_SIZE_LIMITED = """
import asyncio, json, resource, signal, sys, time
from agent.core.diskqueue.queue import DiskQueue, DiskQueueError

async def put_until_accepted(queue, record, seconds):
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await queue.put(record)
        except DiskQueueError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)

async def main(directory):
    queue = DiskQueue(directory, max_bytes=64 << 20, segment_bytes=1 << 20)
    await queue.open()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (48 << 10, resource.RLIM_INFINITY))
    durable, error, failed_index = [], None, None
    for index in range(1000):
        try:
            durable.append(await queue.put(b"%d:" % index + b"x" * 1000))
        except DiskQueueError as raised:
            error, failed_index = str(raised), index
            break
    failed_while_limited = queue.stats().failed
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    after = await put_until_accepted(queue, b"after:" + b"y" * 1000, 10)
    stats = queue.stats()
    await queue.close()
    print(json.dumps({
        "durable": durable, "error": error, "failed_index": failed_index, "after": after,
        "failed_while_limited": failed_while_limited, "failed_after": stats.failed,
        "io_errors": stats.io_errors, "recoveries": stats.recoveries,
    }))

asyncio.run(main(sys.argv[1]))
"""


def test_one_io_error_does_not_disable_the_queue_it_recovers_when_space_returns(
    tmp_path: Path,
) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMITED, str(tmp_path)],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=True,
    )
    report = json.loads(finished.stdout)
    assert "write failed" in report["error"]
    assert "write failed" in report["failed_while_limited"]
    assert report["failed_after"] is None
    assert report["io_errors"] >= 1 and report["recoveries"] >= 1
    assert 40 <= len(report["durable"]) <= 48
    assert b"recovering" in finished.stderr
    items = asyncio.run(read_back(tmp_path))
    # Every put that returned is there, in order; the put that failed is not; the put after
    # the recovery is, right behind the durable ones.
    assert [item.seq for item in items] == [*report["durable"], report["after"]]
    assert all(item.data.startswith(b"%d:" % item.seq) for item in items[:-1])
    assert items[-1].data.startswith(b"after:")
    assert not any(item.data.startswith(b"%d:" % report["failed_index"]) for item in items)
