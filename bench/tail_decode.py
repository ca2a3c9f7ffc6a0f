"""Micro benchmark: a span log file read by the tailer's reader and decoded, in one process.

For each input (bench/sample_spans.py), a file of --spans spans is read to its end by
`LineReader` (the chunk size and line bound the tailer uses by default) and each read goes
through the decoder's direct path, with its format named and with `auto`, as the pipeline
hands it on (`feed_block_direct` for a block, `feed_direct` for split lines). No encoding of
requests, no gzip, no HTTP: bench/spans.py measures the whole pipeline. Reported per span, in
process CPU time: the read and decode together, and the read alone; medians (and the best) of
--repeat runs. Run: `.venv/bin/python bench/tail_decode.py [--format NAME ...]`.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import tempfile
import time
from pathlib import Path

from sample_spans import FORMATS, agent_format, lines_for

from agent.spans.decode.registry import make_decoder
from agent.spans.encode.direct import DirectWriter
from agent.spans.model import DecodeResult
from agent.spans.tail.linereader import LineReader
from agent.spans.tail.tailer import Tailer

CHUNK_BYTES = 256 * 1024
MAX_LINES = inspect.signature(Tailer.__init__).parameters["max_batch_lines"].default


def read_file(path: Path, fmt: str | None, scratch: Path) -> tuple[float, int]:
    """CPU seconds to read `path` (and decode it as `fmt`, unless None), and the spans."""
    fd = os.open(path, os.O_RDONLY)
    reader = LineReader(fd, str(path), 0, max_line_bytes=1 << 20, oversize_dir=scratch)
    decoder = make_decoder(fmt or "auto", orphan_timeout_ns=10**9, default_service="bench")
    direct, spans = DirectWriter(None), 0
    started = time.process_time()
    try:
        while True:
            result = reader.read(MAX_LINES, CHUNK_BYTES)
            if fmt is not None:
                into = DecodeResult()
                if result.block is not None:
                    spans += len(decoder.feed_block_direct(result.block, 0, direct, into))
                else:
                    spans += len(decoder.feed_direct(result.lines, 0, direct, into))
            if result.at_eof:
                break
    finally:
        reader.close()
    return time.process_time() - started, spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--format", action="append", choices=FORMATS, dest="samples")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for sample in args.samples or FORMATS:
            path = Path(scratch) / sample
            path.write_bytes(b"".join(line + b"\n" for line in lines_for(sample, args.spans)))
            for fmt in (agent_format(sample), "auto"):
                both, alone = [], []
                for _ in range(args.repeat):
                    seconds, _spans = read_file(path, fmt, Path(scratch))
                    both.append(seconds / args.spans * 1e6)
                    alone.append(read_file(path, None, Path(scratch))[0] / args.spans * 1e6)
                print(
                    f"{sample:20} {fmt:9} read+decode {statistics.median(both):6.2f} µs/span "
                    f"(best {min(both):.2f}), read alone {statistics.median(alone):5.2f} "
                    f"(best {min(alone):.2f})"
                )


if __name__ == "__main__":
    main()
