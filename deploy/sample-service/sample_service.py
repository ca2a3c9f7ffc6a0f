"""A small stand-in for an application that runs beside sidecar-agent (stdlib only).

Every `--interval` seconds it "handles a request": it writes the request's spans to span logs
in `--log-dir` (which the sidecar tails) and publishes one message to the sidecar's local
publish API. It is what scripts/demo runs on localhost and what the compose demo runs in a
python:3.11-slim container.

Span logs written (one file each, so the sidecar can be told each file's format):
  <service>.spans.log     span-json: one finished span per line (docs/span-format.md)
  <service>.jobfirst.log  JobFirst/logrus lines ("Span started" ... "Span ended") mixed with
                          ordinary log lines, as the JobFirst Go services write them
                          (only with --jobfirst)

With `--log-dir -` both kinds of line go to stdout instead, interleaved, as a twelve-factor
service logs: the container runtime stores them and the sidecar reads them there (its
`spans.format: auto` tells the two apart line by line). The service's own messages always go
to stderr.

Publishing honours 503 + Retry-After (the sidecar's buffer is full) and retries connection
errors (the sidecar is starting), with the same message id, so the sidecar dedupes a retry
whose first answer was lost. SIGTERM/SIGINT finish the current request, then exit 0.

    python3 sample_service.py --log-dir /var/log/app --proxy http://127.0.0.1:8787
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROUTES = ("GET /jobs", "GET /jobs/{id}", "POST /jobs", "POST /jobs/{id}/apply")
PUBLISH_ATTEMPTS = 30
STDOUT = "-"  # --log-dir value: span lines to stdout


def options(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--log-dir", default=env("SAMPLE_LOG_DIR", "./logs"), help="'-': span lines to stdout"
    )
    parser.add_argument("--proxy", default=env("SAMPLE_PROXY_URL", "http://127.0.0.1:8787"))
    parser.add_argument("--service", default=env("SAMPLE_SERVICE_NAME", "sample-service"))
    parser.add_argument("--topic", default=env("SAMPLE_TOPIC", "job.events"))
    parser.add_argument(
        "--interval", type=float, default=float(env("SAMPLE_INTERVAL", "1.0")), help="seconds"
    )
    parser.add_argument(
        "--count", type=int, default=int(env("SAMPLE_COUNT", "0")), help="requests; 0: forever"
    )
    parser.add_argument(
        "--jobfirst",
        action=argparse.BooleanOptionalAction,
        default=env("SAMPLE_JOBFIRST", "1") not in ("0", "false", "no"),
        help="also write JobFirst/logrus span lines",
    )
    return parser.parse_args(argv)


def hex_id(bits: int) -> str:
    return f"{random.getrandbits(bits):0{bits // 4}x}"


def append_line(path: Path | None, record: dict[str, Any]) -> None:
    """`record` as one JSON line appended to `path`, or printed to stdout when it is None."""
    line = json.dumps(record, separators=(",", ":")) + "\n"
    if path is None:
        # stdout is block-buffered when it is not a terminal (a container's never is).
        sys.stdout.write(line)
        sys.stdout.flush()
        return
    # One write per line with O_APPEND: a reader never sees half a line from us.
    with path.open("a", encoding="utf-8") as out:
        out.write(line)


class Request:
    """One simulated request: a server span and a producer child span."""

    def __init__(self, number: int, service: str) -> None:
        self.number = number
        self.service = service
        self.route = ROUTES[number % len(ROUTES)]
        self.trace_id = hex_id(128)
        self.server_span_id = hex_id(64)
        self.producer_span_id = hex_id(64)
        self.failed = number % 7 == 6  # some errors, so Jaeger shows red spans too
        self.start_ns = time.time_ns()

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.producer_span_id}-01"

    def span_json(self, publish_start_ns: int, publish_end_ns: int) -> list[dict[str, Any]]:
        end_ns = time.time_ns()
        status = {"code": "error", "message": "HTTP 500"} if self.failed else {"code": "ok"}
        server = {
            "trace_id": self.trace_id,
            "span_id": self.server_span_id,
            "name": self.route,
            "kind": "server",
            "service": self.service,
            "start_time_unix_nano": self.start_ns,
            "end_time_unix_nano": end_ns,
            "attributes": {
                "http.request.method": self.route.split()[0],
                "http.route": self.route.split()[1],
                "http.response.status_code": 500 if self.failed else 200,
                "sample.request_number": self.number,
            },
            "events": [{"name": "job validated", "time_unix_nano": publish_start_ns}],
            "status": status,
        }
        producer = {
            "trace_id": self.trace_id,
            "span_id": self.producer_span_id,
            "parent_span_id": self.server_span_id,
            "name": "publish job.events",
            "kind": "producer",
            "service": self.service,
            "start_time_unix_nano": publish_start_ns,
            "end_time_unix_nano": publish_end_ns,
            "attributes": {"messaging.system": "redis", "messaging.destination.name": "job.events"},
        }
        return [producer, server]  # children finish first, as SDKs write them

    def jobfirst_lines(self, duration_s: float) -> list[dict[str, Any]]:
        # JobFirst IDs: trace_<unix-nanos> / span_<unix-nanos>, taken at span start.
        trace_id = f"trace_{self.start_ns}"
        span_id = f"span_{self.start_ns + 1}"

        def line(message: str, **fields: Any) -> dict[str, Any]:
            stamp = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
            return {"level": "info", "message": message, "timestamp": stamp, **fields}

        name = f"{self.route} (jobfirst)"
        return [
            line("Span started", span_name=name, trace_id=trace_id, span_id=span_id),
            line("request received", path=self.route.split()[1]),
            line("Span event added", span_name=name, event_name="job validated", trace_id=trace_id),
            line(
                "Span ended",
                span_name=name,
                trace_id=trace_id,
                span_id=span_id,
                duration=go_duration(duration_s),
                status=1 if self.failed else 0,
                status_desc="HTTP 500" if self.failed else "",
            ),
        ]


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String() for durations under a minute (`1.5ms`, `523.417µs`, `2s`)."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3f}".rstrip("0").rstrip(".") + unit
    return f"{round(seconds * 1e9)}ns"


class Publisher:
    def __init__(self, proxy: str, topic: str, stopping: threading.Event) -> None:
        self.url = f"{proxy.rstrip('/')}/v1/topics/{topic}/messages"
        self.stopping = stopping

    def publish(self, message: dict[str, Any]) -> bool:
        body = json.dumps(message).encode()
        for _attempt in range(PUBLISH_ATTEMPTS):
            request = urllib.request.Request(
                self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return 200 <= response.status < 300
            except urllib.error.HTTPError as error:
                if error.code not in (429, 503):
                    log(f"publish refused: {error.code} {error.read()[:200]!r}")
                    return False
                delay = float(error.headers.get("Retry-After") or 1)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                log(f"sidecar not reachable yet ({error}); retrying")
                delay = 1.0
            if self.stopping.wait(delay):
                return False
        return False


def log(text: str) -> None:
    sys.stderr.write(f"sample-service: {text}\n")
    sys.stderr.flush()


def handle(number: int, opts: argparse.Namespace, publisher: Publisher, run_id: str) -> bool:
    request = Request(number, opts.service)
    time.sleep(random.uniform(0.002, 0.02))  # "work"
    publish_start = time.time_ns()
    published = publisher.publish(
        {
            "id": f"{opts.service}-{run_id}-{number}",
            "data": {"job_id": number, "event": "created", "route": request.route},
            "headers": {"traceparent": request.traceparent},
        }
    )
    publish_end = time.time_ns()
    to_stdout = opts.log_dir == STDOUT
    log_dir = Path(opts.log_dir)
    spans_log = None if to_stdout else log_dir / f"{opts.service}.spans.log"
    jobfirst_log = None if to_stdout else log_dir / f"{opts.service}.jobfirst.log"
    for span in request.span_json(publish_start, publish_end):
        append_line(spans_log, span)
    if opts.jobfirst:
        duration = (time.time_ns() - request.start_ns) / 1e9
        for line in request.jobfirst_lines(duration):
            append_line(jobfirst_log, line)
    return published


def main(argv: list[str] | None = None) -> int:
    opts = options(argv)
    if opts.log_dir != STDOUT:
        Path(opts.log_dir).mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    publisher = Publisher(opts.proxy, opts.topic, stopping)
    run_id = uuid.uuid4().hex[:8]
    where = "stdout" if opts.log_dir == STDOUT else opts.log_dir
    log(f"writing span logs to {where}, publishing to {publisher.url}")
    number = published = 0
    while not stopping.is_set() and (opts.count == 0 or number < opts.count):
        published += handle(number, opts, publisher, run_id)
        number += 1
        if number % 10 == 0:
            log(f"{number} requests, {published} messages published")
        stopping.wait(opts.interval)
    log(f"done: {number} requests, {published} messages published")
    return 0 if published == number else 1


if __name__ == "__main__":
    raise SystemExit(main())
