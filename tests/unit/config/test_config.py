"""Config layering, coercion, error messages, masking, and the docs drift check."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.cli.main import main
from agent.config.load import ConfigError, load_config
from agent.config.render import effective_tree, render_markdown, render_reference_yaml
from agent.config.schema import leaves

REPO = Path(__file__).resolve().parents[3]


def problems_for(**kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(**kwargs)  # type: ignore[arg-type]
    return caught.value.problems


def test_defaults_match_the_design() -> None:
    config = load_config(environ={})
    assert config.export.endpoint == "http://localhost:4318/v1/traces"
    assert config.export.protocol == "http/protobuf"
    assert config.export.compression == "gzip"
    assert config.redis.url == "redis://localhost:6379/0"
    assert config.proxy.listen == "127.0.0.1:8787"
    assert config.admin.listen == "0.0.0.0:8788"
    assert config.data_dir == "./sidecar-data"
    assert config.shutdown_timeout == 25.0
    assert config.messages.default_topic.key == "stream:{topic}"


def test_precedence_defaults_yaml_standard_env_sidecar_env_cli(tmp_path: Path) -> None:
    config_file = tmp_path / "agent.yaml"
    config_file.write_text(
        "redis:\n  url: redis://from-yaml:6379/0\nlog:\n  level: debug\n"
        "export:\n  timeout: 3s\nspans:\n  paths: [/a/*.log]\n"
    )
    env = {"REDIS_URL": "redis://from-env:6379/0", "OTEL_EXPORTER_OTLP_TIMEOUT": "1500"}
    config = load_config(config_path=str(config_file), environ=env)
    assert config.redis.url == "redis://from-env:6379/0"
    assert config.log.level == "debug"
    assert config.export.timeout == pytest.approx(1.5)
    assert config.spans.paths == ["/a/*.log"]
    env["SIDECAR_REDIS_URL"] = "redis://from-sidecar:6379/0"
    config = load_config(config_path=str(config_file), environ=env)
    assert config.redis.url == "redis://from-sidecar:6379/0"
    config = load_config(
        config_path=str(config_file),
        environ=env,
        cli_overrides=["redis.url=redis://from-cli:6379/0"],
    )
    assert config.redis.url == "redis://from-cli:6379/0"


def test_config_path_from_sidecar_config_env(tmp_path: Path) -> None:
    config_file = tmp_path / "agent.yaml"
    config_file.write_text("proxy:\n  max_body_bytes: 2MiB\n")
    config = load_config(environ={"SIDECAR_CONFIG": str(config_file)})
    assert config.proxy.max_body_bytes == 2 * 1024 * 1024


def test_units_lists_and_maps_from_env() -> None:
    config = load_config(
        environ={
            "SIDECAR_SPANS_PATHS": "/var/log/a/*.log, /var/log/b/*.json",
            "SIDECAR_EXPORT_BATCH_LINGER": "250ms",
            "SIDECAR_EXPORT_QUEUE_MAX_BYTES": "64MiB",
            "SIDECAR_SPANS_ORPHAN_TIMEOUT": "1m30s",
            "OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.name=api-0,k8s.namespace.name=prod%2Ceu",
            "SIDECAR_MESSAGES_TOPICS": '{"orders": {"layout": "fields", "maxlen": 1000}}',
        }
    )
    assert config.spans.paths == ["/var/log/a/*.log", "/var/log/b/*.json"]
    assert config.export.batch.linger == pytest.approx(0.25)
    assert config.export.queue.max_bytes == 64 * 1024 * 1024
    assert config.spans.orphan_timeout == pytest.approx(90)
    assert config.service.resource_attributes == {
        "k8s.pod.name": "api-0",
        "k8s.namespace.name": "prod,eu",
    }
    assert config.messages.topics["orders"].layout == "fields"
    assert config.messages.topics["orders"].maxlen == 1000
    assert config.messages.topics["orders"].key == "stream:{topic}"


def test_otel_endpoints_signal_specific_wins_and_generic_gets_path() -> None:
    generic = load_config(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert generic.export.endpoint == "http://collector:4318/v1/traces"
    both = load_config(
        environ={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://jaeger:4318/custom",
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc",
            "OTEL_SERVICE_NAME": "jobs-api",
            "OTEL_TRACES_SAMPLER": "traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
        }
    )
    assert both.export.endpoint == "https://jaeger:4318/custom"
    assert both.export.headers == {"authorization": "Bearer abc"}
    assert both.service.name == "jobs-api"
    assert both.spans.sampler == "traceidratio"
    assert both.spans.sampler_arg == pytest.approx(0.25)


def test_unknown_sidecar_env_suggests_closest() -> None:
    problems = problems_for(environ={"SIDECAR_SPANS_PATH": "x"})
    assert problems == ["SIDECAR_SPANS_PATH: unknown setting; did you mean SIDECAR_SPANS_PATHS?"]


def test_unknown_yaml_key_suggests_closest(tmp_path: Path) -> None:
    config_file = tmp_path / "agent.yaml"
    config_file.write_text("spans:\n  path: [x]\nexprt:\n  timeout: 1s\n")
    problems = problems_for(config_path=str(config_file), environ={})
    assert any("spans.path" in p and "did you mean 'spans.paths'" in p for p in problems)
    assert any("exprt" in p and "did you mean 'export'" in p for p in problems)


def test_bad_values_name_key_source_value_and_accepted() -> None:
    problems = problems_for(
        environ={
            "SIDECAR_EXPORT_TIMEOUT": "soon",
            "SIDECAR_MESSAGES_ACK": "paper",
            "SIDECAR_PROXY_MAX_BODY_BYTES": "lots",
            "SIDECAR_ADMIN_ENABLED": "maybe",
        }
    )
    text = "\n".join(problems)
    assert "export.timeout (from SIDECAR_EXPORT_TIMEOUT): 'soon' is not a duration" in text
    assert "messages.ack (from SIDECAR_MESSAGES_ACK): 'paper' is not one of" in text
    assert "disk, redis, memory" in text
    assert "proxy.max_body_bytes" in text and "'lots' is not a size" in text
    assert "admin.enabled" in text and "'maybe' is not a boolean" in text
    assert len(problems) == 4


def test_semantic_validation() -> None:
    problems = problems_for(
        environ={
            "SIDECAR_PROXY_LISTEN": "localhost",
            "REDIS_URL": "http://redis:6379",
            "SIDECAR_EXPORT_RETRY_JITTER": "2",
            "SIDECAR_SPANS_SAMPLER": "sometimes",
            "SIDECAR_SPANS_PATH_FORMATS": "/a/*.log=xml",
        }
    )
    text = "\n".join(problems)
    assert "proxy.listen: 'localhost' is not host:port" in text
    assert "redis.url" in text and "redis://" in text
    assert "export.retry.jitter: must be between 0 and 1" in text
    assert "spans.sampler: 'sometimes'" in text
    assert "spans.path_formats[/a/*.log]: 'xml'" in text


def test_unknown_topic_setting_is_named() -> None:
    problems = problems_for(environ={"SIDECAR_MESSAGES_TOPICS": "{orders: {layot: raw}}"})
    assert "orders.layot: unknown key; did you mean 'layout'?" in problems[0]


def test_cli_set_unknown_key() -> None:
    problems = problems_for(environ={}, cli_overrides=["spans.pathz=/x", "novalue"])
    assert any("did you mean 'spans.paths'" in p for p in problems)
    assert any("expected key=value" in p for p in problems)


def test_unreadable_or_invalid_yaml(tmp_path: Path) -> None:
    missing = problems_for(config_path=str(tmp_path / "nope.yaml"), environ={})
    assert "cannot read it" in missing[0]
    broken = tmp_path / "broken.yaml"
    broken.write_text("spans: [unclosed\n")
    assert "not valid YAML" in problems_for(config_path=str(broken), environ={})[0]


def test_secrets_are_masked() -> None:
    config = load_config(
        environ={
            "REDIS_URL": "redis://user:hunter2@redis:6379/0",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=secret-token",
            "SIDECAR_PROXY_AUTH_TOKEN": "tok-123",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://u:pw@collector:4318",
        }
    )
    rendered = yaml.safe_dump(effective_tree(config))
    for secret in ("hunter2", "secret-token", "tok-123", ":pw@"):
        assert secret not in rendered
    tree = effective_tree(config)
    assert tree["redis"]["url"] == "redis://***@redis:6379/0"
    assert tree["export"]["headers"] == {"x-api-key": "***"}
    assert tree["proxy"]["auth_token"] == "***"


def test_check_config_exit_codes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIDECAR_SPANS_PATH", "x")
    assert main(["check-config"]) == 2
    assert "did you mean SIDECAR_SPANS_PATHS" in capsys.readouterr().err
    monkeypatch.delenv("SIDECAR_SPANS_PATH")
    monkeypatch.setenv("SIDECAR_SPANS_ORPHAN_TIMEOUT", "forever")
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert "spans.orphan_timeout" in err and "'forever'" in err
    monkeypatch.delenv("SIDECAR_SPANS_ORPHAN_TIMEOUT")
    monkeypatch.setenv("SIDECAR_PROXY_AUTH_TOKEN", "tok-123")
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "auth_token: '***'" in out and "tok-123" not in out


def test_docs_and_reference_yaml_match_schema() -> None:
    """Regenerate with: python -m agent.config.render markdown|yaml."""
    assert (REPO / "docs" / "configuration.md").read_text() == render_markdown()
    assert (REPO / "configs" / "agent.yaml").read_text() == render_reference_yaml()


def test_reference_yaml_lists_every_key_and_loads_to_defaults() -> None:
    document = yaml.safe_load(render_reference_yaml())
    for path in leaves():
        node = document
        for part in path.split("."):
            assert part in node, f"{path} missing from configs/agent.yaml"
            node = node[part]
    assert load_config(config_path=str(REPO / "configs" / "agent.yaml"), environ={}) == load_config(
        environ={}
    )


def test_new_message_and_proxy_limits_are_validated() -> None:
    problems = problems_for(
        environ={
            "SIDECAR_MESSAGES_DEDUPE_MAX_IDS": "0",
            "SIDECAR_PROXY_READ_TIMEOUT": "0s",
            "SIDECAR_PROXY_MAX_BODY_BYTES": "10",
        }
    )
    text = "\n".join(problems)
    assert "messages.dedupe_max_ids: must be at least 1" in text
    assert "proxy.read_timeout: must be at least" in text
    assert "proxy.max_body_bytes: must be at least 1024" in text
