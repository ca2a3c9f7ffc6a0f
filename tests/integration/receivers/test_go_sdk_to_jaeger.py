"""The OpenTelemetry Go SDK's otlptracehttp exporter (tests/integration/receivers/goclient,
built here) → the receiver → a real Jaeger: every span, attribute, event, link and status.

Skipped without a Go toolchain. The binary is cached outside the repo, keyed by the program's
source; the first build downloads Go modules (minutes on a cold module cache)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness.jaeger import Jaeger
from tests.harness.jaeger_query import StoredSpan
from tests.integration.receivers.helpers import receiver_config, running_receiver

pytestmark = pytest.mark.integration

SOURCE = Path(__file__).parent / "goclient"
BUILD_TIMEOUT = 600


def go_client() -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain on PATH: the Go SDK client cannot be built")
    digest = hashlib.sha256()
    for name in ("main.go", "go.mod", "go.sum"):
        digest.update((SOURCE / name).read_bytes())
    cache = Path(
        os.environ.get("SIDECAR_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sidecar-agent"
    )
    binary = cache / f"otlp-goclient-{digest.hexdigest()[:16]}"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".partial")
        subprocess.run(
            [go, "build", "-o", str(partial), "."],
            cwd=SOURCE,
            check=True,
            timeout=BUILD_TIMEOUT,
            env={**os.environ, "GOFLAGS": "-mod=mod -buildvcs=false"},
        )
        partial.replace(binary)
    return binary


def check_stored(stored: list[StoredSpan], traces: int) -> None:
    assert len(stored) == 2 * traces
    roots = {span.span_id: span for span in stored if span.kind == "server"}
    children = [span for span in stored if span.kind == "client"]
    assert len(roots) == len(children) == traces
    for root in roots.values():
        seq = root.tags["seq"]
        assert root.operation_name == f"GET /orders/{seq}"
        assert root.process_tags.get("pod") == "p-1"
        assert root.tags["otel.scope.name"] == "checkout-lib"
        assert root.tags["otel.scope.version"] == "2.1.0"
        assert (root.tags["http.method"], root.tags["http.status_code"]) == ("GET", 200)
        assert (root.tags["ratio"], root.tags["cached"]) == (0.25, True)
        (log,) = root.logs
        assert log.fields["event"] == "cache.miss"
        assert (log.fields["key"], log.fields["attempt"]) == (f"order:{seq}", 2)
        follows = [ref for ref in root.references if ref.get("refType") == "FOLLOWS_FROM"]
        assert len(follows) == (1 if seq else 0)
    for child in children:
        assert child.operation_name == "SELECT orders"
        assert child.parent_span_id in roots
        assert child.tags["error"] is True
        assert child.tags["otel.status_description"] == "deadlock detected"
        assert child.tags["db.system"] == "postgresql"


async def test_go_sdk_through_the_receiver_into_jaeger(
    tmp_path: Path, jaeger: Jaeger, service_name: str
) -> None:
    client = await asyncio.to_thread(go_client)
    config = receiver_config(tmp_path, jaeger.otlp_http_endpoint)
    async with running_receiver(config) as running:
        process = await asyncio.create_subprocess_exec(
            str(client), running.url, service_name, "5", stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0, stderr.decode()
        assert running.receiver.intake.spans_accepted == 10
    stored = await asyncio.to_thread(jaeger.query.wait_for_spans, service_name, 10)
    check_stored(stored, 5)
