from __future__ import annotations

from pathlib import Path

import orjson

from agent.core.deadletter import DeadLetterFile, raw_field
from agent.core.metrics import Metrics


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
