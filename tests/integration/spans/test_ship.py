"""`sidecar-agent ship FILE...`: one-shot export of whole files (gzip too), summary, exit codes."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.cli.main import main
from tests.doubles.otlp_receiver import Fault, FaultInjectingOtlpReceiver
from tests.harness import Jaeger
from tests.harness.agent_process import REPO_ROOT, clean_environment
from tests.harness.ports import LOOPBACK, free_port
from tests.integration.spans.helpers import span_id_of, span_json

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("SIDECAR_", "OTEL_")):
            monkeypatch.delenv(name)


def ship(tmp_path: Path, endpoint: str, *args: str) -> int:
    return main(
        [
            "ship",
            "--set",
            f"data_dir={tmp_path / 'data'}",
            "--set",
            f"export.endpoint={endpoint}",
            "--set",
            "export.retry.initial_interval=50ms",
            "--set",
            "export.retry.max_interval=200ms",
            *args,
        ]
    )


def summary_json(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    output: dict[str, Any] = orjson.loads(capsys.readouterr().out)
    return output


def test_ships_plain_and_gzip_files_and_reports(
    tmp_path: Path, jaeger: Jaeger, service_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "a.log"
    plain.write_bytes(b"".join(span_json(i, service_name) for i in range(300)) + b"{oops\n")
    zipped = tmp_path / "b.log.gz"
    zipped.write_bytes(gzip.compress(b"".join(span_json(i, service_name) for i in range(300, 500))))
    code = ship(
        tmp_path,
        jaeger.otlp_http_endpoint,
        "--format",
        "span-json",
        "--json",
        str(plain),
        str(zipped),
    )
    report = summary_json(capsys)
    assert code == 0
    assert report["files"] == 2 and report["lines_read"] == 501
    assert report["spans_exported"] == 500 and report["spans_undelivered"] == 0
    assert report["dead_lettered"] == {"malformed_json": 1}
    stored = jaeger.query.wait_for_spans(service_name, 500)
    assert {span.span_id for span in stored} == {span_id_of(i) for i in range(500)}
    dead = orjson.loads(Path(report["dead_letter_file"]).read_bytes().splitlines()[0])
    assert dead["raw"] == "{oops" and dead["source"] == str(plain)


def test_an_open_jobfirst_span_is_exported_incomplete_at_end_of_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nanos = time.time_ns() - 10**9
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(nanos // 10**9))
    started = {
        "level": "info",
        "message": "Span started",
        "span_id": f"span_{nanos}",
        "span_name": "sync jobs",
        "timestamp": stamp,
        "trace_id": f"trace_{nanos}",
    }
    source = tmp_path / "jobfirst.log"
    source.write_bytes(orjson.dumps(started) + b"\n")
    with FaultInjectingOtlpReceiver() as receiver:
        code = ship(tmp_path, receiver.endpoint, "--format", "jobfirst", "--json", str(source))
        spans = receiver.accepted_spans()
    assert code == 0 and summary_json(capsys)["spans_exported"] == 1
    [(_, span)] = spans
    attributes = {a.key: a.value for a in span.attributes}
    assert span.name == "sync jobs" and attributes["sidecar.incomplete"].bool_value


def test_a_jobfirst_span_across_two_rotated_files_is_shipped_once_complete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nanos = time.time_ns() - 10**9
    line = {
        "level": "info",
        "span_id": f"span_{nanos}",
        "span_name": "sync jobs",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(nanos // 10**9)),
        "trace_id": f"trace_{nanos}",
    }
    older, newer = tmp_path / "jobfirst.log.1", tmp_path / "jobfirst.log"
    older.write_bytes(orjson.dumps({**line, "message": "Span started", "user_id": 7}) + b"\n")
    ended = {**line, "message": "Span ended", "duration": "1.5s", "status": 0}
    newer.write_bytes(orjson.dumps(ended) + b"\n")
    with FaultInjectingOtlpReceiver() as receiver:
        code = ship(
            tmp_path, receiver.endpoint, "--format", "jobfirst", "--json", str(older), str(newer)
        )
        spans = receiver.accepted_spans()
    assert code == 0 and summary_json(capsys)["spans_exported"] == 1
    [(_, span)] = spans
    attributes = {a.key: a.value for a in span.attributes}
    assert "sidecar.incomplete" not in attributes
    assert attributes["user_id"].int_value == 7, "the start line's fields, from the older file"
    assert span.end_time_unix_nano - span.start_time_unix_nano == 1_500_000_000


def test_a_400_is_dead_lettered_with_the_message_and_exit_is_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "a.log"
    source.write_bytes(b"".join(span_json(i, "svc") for i in range(10)))
    with FaultInjectingOtlpReceiver() as receiver:
        receiver.script(Fault.http(400, message="unknown tenant"))
        code = ship(tmp_path, receiver.endpoint, "--format", "span-json", str(source))
    output = capsys.readouterr().out
    assert code == 0
    assert "dead-lettered: 1" in output and "export_rejected: 1" in output
    assert "spans not delivered: 0" in output
    dead_file = tmp_path / "data" / "deadletter" / "ship-spans.jsonl"
    assert "unknown tenant" in orjson.loads(dead_file.read_bytes())["detail"]


def test_unreachable_endpoint_gives_up_after_the_timeout_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "a.log"
    source.write_bytes(b"".join(span_json(i, "svc") for i in range(50)))
    endpoint = f"http://{LOOPBACK}:{free_port()}/v1/traces"
    started = time.monotonic()
    code = ship(tmp_path, endpoint, "--timeout", "1", "--json", str(source))
    report = summary_json(capsys)
    assert code == 1
    assert time.monotonic() - started < 10
    assert report["spans_undelivered"] == 50
    assert report["last_error"].startswith("otlp endpoint unreachable")


def test_a_missing_file_is_bad_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ship(tmp_path, "http://127.0.0.1:9/v1/traces", str(tmp_path / "nope.log")) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_console_script_runs_ship(tmp_path: Path) -> None:
    source = tmp_path / "a.log"
    source.write_bytes(b"".join(span_json(i, "svc") for i in range(5)))
    with FaultInjectingOtlpReceiver() as receiver:
        finished = subprocess.run(
            [sys.executable, "-m", "agent", "ship", str(source)],
            env=clean_environment(
                {
                    "SIDECAR_DATA_DIR": str(tmp_path / "data"),
                    "SIDECAR_EXPORT_ENDPOINT": receiver.endpoint,
                }
            ),
            cwd=REPO_ROOT,
            capture_output=True,
            timeout=60,
            check=False,
        )
        received = len(receiver.accepted_spans())
    assert finished.returncode == 0, finished.stderr
    assert b"spans exported: 5" in finished.stdout
    assert received == 5
