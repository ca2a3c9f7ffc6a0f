"""Masking URLs and scrubbing known secrets from free text."""

from __future__ import annotations

import io
import logging

import orjson

from agent.config.load import load_config
from agent.config.secrets import Redactor, mask_url
from agent.core.logsetup import configure_logging


def test_mask_url_hides_userinfo_and_every_query_value() -> None:
    assert mask_url("http://u:pw@host:4318/v1/traces?token=abc&x=1") == (
        "http://***@host:4318/v1/traces?token=***&x=***"
    )
    assert mask_url("https://tok@host/v1/traces") == "https://***@host/v1/traces"
    assert mask_url("redis://:pw@[::1]:6379/0") == "redis://***@[::1]:6379/0"
    assert mask_url("http://localhost:4318/v1/traces") == "http://localhost:4318/v1/traces"


def test_redactor_scrubs_config_secrets_also_as_json_escapes_them() -> None:
    config = load_config(
        environ={
            "REDIS_URL": "redis://default:p%22ss-word@redis:6379/0",
            "SIDECAR_EXPORT_HEADERS": "x-api-key=key-123456",
            "SIDECAR_PROXY_AUTH_TOKEN": "tok-123",
            "SIDECAR_EXPORT_ENDPOINT": "http://collector:4318/v1/traces?token=long-token-1",
        }
    )
    redact = Redactor.for_config(config)
    text = orjson.dumps({"error": 'AUTH p"ss-word failed; key-123456 tok-123 long-token-1'})
    scrubbed = redact.json_bytes(text).decode()
    for secret in ("ss-word", "key-123456", "tok-123", "long-token-1"):
        assert secret not in scrubbed
    assert "default_topic" in redact.text("default_topic")  # a user name is not a secret
    assert redact.text("GET http://user:pw@any.host/x") == "GET http://***@any.host/x"


def test_log_lines_pass_the_redactor() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream, redact=Redactor(["sekrit-value"]).text)
    try:
        logging.getLogger("agent.test").warning(
            "failed with sekrit-value", extra={"url": "redis://:sekrit-value@h"}
        )
    finally:
        logging.getLogger().handlers.clear()
    line = stream.getvalue()
    assert "sekrit" not in line and "failed with ***" in line
