from __future__ import annotations

import asyncio
import builtins
from typing import Any

import pytest

from agent.config.load import ConfigError, load_config
from agent.core.eventloop import loop_factory, loop_name, run


async def running_loop_name() -> str:
    return loop_name(asyncio.get_running_loop())


def test_auto_runs_on_uvloop_where_it_is_installed() -> None:
    pytest.importorskip("uvloop")
    assert run(running_loop_name(), "auto") == "uvloop"


def test_asyncio_runs_on_the_stdlib_loop() -> None:
    assert loop_factory("asyncio") is None
    assert run(running_loop_name(), "asyncio") == "asyncio"


def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_uvloop(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uvloop":
            raise ImportError("not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    assert loop_factory("auto") is None
    assert run(running_loop_name(), "auto") == "asyncio"


def test_the_choice_is_a_config_key_with_an_env_var() -> None:
    assert load_config(environ={}).event_loop == "auto"
    assert load_config(environ={"SIDECAR_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"


def test_an_unknown_loop_is_a_config_error_naming_the_choices() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"SIDECAR_EVENT_LOOP": "trio"})
    assert "event_loop" in str(caught.value) and "asyncio" in str(caught.value)
