"""Turns raw config values (YAML scalars or env/CLI strings) into typed ones.

Each converter raises ValueError with a message that says what was given and what is accepted;
the loader prefixes it with the key and where the value came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import urllib.parse
from typing import Any

import yaml

from agent.config.schema import choices_of, hints_of, kind_of
from agent.core.units import DURATION_HELP, SIZE_HELP, parse_duration, parse_size

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def coerce(hint: Any, value: Any) -> Any:
    kind = kind_of(hint)
    converter = _CONVERTERS[kind]
    if kind == "choice":
        return _to_choice(value, choices_of(hint))
    if kind == "sections":
        return _to_sections(value, hint.__args__[1])
    if kind == "section_list":
        return _to_section_list(value, hint.__args__[0])
    return converter(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean; expected true or false")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"{value!r} is not an integer") from None


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _to_str(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError(f"{value!r} is not a string")
    return "" if value is None else str(value)


def _to_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; expected {DURATION_HELP}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{value!r} is negative; expected {DURATION_HELP}")
        return float(value)
    try:
        return parse_duration(str(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a duration; expected {DURATION_HELP}") from None


def _to_size(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size; expected {SIZE_HELP}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is negative; expected {SIZE_HELP}")
        return value
    try:
        return parse_size(str(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a size; expected {SIZE_HELP}") from None


def _to_choice(value: Any, choices: tuple[str, ...]) -> str:
    text = _to_str(value).strip()
    if text in choices:
        return text
    lowered = text.lower()
    if lowered in choices:
        return lowered
    accepted = ", ".join(choices)
    raise ValueError(f"{value!r} is not one of the accepted values: {accepted}")


def _to_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [_to_str(item) for item in value]
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    raise ValueError(f"{value!r} is not a list; expected a YAML list or comma-separated text")


def _to_map(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): _to_str(v) for k, v in value.items()}
    if isinstance(value, str):
        return parse_key_values(value)
    raise ValueError(f"{value!r} is not a mapping; expected a YAML mapping or k=v,k=v")


def parse_key_values(text: str) -> dict[str, str]:
    """`k=v,k2=v2` with percent-encoded values, as the OpenTelemetry env vars are written."""
    result: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item.strip()!r} is not key=value (in {text!r})")
        result[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(val.strip())
    return result


def _to_sections(value: Any, cls: type[Any]) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else {}
        except yaml.YAMLError as exc:
            raise ValueError(f"not a YAML/JSON mapping: {exc}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{value!r} is not a mapping of names to settings")
    return {str(name): _to_section(cls, str(name), body) for name, body in value.items()}


def _to_section_list(value: Any, cls: type[Any]) -> list[Any]:
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else []
        except yaml.YAMLError as exc:
            raise ValueError(f"not a YAML/JSON list: {exc}") from None
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{value!r} is not a list of settings mappings")
    return [_to_section(cls, f"[{index}]", body) for index, body in enumerate(value)]


def section_with(section: Any, name: str, key: str, raw: Any) -> Any:
    """`section` with one key replaced by the coerced `raw` (indexed env overrides)."""
    hints = hints_of(type(section))
    if key not in hints:
        known = [spec.name for spec in dataclasses.fields(section)]
        match = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {match[0]!r}?" if match else ""
        raise ValueError(f"{name}.{key}: unknown key{hint}")
    try:
        return dataclasses.replace(section, **{key: coerce(hints[key], raw)})
    except ValueError as exc:
        raise ValueError(f"{name}.{key}: {exc}") from None


def _to_section(cls: type[Any], name: str, body: Any) -> Any:
    if body is None:
        return cls()
    if not isinstance(body, dict):
        raise ValueError(f"{name}: {body!r} is not a mapping of settings")
    hints = hints_of(cls)
    known = [spec.name for spec in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, raw in body.items():
        if key not in known:
            match = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {match[0]!r}?" if match else ""
            raise ValueError(f"{name}.{key}: unknown key{hint}")
        try:
            kwargs[key] = coerce(hints[key], raw)
        except ValueError as exc:
            raise ValueError(f"{name}.{key}: {exc}") from None
    return cls(**kwargs)


_CONVERTERS: dict[str, Any] = {
    "bool": _to_bool,
    "int": _to_int,
    "float": _to_float,
    "str": _to_str,
    "duration": _to_duration,
    "size": _to_size,
    "list": _to_list,
    "map": _to_map,
    "choice": None,
    "sections": None,
    "section_list": None,
}
