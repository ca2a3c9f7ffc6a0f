"""Write finished spans as span-json lines (docs/span-format.md), standard library only.

    with Tracer(open("/var/log/app/spans.log", "a"), service="jobs-api") as tracer:
        with tracer.span("GET /jobs", kind="server", attributes={"http.method": "GET"}) as s:
            s.event("cache miss", key="jobs:page:1")
            with tracer.span("SELECT jobs", kind="client", parent=s) as db:
                db.attributes["db.rows"] = 20

Run it to print a small demo trace: `python emit_spans.py [FILE]`.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any


class Span:
    def __init__(self, name: str, kind: str, trace_id: str, parent_id: str | None) -> None:
        self.name, self.kind = name, kind
        self.trace_id = trace_id
        self.span_id = secrets.token_hex(8)
        self.parent_id = parent_id
        self.attributes: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.status: dict[str, str] = {"code": "unset"}
        self.start = time.time_ns()

    def event(self, name: str, **attributes: Any) -> None:
        self.events.append(
            {"name": name, "time_unix_nano": time.time_ns(), "attributes": attributes}
        )

    def error(self, message: str) -> None:
        self.status = {"code": "error", "message": message}


class Tracer:
    def __init__(self, out: IO[str], service: str) -> None:
        self.out, self.service = out, service
        self.lock = threading.Lock()  # one whole line per write, even from many threads

    def __enter__(self) -> Tracer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.out.flush()

    @contextmanager
    def span(
        self,
        name: str,
        kind: str = "internal",
        parent: Span | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Iterator[Span]:
        trace_id = parent.trace_id if parent else secrets.token_hex(16)
        span = Span(name, kind, trace_id, parent.span_id if parent else None)
        span.attributes.update(attributes or {})
        try:
            yield span
        except Exception as exc:
            span.error(repr(exc))
            raise
        finally:
            self.write(span, time.time_ns())

    def write(self, span: Span, end: int) -> None:
        record = {
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "parent_span_id": span.parent_id,
            "name": span.name,
            "kind": span.kind,
            "start_time_unix_nano": span.start,
            "end_time_unix_nano": end,
            "attributes": span.attributes,
            "events": span.events,
            "status": span.status,
            "service": self.service,
        }
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        with self.lock:
            self.out.write(line)


def demo(out: IO[str]) -> None:
    with (
        Tracer(out, service="emit-spans-demo") as tracer,
        tracer.span("GET /jobs", kind="server", attributes={"http.method": "GET"}) as req,
    ):
        req.event("cache miss", key="jobs:page:1")
        with tracer.span("SELECT jobs", kind="client", parent=req) as db:
            db.attributes["db.rows"] = 20
        req.attributes["http.status_code"] = 200


def main() -> None:
    if len(sys.argv) > 1:
        with open(sys.argv[1], "a", encoding="utf-8") as out:
            demo(out)
    else:
        demo(sys.stdout)


if __name__ == "__main__":
    main()
