"""What unwrapping container runtime logs costs, per span format: the same span lines read bare
(`spans.container_logs: none`) and as containerd (CRI) and Docker (json-file) write them.

For each input of bench/sample_spans.py, three files hold the same spans: the bare lines, the
lines in CRI's `<time> <stream> F <text>` (every tenth line cut in 16 KiB-style `P` pieces,
here 512 bytes so that the joining is exercised; odd lines on stderr) and in Docker's
`{"log": ..., "stream": ..., "time": ...}` (the same lines cut and on stderr). The CRI and
Docker files sit in kubelet-shaped pod directories, so the k8s attributes are added too. Each
is shipped by the real SpanPipeline (bench/spans.py's `run_agent`, the format named) to the
sink in another process; rounds interleave bare, cri and docker per input, figures are medians
of spans per CPU-second, and the ratio is the median of each round's wrapped / bare.
Target: unwrapping costs at most 15 % (ratio ≥ 0.85) for every format.

Run: `.venv/bin/python bench/container_logs.py [--spans 50000] [--repeat 3] [--format NAME ...]`
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import statistics
import tempfile
from pathlib import Path

import orjson
from sample_spans import FORMATS, agent_format, lines_for
from sink import Sink
from spans import run_agent

RUNTIMES = ("bare", "cri", "docker")
DEFAULT_SAMPLES = ("jobfirst", "span-json", "otlp-json", "otel-sdk-py", "otel-sdk-go")
PIECE = 512
STAMP = b"2026-12-05T10:00:00.123456789Z"
POD = "bench_api-7d9f_0f2c9a1e-5b1d-4c1e-9a8e-1f2e3d4c5b6a"


def wrapped(runtime: str, lines: list[bytes]) -> bytes:
    out = []
    for number, line in enumerate(lines):
        stream = "stderr" if number % 2 else "stdout"
        cut = number % 10 == 0
        if runtime == "cri":
            pieces = [line[i : i + PIECE] for i in range(0, len(line), PIECE)] if cut else [line]
            for index, piece in enumerate(pieces):
                tag = b"F" if index == len(pieces) - 1 else b"P"
                out.append(b" ".join((STAMP, stream.encode(), tag, piece)) + b"\n")
        else:
            text = line.decode() + "\n"
            pieces = [text[i : i + PIECE] for i in range(0, len(text), PIECE)] if cut else [text]
            for piece in pieces:
                record = {"log": piece, "stream": stream, "time": "2026-12-05T10:00:00.1234Z"}
                out.append(orjson.dumps(record) + b"\n")
    return b"".join(out)


def write_inputs(workdir: Path, samples: list[str], spans: int) -> dict[tuple[str, str], Path]:
    files = {}
    for sample in samples:
        lines = list(lines_for(sample, spans))
        for runtime in RUNTIMES:
            if runtime == "bare":
                path = workdir / "bare" / f"{sample}.log"
                data = b"".join(line + b"\n" for line in lines)
            else:
                path = workdir / runtime / POD / sample / "0.log"
                data = wrapped(runtime, lines)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            files[(sample, runtime)] = path
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--format", action="append", choices=FORMATS, dest="samples")
    args = parser.parse_args()
    samples = args.samples or list(DEFAULT_SAMPLES)
    workdir = Path(tempfile.mkdtemp(prefix="bench-container-logs-"))
    sink = Sink()
    rates: dict[tuple[str, str], list[float]] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    try:
        files = write_inputs(workdir, samples, args.spans)
        for round_number in range(1, args.repeat + 1):
            for sample in samples:
                bare = 0.0
                for runtime in RUNTIMES:
                    setting = "none" if runtime == "bare" else runtime
                    gc.collect()
                    cpu = asyncio.run(
                        run_agent(
                            files[(sample, runtime)],
                            sink,
                            workdir,
                            args.spans,
                            agent_format(sample),
                            f"spans.container_logs={setting}",
                        )
                    )
                    rate = args.spans / cpu
                    rates.setdefault((sample, runtime), []).append(rate)
                    if runtime == "bare":
                        bare = rate
                    else:
                        ratios.setdefault((sample, runtime), []).append(rate / bare)
            done = ", ".join(f"{s}/{r} {v[-1]:,.0f}" for (s, r), v in rates.items())
            print(f"round {round_number}: {done}", flush=True)
        print()
        print(f"{args.spans:,} spans per run, {args.repeat} interleaved rounds, medians")
        header = ("input", "bare", "cri", "cri/bare", "docker", "docker/bare")
        print(f"{header[0]:14} " + " ".join(f"{name:>10}" for name in header[1:]))
        for sample in samples:
            cells = [f"{sample:14}", f"{statistics.median(rates[(sample, 'bare')]):10,.0f}"]
            for runtime in ("cri", "docker"):
                ratio = statistics.median(ratios[(sample, runtime)])
                verdict = "" if ratio >= 0.85 else " (over 15 %)"
                cells.append(f"{statistics.median(rates[(sample, runtime)]):10,.0f}")
                cells.append(f"{ratio:8.2f}x{verdict}")
            print(" ".join(cells))
    finally:
        sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
