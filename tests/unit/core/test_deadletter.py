from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson

from agent.core.deadletter import DeadLetterFile, raw_field
from agent.core.metrics import Metrics

REPO = Path(__file__).resolve().parents[3]


async def test_records_are_json_lines_with_reason_and_counted(tmp_path: Path) -> None:
    metrics = Metrics()
    dead = DeadLetterFile(tmp_path / "dl" / "spans.jsonl", 1 << 20, metrics, "spans")
    await dead.write_many(
        [
            {"reason": "malformed_json", "source": "/x.log", **raw_field(b'{"a":')},
            {"reason": "invalid_utf8", **raw_field(b"\xff\xfe")},
        ]
    )
    lines = [
        orjson.loads(line) for line in (tmp_path / "dl" / "spans.jsonl").read_bytes().splitlines()
    ]
    assert lines[0]["reason"] == "malformed_json" and lines[0]["raw"] == '{"a":'
    assert lines[1]["raw_b64"] == "//4="
    assert dead.by_reason == {"malformed_json": 1, "invalid_utf8": 1}
    text = metrics.render().decode()
    assert 'sidecar_dead_letters_total{pipeline="spans",reason="malformed_json"} 1.0' in text


async def test_rotation_keeps_one_old_file(tmp_path: Path) -> None:
    dead = DeadLetterFile(tmp_path / "dl.jsonl", 200, Metrics(), "messages")
    for i in range(10):
        await dead.write({"reason": "wrongtype", "n": i, "pad": "x" * 50})
    current = (tmp_path / "dl.jsonl").read_bytes().splitlines()
    previous = (tmp_path / "dl.jsonl.1").read_bytes().splitlines()
    numbers = [orjson.loads(line)["n"] for line in previous + current]
    assert numbers == sorted(numbers) and numbers[-1] == 9
    assert (tmp_path / "dl.jsonl").stat().st_size <= 200
    assert dead.written == 10


# A file-size limit makes the write fail (EFBIG) the way a full disk would; lifting it is the
# space coming back. The write must wait and retry, not raise into the loop that called it.
FAILING_WRITE = """
import asyncio, json, resource, signal, sys
from pathlib import Path
from agent.core.deadletter import DeadLetterFile
from agent.core.metrics import Metrics

async def main(root):
    metrics = Metrics()
    file = DeadLetterFile(Path(root) / "dead.jsonl", 1 << 20, metrics, "test")
    await file.write({"reason": "first", "raw": "a" * 100})
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300, resource.RLIM_INFINITY))
    pending = asyncio.create_task(file.write({"reason": "second", "raw": "b" * 400}))
    while file.write_errors < 2:
        await asyncio.sleep(0.01)
    waited = not pending.done()
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    await asyncio.wait_for(pending, 10)
    print(json.dumps({
        "waited": waited, "errors": file.write_errors, "failing": file.failing,
        "metric": b"sidecar_dead_letter_write_errors_total" in metrics.render(),
    }))

asyncio.run(main(sys.argv[1]))
"""


def test_a_failing_dead_letter_write_is_retried_not_raised_into_the_caller(
    tmp_path: Path,
) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", FAILING_WRITE, str(tmp_path)],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=True,
    )
    report = json.loads(finished.stdout)
    assert report == {"waited": True, "errors": report["errors"], "failing": None, "metric": True}
    assert report["errors"] >= 2
    lines = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    # Whole lines only, each once: the failed attempts left nothing behind.
    assert [line["reason"] for line in lines] == ["first", "second"]
