"""The OpenTelemetry Collector on the same OTLP/JSON file and into the same sink as the agent:
filelog (with file_storage for its checkpoints) → otlpjson connector → batch → otlphttp with
gzip, the Collector's way of doing what the agent does with `spans.format: otlp-json`.

The binary comes from bench/peers/build-otelcol. CPU-seconds are the Collector process's
user + system time from /proc/<pid>/stat, counted from when it is up and idle (its start-up is
not counted, nor is the agent's) until the sink has every span.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from sink import Sink

_TICKS = os.sysconf("SC_CLK_TCK")
_CONFIG = """
extensions:
  file_storage:
    directory: {storage}
receivers:
  filelog:
    include: [{path}]
    start_at: beginning
    storage: file_storage
    max_log_size: 1MiB
connectors:
  otlpjson:
processors:
  batch:
    send_batch_size: {batch}
    timeout: 50ms
exporters:
  otlphttp:
    traces_endpoint: {endpoint}
    compression: gzip
    retry_on_failure:
      enabled: false
service:
  extensions: [file_storage]
  telemetry:
    logs:
      level: warn
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [filelog]
      exporters: [otlpjson]
    traces:
      receivers: [otlpjson]
      processors: [batch]
      exporters: [otlphttp]
"""


def cpu_seconds(pid: int) -> float:
    """user + system CPU of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def find_binary(repo: Path) -> str:
    """The Collector binary bench/peers/build-otelcol made (it builds it the first time)."""
    built = subprocess.run(
        [str(repo / "bench" / "peers" / "build-otelcol")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return built.stdout.strip().splitlines()[-1]


def run_collector(
    binary: str, source: Path, sink: Sink, workdir: Path, *, spans: int, batch: int
) -> tuple[float, float]:
    """(CPU seconds, wall seconds) the Collector takes to ship `source` into the sink."""
    run_dir = workdir / "otelcol"
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "storage").mkdir(parents=True)
    watched = run_dir / "spans.log"
    watched.touch()
    config = run_dir / "config.yaml"
    config.write_text(
        _CONFIG.format(
            storage=run_dir / "storage", path=watched, batch=batch, endpoint=sink.endpoint
        )
    )
    before = sink.received()
    process = subprocess.Popen(
        [binary, "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        time.sleep(2.0)  # up and polling the empty file
        if process.poll() is not None:
            raise SystemExit(f"the Collector exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        cpu, wall = cpu_seconds(process.pid), time.perf_counter()
        with watched.open("ab") as out, source.open("rb") as data:
            shutil.copyfileobj(data, out, 1 << 20)
        sink.wait_for(before + spans, timeout=600)
        return cpu_seconds(process.pid) - cpu, time.perf_counter() - wall
    finally:
        process.terminate()
        process.wait(30)
