"""Issue 10 item 6: secrets on the admin port. Credentials are set in every place a config
takes them (URL userinfo and query token of the OTLP endpoint, OTLP header values, the publish
API's bearer token, the Redis password, a TLS key file) and every output is searched for them:
/healthz, /readyz, /metrics, /status, check-config and the agent's own log.

A real agent process, a real redis-server that requires the password."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import eventually_sync
from tests.harness.agent_process import REPO_ROOT, AgentProcess
from tests.harness.fixture_types import RedisServerFactory
from tests.harness.ports import LOOPBACK, free_port

pytestmark = pytest.mark.integration

REDIS_PASSWORD = "redis-pass-5f1c9a"
ENDPOINT_PASSWORD = "otlp-pass-77d2e0"
QUERY_TOKEN = "query-token-0b3a41c8"
HEADER_VALUE = "header-key-9e8d7c6b"
AUTH_TOKEN = "bearer-token-1a2b3c"
KEY_CONTENT = "PRIVATE-KEY-BODY-4c5d6e"
SECRETS = (REDIS_PASSWORD, ENDPOINT_PASSWORD, QUERY_TOKEN, HEADER_VALUE, AUTH_TOKEN, KEY_CONTENT)

SPAN = (
    b'{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7",'
    b'"name":"GET /jobs","start_time_unix_nano":1732777445123456789,'
    b'"end_time_unix_nano":1732777445135956789,"service":"jobs-api"}\n'
)


def settings_with_secrets(tmp_path: Path, redis_url: str) -> dict[str, str]:
    key_file = tmp_path / "client.key"
    key_file.write_text(f"-----BEGIN PRIVATE KEY-----\n{KEY_CONTENT}\n-----END PRIVATE KEY-----\n")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_bytes(SPAN)
    # Nothing listens there: the export fails and its errors are logged.
    endpoint = (
        f"http://collector:{ENDPOINT_PASSWORD}@{LOOPBACK}:{free_port()}/v1/traces"
        f"?token={QUERY_TOKEN}"
    )
    return {
        "SIDECAR_REDIS_URL": redis_url,
        "SIDECAR_EXPORT_ENDPOINT": endpoint,
        "SIDECAR_EXPORT_HEADERS": f"x-api-key={HEADER_VALUE}",
        "SIDECAR_EXPORT_TLS_KEY_FILE": str(key_file),
        "SIDECAR_REDIS_TLS_KEY_FILE": str(key_file),
        "SIDECAR_PROXY_AUTH_TOKEN": AUTH_TOKEN,
        "SIDECAR_SPANS_PATHS": str(logs / "*.log"),
        "SIDECAR_SPANS_FORMAT": "span-json",
        "SIDECAR_EXPORT_RETRY_INITIAL_INTERVAL": "50ms",
        "SIDECAR_EXPORT_RETRY_MAX_INTERVAL": "200ms",
        "SIDECAR_LOG_LEVEL": "debug",
    }


def assert_no_secret(where: str, text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"{where} shows {leaked}"


def test_no_output_shows_a_credential(
    tmp_path: Path, redis_server_factory: RedisServerFactory
) -> None:
    redis = redis_server_factory(password=REDIS_PASSWORD)
    settings = settings_with_secrets(tmp_path, redis.url)
    agent = AgentProcess(tmp_path, settings)
    agent.start(wait_ready=False)
    # Let the export fail a few times so its errors are in the log and in /status.
    eventually_sync(
        lambda: agent.metrics().get("sidecar_span_lines_read_total", 0) >= 1,
        timeout=20,
        what="the span line read",
    )
    eventually_sync(
        lambda: "unreachable" in agent.get("/status")[1].decode(),
        timeout=20,
        what="the export failure in /status",
    )
    outputs = {path: agent.get(path)[1].decode() for path in ("/healthz", "/readyz", "/status")}
    outputs["/metrics"] = agent.get("/metrics")[1].decode()
    for where, text in outputs.items():
        assert_no_secret(where, text)
    assert "http://***@" in outputs["/status"]  # the endpoint is shown, masked
    assert "token=***" in outputs["/status"]

    check = subprocess.run(
        [sys.executable, "-m", "agent", "check-config"],
        env=agent.env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert_no_secret("check-config", check.stdout + check.stderr)
    assert "***" in check.stdout

    assert agent.terminate() == 0
    log = agent.process.log_path.read_text()
    assert "otlp endpoint" in log  # the failing export was logged
    assert_no_secret("the agent's log", log)


def test_check_config_rejects_endpoint_userinfo_with_an_authorization_header(
    tmp_path: Path,
) -> None:
    env = AgentProcess(
        tmp_path,
        {
            "SIDECAR_EXPORT_ENDPOINT": f"https://user:{ENDPOINT_PASSWORD}@collector:4318/v1/traces",
            "SIDECAR_EXPORT_HEADERS": f"Authorization=Bearer {HEADER_VALUE}",
        },
    ).env
    check = subprocess.run(
        [sys.executable, "-m", "agent", "check-config"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 2
    assert "export.endpoint" in check.stderr and "Authorization" in check.stderr
    assert_no_secret("check-config", check.stdout + check.stderr)
