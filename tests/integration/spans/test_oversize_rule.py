"""One rule for over-long lines: the running pipeline and `ship` read through the same line
reader, so the same line is dead-lettered the same way (whole in a spill file) by both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.spans.backfill import Shipper
from tests.harness import Jaeger
from tests.harness.eventually import eventually
from tests.integration.spans.helpers import (
    append,
    dead_letters,
    pipeline_config,
    running_pipeline,
    span_json,
)

pytestmark = pytest.mark.integration

# Whatever names the file and the spill file differs between the two; the rest must not.
PLACE_KEYS = ("ts", "source", "spill_path")


def comparable(record: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    spilled = Path(record["spill_path"]).read_bytes()
    return {k: v for k, v in record.items() if k not in PLACE_KEYS}, spilled


async def test_ship_and_the_pipeline_dead_letter_an_over_long_line_alike(
    tmp_path: Path, jaeger: Jaeger, service_name: str
) -> None:
    long_line = span_json(1, service_name, payload="y" * 3000).rstrip(b"\n") + b"\r\n"
    content = span_json(0, service_name) + long_line + span_json(2, service_name)

    config = pipeline_config(tmp_path, jaeger.otlp_http_endpoint, spans__max_line_bytes="1KiB")
    (tmp_path / "logs").mkdir()
    append(tmp_path / "logs" / "a.log", content)
    async with running_pipeline(config) as pipeline:
        await eventually(lambda: pipeline.exporter.spans_exported == 2, what="2 spans exported")
        [by_pipeline] = await eventually(lambda: dead_letters(config), what="the dead letter")

    shipped_file = tmp_path / "ship.log"
    shipped_file.write_bytes(content)
    dead_letter_path = tmp_path / "ship" / "dead.jsonl"
    shipper = Shipper(config, "span-json", timeout=10.0, dead_letter_path=dead_letter_path)
    report = await shipper.ship([shipped_file], lambda position: None)
    [by_ship] = [orjson.loads(line) for line in dead_letter_path.read_bytes().splitlines()]

    assert report.spans_exported == 2 and report.lines_read == 3
    assert by_pipeline["reason"] == "line_too_long" and by_pipeline["length"] == len(long_line) - 2
    assert comparable(by_ship) == comparable(by_pipeline)
    assert by_ship["spill_path"].startswith(str(tmp_path / "ship" / "dead-oversize"))
    stored = jaeger.query.wait_for_spans(service_name, 2)
    assert len(stored) == 2
