"""Builds the frozen `Config` from its layers and says clearly what is wrong when it cannot.

Precedence, lowest first: built-in defaults < YAML file (`--config` / `SIDECAR_CONFIG`) < standard
env (`OTEL_*`, `REDIS_URL`) < `SIDECAR_*` env < CLI `--set key=value`. Every layer is reduced to
raw values keyed by dotted path, each remembering where it came from, so an error can say
"export.timeout (from SIDECAR_EXPORT_TIMEOUT): 'soon' is not a duration".
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.config import coerce as configcoerce
from agent.config import env as configenv
from agent.config.schema import (
    ENV_PREFIX,
    RESERVED_ENV,
    env_names,
    hints_of,
    is_section,
    leaves,
    section_paths,
    suggest_env,
    suggest_key,
)
from agent.config.tree import Config
from agent.config.validate import validate


class ConfigError(Exception):
    """Every problem found while loading, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class RawValue:
    value: Any
    source: str


RawLayer = dict[str, RawValue]


def load_config(
    *,
    config_path: str | None = None,
    environ: Mapping[str, str] | None = None,
    cli_overrides: list[str] | None = None,
) -> Config:
    """Build the effective config or raise ConfigError listing every problem."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    raw: RawLayer = {}
    path = config_path or env.get("SIDECAR_CONFIG") or None
    if path:
        raw.update(_yaml_layer(path, problems))
    raw.update(_standard_env_layer(env, problems))
    raw.update(_sidecar_env_layer(env, problems))
    raw.update(_cli_layer(cli_overrides or [], problems))
    config = _build(raw, problems)
    if config is not None:
        problems.extend(validate(config))
    if problems or config is None:
        raise ConfigError(problems)
    return config


def _yaml_layer(path: str, problems: list[str]) -> RawLayer:
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        problems.append(f"config file {path}: cannot read it: {exc.strerror or exc}")
        return {}
    except yaml.YAMLError as exc:
        problems.append(f"config file {path}: not valid YAML: {exc}")
        return {}
    if document is None:
        return {}
    if not isinstance(document, dict):
        problems.append(f"config file {path}: the top level must be a mapping of keys")
        return {}
    layer: RawLayer = {}
    _flatten(document, "", f"config file {path}", layer, problems)
    return layer


def _flatten(
    node: dict[Any, Any], prefix: str, source: str, out: RawLayer, problems: list[str]
) -> None:
    for key, value in node.items():
        path = f"{prefix}{key}"
        if path in leaves():
            out[path] = RawValue(value, source)
        elif path in section_paths():
            if isinstance(value, dict):
                _flatten(value, path + ".", source, out, problems)
            elif value is not None:
                problems.append(f"{path} ({source}): expected a mapping of keys, got {value!r}")
        else:
            problems.append(f"{path} ({source}): unknown key{suggest_key(path)}")


def _standard_env_layer(env: Mapping[str, str], problems: list[str]) -> RawLayer:
    layer: RawLayer = {}
    for path, value, source in configenv.standard_env_values(env, problems):
        layer[path] = RawValue(value, f"from {source}")
    return layer


def _sidecar_env_layer(env: Mapping[str, str], problems: list[str]) -> RawLayer:
    layer: RawLayer = {}
    known = env_names()
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        leaf = known.get(name)
        if leaf is not None:
            layer[leaf.path] = RawValue(value, f"from {name}")
        elif (item := _indexed_env(name)) is not None:
            layer[item] = RawValue(value, f"from {name}")
        else:
            problems.append(f"{name}: unknown setting{suggest_env(name)}")
    return layer


def _section_lists() -> list[str]:
    return [path for path, leaf in leaves().items() if leaf.kind == "section_list"]


def _indexed_env(name: str) -> str | None:
    """`SIDECAR_MESSAGES_SUBSCRIPTIONS_0_ENDPOINT` → `messages.subscriptions.0.endpoint`: one
    field of one entry of a list of sections, settable by env like every other key."""
    for path in _section_lists():
        found = re.fullmatch(re.escape(leaves()[path].env) + r"_(\d+)_([A-Z0-9_]+)", name)
        if found:
            return f"{path}.{int(found.group(1))}.{found.group(2).lower()}"
    return None


def _indexed_path(key: str) -> tuple[str, int, str] | None:
    """(list key, index, field) of `messages.subscriptions.0.endpoint`, else None."""
    for path in _section_lists():
        found = re.fullmatch(re.escape(path) + r"\.(\d+)\.([a-z0-9_]+)", key)
        if found:
            return path, int(found.group(1)), found.group(2)
    return None


def _cli_layer(overrides: list[str], problems: list[str]) -> RawLayer:
    layer: RawLayer = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            problems.append(f"--set {item!r}: expected key=value")
        elif key not in leaves() and _indexed_path(key) is None:
            problems.append(f"--set {key}: unknown key{suggest_key(key)}")
        else:
            layer[key] = RawValue(value, f"from --set {key}")
    return layer


def _build(raw: RawLayer, problems: list[str]) -> Config | None:
    values: dict[str, Any] = {}
    for path, leaf in leaves().items():
        if path not in raw:
            continue
        entry = raw[path]
        try:
            values[path] = configcoerce.coerce(leaf.type_hint, entry.value)
        except ValueError as exc:
            problems.append(f"{path} ({entry.source}): {exc}")
    _apply_indexed(raw, values, problems)
    if problems:
        return None
    config: Config = _instantiate(Config, "", values)
    return config


def _apply_indexed(raw: RawLayer, values: dict[str, Any], problems: list[str]) -> None:
    """Per-entry overrides of lists of sections, in index order; index n == len appends."""
    found = [(parsed, entry) for key, entry in raw.items() if (parsed := _indexed_path(key))]
    for (path, index, key), entry in sorted(found, key=lambda item: item[0]):
        leaf = leaves()[path]
        current = list(values.get(path, leaf.default))
        if index > len(current):
            problems.append(f"{path}.{index}.{key} ({entry.source}): no entry {len(current)} yet")
            continue
        if index == len(current):
            current.append(leaf.type_hint.__args__[0]())
        try:
            name = f"{path}.{index}"
            current[index] = configcoerce.section_with(current[index], name, key, entry.value)
        except ValueError as exc:
            problems.append(f"{exc} ({entry.source})")
            continue
        values[path] = current


def _instantiate(cls: type[Any], prefix: str, values: dict[str, Any]) -> Any:
    hints = hints_of(cls)
    kwargs: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):
        path = prefix + spec.name
        if is_section(hints[spec.name]):
            kwargs[spec.name] = _instantiate(hints[spec.name], path + ".", values)
        elif path in values:
            kwargs[spec.name] = values[path]
    return cls(**kwargs)
