"""DiskQueue under kill -9: every seq a real process reported durable survives."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from agent.core.diskqueue import DiskQueue, Item

REPO = Path(__file__).resolve().parents[2]

# Four producers append in a loop and print each seq once put() says it is durable.
APPENDER = """
import asyncio, sys
from agent.core.diskqueue import DiskQueue

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
