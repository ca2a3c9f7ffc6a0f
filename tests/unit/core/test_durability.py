"""Durability of what an acknowledgement depends on, checked on the syscalls themselves.

Each script runs under strace and prints ``ACK <n>`` once it has acknowledged something; the
trace must show, before every ACK, the fsync of each file written and of each directory whose
entries changed (new files, renames, new directories). The crash test goes further: it replays
the trace to every sync point, keeping only what was fsync'd, and opens the queue there.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import pytest

from agent.core.diskqueue.queue import DiskQueue, Item
from tests.harness.syscall_trace import (
    DurableDisk,
    Event,
    durable_view,
    parse,
    run_traced,
    strace_available,
)

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.skipif(not strace_available(), reason="needs strace")

DEAD_LETTERS = """
import asyncio, os, sys
from pathlib import Path
from agent.core.deadletter import DeadLetterFile
from agent.core.metrics import Metrics

async def main(root):
    # Two directories that do not exist yet, and a limit that rotates every second write.
    file = DeadLetterFile(Path(root) / "new" / "deeper" / "dead.jsonl", 300, Metrics(), "test")
    for index in range(6):
        await file.write_many([{"reason": "bad", "raw": "x" * 120, "n": index}])
        os.write(1, b"ACK %d\\n" % index)

asyncio.run(main(sys.argv[1]))
"""

QUEUE = """
import asyncio, os, sys
from pathlib import Path
from agent.core.diskqueue.queue import DiskQueue

async def main(root):
    directory = Path(root) / "new" / "queue"
    async with DiskQueue(directory, max_bytes=1 << 20, segment_bytes=4096) as queue:
        async def produce(producer):
            for index in range(15):
                seq = await queue.put(b"%d-%d:" % (producer, index) + b"q" * 300)
                os.write(1, b"ACK %d\\n" % seq)
        await asyncio.gather(*(produce(p) for p in range(3)))

asyncio.run(main(sys.argv[1]))
"""


def trace(script: str, root: Path, log: Path) -> list[Event]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run_traced([sys.executable, "-c", script, str(root)], log, env=env, timeout=120)
    return parse(log)


def unsynced_at_each_ack(events: list[Event], root: Path) -> dict[int, list[str]]:
    disk = DurableDisk(str(root))
    found: dict[int, list[str]] = {}
    for event in events:
        if event.call == "ack":
            found[event.ack] = disk.unsynced()
        else:
            disk.apply(event)
    return found


def test_dead_letter_files_renames_and_new_directories_are_fsynced_before_the_ack(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    events = trace(DEAD_LETTERS, root, tmp_path / "trace.log")
    at_ack = unsynced_at_each_ack(events, root)
    assert sorted(at_ack) == list(range(6))
    assert any(event.call == "rename" for event in events), "the file never rotated"
    assert at_ack == {index: [] for index in range(6)}


def test_the_queue_directory_and_each_new_segment_are_fsynced_before_the_ack(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    events = trace(QUEUE, root, tmp_path / "trace.log")
    queue_dir = root / "new" / "queue"
    disk = DurableDisk(str(root))
    acks = 0
    for event in events:
        if event.call != "ack":
            disk.apply(event)
            continue
        acks += 1
        # The directories, and the segment holding the acked seq: named and synced for good.
        assert all(disk.dirs_durable.values()), (event.ack, disk.dirs_durable)
        segments = sorted(p for p in disk.files if p.endswith(".seg"))
        holder = [p for p in segments if int(Path(p).stem) <= event.ack][-1]
        assert disk.survives(holder), (event.ack, holder)
        assert disk.files[holder].synced_size > 0  # its bytes: see the crash test below
    assert acks == 45
    assert len(list(queue_dir.glob("*.seg"))) > 3  # acks across segment rolls
    calls = {event.call for event in events}
    # Segments are written at offsets (Python's pwritev is pwritev2 on glibc), into space
    # reserved ahead.
    assert {"pwritev", "pwritev2"} & calls and "fallocate" in calls, calls


async def read_all(directory: Path) -> list[Item]:
    async with DiskQueue(directory, max_bytes=1 << 20, segment_bytes=4096) as queue:
        items: list[Item] = []
        while batch := await queue.get(1000, timeout=0):
            items += batch
        return items


def test_every_acked_record_survives_a_crash_at_every_sync_point(tmp_path: Path) -> None:
    """Cut the run after each fsync (and right before each ACK), drop every unsynced write
    and directory change, and open the queue there: every seq acked before the cut is read
    back with its bytes."""
    root = tmp_path / "root"
    root.mkdir()
    events = trace(QUEUE, root, tmp_path / "trace.log")
    final = {item.seq: item.data for item in asyncio.run(read_all(root / "new" / "queue"))}
    disk = DurableDisk(str(root))
    acked: list[int] = []
    cuts = reserved_cuts = 0
    for index, event in enumerate(events):
        if event.call == "ack":
            acked.append(event.ack)
        else:
            disk.apply(event)
        if event.call not in ("ack", "fsync", "fdatasync"):
            continue
        view = tmp_path / f"cut-{index}"
        view.mkdir()
        durable_view(disk, root, view)
        queue_dir = view / "new" / "queue"
        files = disk.files.values()
        reserved_cuts += any(state.synced_reserved > state.synced_size for state in files)
        survived = {item.seq: item.data for item in asyncio.run(read_all(queue_dir))}
        missing = [seq for seq in acked if survived.get(seq) != final[seq]]
        assert missing == [], f"cut after event {index}: acked seqs lost {missing}"
        cuts += 1
    assert len(acked) == 45 and cuts > 45
    assert reserved_cuts > 0, "no cut left a segment with reserved space after its frames"


def test_buffers_and_dead_letters_are_private_to_the_agent_user(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for script in (DEAD_LETTERS, QUEUE):
        run_traced(
            [sys.executable, "-c", script, str(root)], tmp_path / "t.log", env=env, timeout=120
        )
    for path in (root / "new").rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
