"""DiskQueue under real kernel faults, in a subprocess: a file-size limit (EFBIG) stands in for
a full disk, and lifting it for the space coming back."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from agent.core.diskqueue.queue import DiskQueue, Item

REPO = Path(__file__).resolve().parents[4]

# A caught-up consumer takes records as they are put; puts run into the limit. Every put that
# failed is printed; so is everything the consumer got.
CONSUMER_DURING_FAILURE = """
import asyncio, json, resource, signal, sys, time
from agent.core.diskqueue.queue import DiskQueue, DiskQueueError

async def main(directory):
    queue = DiskQueue(directory, max_bytes=64 << 20, segment_bytes=1 << 20)
    await queue.open()
    received = []

    async def consume():
        while True:
            for item in await queue.get(100):
                received.append(item.data.decode())
                queue.ack(item.seq)

    consumer = asyncio.create_task(consume())
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (32 << 10, resource.RLIM_INFINITY))

    async def put(name):
        try:
            await queue.put(name.encode() + b"|" + b"x" * 700)
            return None
        except DiskQueueError:
            return name

    failed = []
    for round_ in range(60):
        # Concurrent puts share group commits: records of a failed commit sit in memory with
        # the ones that made it, which is where a consumer could see them too early.
        results = await asyncio.gather(*(put(f"r{round_}-{n}") for n in range(4)))
        failed += [name for name in results if name]
        await asyncio.sleep(0)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    await asyncio.sleep(0.5)
    consumer.cancel()
    stats = queue.stats()
    await queue.close()
    print(json.dumps({
        "failed": failed, "received": [r.split("|")[0] for r in received],
        "io_errors": getattr(stats, "io_errors", None),  # None: a queue without the count
        "reservations_refused": getattr(stats, "reservations_refused", None),
    }))

asyncio.run(main(sys.argv[1]))
"""


def run_script(script: str, directory: Path) -> dict[str, object]:
    finished = subprocess.run(
        [sys.executable, "-c", script, str(directory)],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(finished.stdout)
    return result


async def read_all(directory: Path) -> list[Item]:
    async with DiskQueue(directory, max_bytes=64 << 20, segment_bytes=1 << 20) as queue:
        items: list[Item] = []
        while batch := await queue.get(1000, timeout=0):
            items += batch
        return items


def test_a_put_answered_with_an_error_is_never_delivered_not_even_after_a_restart(
    tmp_path: Path,
) -> None:
    report = run_script(CONSUMER_DURING_FAILURE, tmp_path)
    failed = report["failed"]
    received = report["received"]
    assert isinstance(failed, list) and isinstance(received, list)
    assert failed, "the file-size limit never made a put fail"
    assert report["io_errors"]
    # The limit refuses the space reserved ahead first; the appends went on without it.
    assert report["reservations_refused"]
    assert not set(failed) & set(received)
    # Nothing unacked is left but records whose put succeeded; the failed ones are not on disk.
    leftovers = [item.data.split(b"|")[0].decode() for item in asyncio.run(read_all(tmp_path))]
    assert not set(failed) & set(leftovers)
