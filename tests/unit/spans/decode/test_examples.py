"""The emitters in docs/examples write lines the span-json decoder accepts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.spans.decode.registry import make_decoder
from agent.spans.model import KIND_CLIENT, KIND_SERVER, DecodeResult

EXAMPLES = Path(__file__).resolve().parents[4] / "docs" / "examples"
GO = shutil.which("go") or (
    "/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None
)


def check_demo_trace(output: bytes, service: str) -> None:
    decoder = make_decoder("span-json", orphan_timeout_ns=0, default_service=None)
    result: DecodeResult = decoder.feed_many(output.splitlines(), 0)
    assert result.dead == []
    db, request = result.spans
    assert (db.name, request.name) == ("SELECT jobs", "GET /jobs")
    assert (db.kind, request.kind) == (KIND_CLIENT, KIND_SERVER)
    assert db.trace_id == request.trace_id
    assert db.parent_span_id == request.span_id
    assert request.parent_span_id == b""
    assert request.start_ns <= db.start_ns <= db.end_ns <= request.end_ns
    assert request.attributes == {"http.method": "GET", "http.status_code": 200}
    assert db.attributes == {"db.rows": 20}
    assert [e.name for e in request.events] == ["cache miss"]
    assert request.events[0].attributes == {"key": "jobs:page:1"}
    assert request.service_name == db.service_name == service


def test_python_example(tmp_path: Path) -> None:
    target = tmp_path / "spans.log"
    subprocess.run([sys.executable, EXAMPLES / "emit_spans.py", target], check=True, timeout=30)
    check_demo_trace(target.read_bytes(), "emit-spans-demo")


@pytest.mark.slow  # a cold Go build takes several seconds
@pytest.mark.skipif(GO is None, reason="go is not installed")
def test_go_example_is_formatted_vetted_and_correct(tmp_path: Path) -> None:
    assert GO is not None
    source = str(EXAMPLES / "emit_spans.go")
    env = {**os.environ, "GO111MODULE": "auto"}  # a lone file, outside any module
    gofmt = Path(GO).with_name("gofmt")
    unformatted = subprocess.run([gofmt, "-l", source], capture_output=True, check=True, timeout=60)
    assert unformatted.stdout == b""
    subprocess.run([GO, "vet", source], check=True, timeout=120, env=env, cwd=tmp_path)
    run = subprocess.run(
        [GO, "run", source], capture_output=True, check=True, timeout=120, env=env, cwd=tmp_path
    )
    check_demo_trace(run.stdout, "emit-spans-demo-go")
