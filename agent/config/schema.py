"""Walks the config dataclasses into a flat list of leaves: key path, env var, type, default, doc.

Everything that needs to know "which keys exist" (the loader, check-config, the docs generator,
the drift test) asks this module instead of re-walking the dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agent.config.tree import Config

ENV_PREFIX = "SIDECAR_"
# SIDECAR_* variables that are not config keys but are still ours.
# Read outside the config tree: the config file's path, and (before any config exists, at
# import) the compiled hot modules' switch and directory (agent/native).
RESERVED_ENV = frozenset({"SIDECAR_CONFIG", "SIDECAR_AGENT_NATIVE", "SIDECAR_AGENT_NATIVE_DIR"})


@dataclass(frozen=True, slots=True)
class Leaf:
    path: str
    type_hint: Any
    default: Any
    doc: str
    secret: bool

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.path.upper().replace(".", "_")

    @property
    def kind(self) -> str:
        """One of: duration, size, bool, int, float, str, choice, list, map, sections,
        section_list."""
        return kind_of(self.type_hint)


def kind_of(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Annotated:
        return str(typing.get_args(hint)[1])
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return "choice"
    if origin is list:
        item_type = typing.get_args(hint)[0]
        return "section_list" if dataclasses.is_dataclass(item_type) else "list"
    if origin is dict:
        value_type = typing.get_args(hint)[1]
        return "sections" if dataclasses.is_dataclass(value_type) else "map"
    simple = {bool: "bool", int: "int", float: "float", str: "str"}
    if hint in simple:
        return simple[hint]
    raise TypeError(f"unsupported config type {hint!r}")


def choices_of(hint: Any) -> tuple[str, ...]:
    return tuple(str(choice) for choice in typing.get_args(hint))


def is_section(hint: Any) -> bool:
    return dataclasses.is_dataclass(hint) and isinstance(hint, type)


_HINTS: dict[type[Any], dict[str, Any]] = {}


def hints_of(cls: type[Any]) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, include_extras=True)
    return _HINTS[cls]


def walk(cls: type[Any] = Config, prefix: str = "") -> Iterator[Leaf]:
    """Leaves of `cls` in declaration order, sections expanded depth-first."""
    hints = hints_of(cls)
    instance = cls()
    for spec in dataclasses.fields(cls):
        hint = hints[spec.name]
        path = prefix + spec.name
        if is_section(hint):
            yield from walk(hint, path + ".")
            continue
        yield Leaf(
            path=path,
            type_hint=hint,
            default=getattr(instance, spec.name),
            doc=str(spec.metadata.get("doc", "")),
            secret=bool(spec.metadata.get("secret", False)),
        )


@functools.cache
def leaves() -> dict[str, Leaf]:
    return {leaf.path: leaf for leaf in walk()}


@functools.cache
def section_paths() -> frozenset[str]:
    paths = set()
    for path in leaves():
        parts = path.split(".")
        for end in range(1, len(parts)):
            paths.add(".".join(parts[:end]))
    return frozenset(paths)


@functools.cache
def env_names() -> dict[str, Leaf]:
    return {leaf.env: leaf for leaf in leaves().values()}


def section_doc(path: str) -> str:
    """The doc string of the section at `path` (e.g. 'export.retry')."""
    cls: type[Any] = Config
    doc = ""
    for part in path.split("."):
        spec = next(f for f in dataclasses.fields(cls) if f.name == part)
        doc = str(spec.metadata.get("doc", ""))
        cls = hints_of(cls)[part]
    return doc


def closest(name: str, candidates: list[str]) -> str | None:
    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None


def suggest_key(path: str) -> str:
    match = closest(path, sorted(set(leaves()) | section_paths()))
    return f"; did you mean {match!r}?" if match else ""


def suggest_env(name: str) -> str:
    match = closest(name, sorted(env_names()))
    return f"; did you mean {match}?" if match else ""
