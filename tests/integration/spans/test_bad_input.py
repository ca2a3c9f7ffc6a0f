"""Bad input end to end: every kind is counted and dead-lettered, and good spans around it keep
flowing into a real Jaeger."""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.harness import Jaeger
from tests.harness.eventually import eventually
from tests.integration.spans.helpers import (
    append,
    dead_letters,
    pipeline_config,
    running_pipeline,
    span_id_of,
    span_json,
)

pytestmark = pytest.mark.integration


def bad_lines(service: str) -> dict[str, bytes]:
    """One bad line per case, by the dead-letter reason it must get."""
    valid = orjson.loads(span_json(0, service, salt=0xBAD))
    no_end = {key: value for key, value in valid.items() if key != "duration_us"}
    garbage = random.Random(3).randbytes(300).replace(b"\n", b"\x00")
    return {
        "malformed_json": b'{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_',
        "invalid_utf8": b'{"trace_id": "\xff\xfe\xfd", "name": "caf\xe9"}',
        "binary_garbage": garbage,
        "bad_trace_id": orjson.dumps({**valid, "trace_id": "ab" * 17}),
        "bad_span_id": orjson.dumps({**valid, "span_id": "cd" * 9}),
        "duration_too_long": orjson.dumps({**no_end, "duration_ms": 1e12}),
        "end_before_start": orjson.dumps({**no_end, "duration_us": -5}),
        "missing_field": orjson.dumps(no_end),  # neither an end nor a duration
        "line_too_long": b'{"name": "' + b"x" * (5 * 1024 * 1024) + b'"}',
    }


async def test_bad_lines_are_dead_lettered_by_reason_and_good_ones_flow(
    tmp_path: Path, jaeger: Jaeger, service_name: str
) -> None:
    log_file = tmp_path / "logs" / "app.log"
    log_file.parent.mkdir()
    bad = bad_lines(service_name)
    config = pipeline_config(tmp_path, jaeger.otlp_http_endpoint)
    async with running_pipeline(config) as pipeline:
        index = 0
        for case in bad.values():
            append(log_file, b"".join(span_json(index + i, service_name) for i in range(5)))
            append(log_file, case + b"\n")
            index += 5
        append(log_file, b"".join(span_json(index + i, service_name) for i in range(5)))
        index += 5
        stored = await asyncio.to_thread(jaeger.query.wait_for_spans, service_name, index)
        await eventually(lambda: pipeline.dead_letters.written == len(bad), what="dead letters")
        health = pipeline.health()
        summary = pipeline.summary()
    assert {span.span_id for span in stored} == {span_id_of(i) for i in range(index)}
    assert health.ready and health.dependency_ok
    reasons = Counter(record["reason"] for record in dead_letters(config))
    expected = Counter(bad.keys()) - Counter(["binary_garbage"])
    expected["invalid_utf8"] += 1  # random bytes are not UTF-8, so that is what they get
    assert reasons == expected
    assert summary["dead_lettered"] == dict(reasons)
    [oversize] = [r for r in dead_letters(config) if r["reason"] == "line_too_long"]
    assert oversize["length"] == len(bad["line_too_long"])
    assert os.path.getsize(oversize["spill_path"]) == oversize["length"], "kept whole"
    [truncated] = [r for r in dead_letters(config) if r["reason"] == "malformed_json"]
    assert truncated["raw"] == bad["malformed_json"].decode()
    assert truncated["source"] == str(log_file)
