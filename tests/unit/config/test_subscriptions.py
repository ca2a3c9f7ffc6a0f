"""`messages.subscriptions`: a list of sections, from YAML, whole-list env, per-field env and
--set, each field checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.load import ConfigError, load_config


def problems_for(**kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(**kwargs)  # type: ignore[arg-type]
    return caught.value.problems


def test_yaml_list_with_defaults_filled_in(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "messages:\n  subscriptions:\n"
        "    - {topic: orders, endpoint: 'http://127.0.0.1:8080/events', retry_delay: 1s}\n"
        "    - {topic: audit, endpoint: 'http://127.0.0.1:8080/dapr', protocol: dapr, bulk: 50}\n"
    )
    subs = load_config(config_path=str(path), environ={}).messages.subscriptions
    assert [s.topic for s in subs] == ["orders", "audit"]
    assert subs[0].retry_delay == 1.0 and subs[0].group == "jobfirst-consumer-group"
    assert subs[0].max_retries == 3 and subs[0].protocol == "jobfirst"
    assert subs[1].protocol == "dapr" and subs[1].bulk == 50


def test_whole_list_env_then_one_field_by_index_env() -> None:
    env = {
        "SIDECAR_MESSAGES_SUBSCRIPTIONS": '[{"topic": "a", "endpoint": "http://app/a"}]',
        "SIDECAR_MESSAGES_SUBSCRIPTIONS_0_MAX_RETRIES": "7",
        "SIDECAR_MESSAGES_SUBSCRIPTIONS_1_TOPIC": "b",
        "SIDECAR_MESSAGES_SUBSCRIPTIONS_1_ENDPOINT": "http://app/b",
        "SIDECAR_MESSAGES_SUBSCRIPTIONS_1_ORDERED": "true",
    }
    subs = load_config(environ=env).messages.subscriptions
    assert [(s.topic, s.max_retries, s.ordered) for s in subs] == [("a", 7, False), ("b", 3, True)]


def test_cli_set_by_index_appends_an_entry() -> None:
    overrides = [
        "messages.subscriptions.0.topic=orders",
        "messages.subscriptions.0.endpoint=http://127.0.0.1:9/x",
    ]
    subs = load_config(environ={}, cli_overrides=overrides).messages.subscriptions
    assert subs[0].endpoint == "http://127.0.0.1:9/x"


def test_bad_fields_are_named_with_their_source() -> None:
    env = {
        "SIDECAR_MESSAGES_SUBSCRIPTIONS_0_TOPIC": "a b",
        "SIDECAR_MESSAGES_SUBSCRIPTIONS_0_ENDPOINT": "ftp://x",
        "SIDECAR_MESSAGES_SUBSCRIPTIONS_0_PROCESSING_TIMEOUT": "1s",
    }
    problems = problems_for(environ=env)
    assert any("subscriptions.0.topic" in p and "not a valid topic" in p for p in problems)
    assert any("subscriptions.0.endpoint" in p and "http://" in p for p in problems)
    assert any("processing_timeout: must be above" in p for p in problems)


def test_unknown_field_suggests_the_closest_and_gaps_are_refused() -> None:
    problems = problems_for(environ={"SIDECAR_MESSAGES_SUBSCRIPTIONS_0_ENDPOINTS": "http://x/"})
    assert problems == [
        "messages.subscriptions.0.endpoints: unknown key; did you mean 'endpoint'? "
        "(from SIDECAR_MESSAGES_SUBSCRIPTIONS_0_ENDPOINTS)"
    ]
    problems = problems_for(environ={"SIDECAR_MESSAGES_SUBSCRIPTIONS_2_TOPIC": "x"})
    assert "no entry 0 yet" in problems[0]


def test_not_a_list_is_an_error() -> None:
    problems = problems_for(environ={"SIDECAR_MESSAGES_SUBSCRIPTIONS": "{topic: a}"})
    assert "is not a list" in problems[0]


def test_same_topic_and_group_twice_is_refused() -> None:
    both = "[{topic: a, endpoint: 'http://x/'}, {topic: a, endpoint: 'http://y/'}]"
    problems = problems_for(environ={}, cli_overrides=[f"messages.subscriptions={both}"])
    assert any("subscribed twice" in p for p in problems), problems
