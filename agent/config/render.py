"""Renders config for people: the effective config with secrets masked, and the reference docs.

`python -m agent.config.render markdown > docs/configuration.md` and
`python -m agent.config.render yaml > configs/agent.yaml` regenerate the references; a test fails
when the committed files differ from what this prints.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import yaml

from agent.config.schema import Leaf, choices_of, leaves, section_doc, walk
from agent.config.secrets import MASK, mask_url
from agent.config.tree import Config
from agent.core.units import format_duration, format_size


def display_value(leaf: Leaf, value: Any, *, mask: bool) -> Any:
    """A YAML-friendly rendering of one leaf's value (durations and sizes in units)."""
    if mask and leaf.secret and value:
        if leaf.kind == "map":
            return {key: MASK for key in value}
        if leaf.kind == "str" and "://" in value:
            return mask_url(value)
        return MASK
    if mask and isinstance(value, str) and "://" in value:
        return mask_url(value)
    if leaf.kind == "duration":
        return format_duration(value)
    if leaf.kind == "size":
        return format_size(value)
    if leaf.kind == "sections":
        return {name: dataclasses.asdict(section) for name, section in value.items()}
    if leaf.kind == "section_list":
        return [dataclasses.asdict(section) for section in value]
    return value


def effective_tree(config: Config, *, mask: bool = True) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for leaf in walk():
        value: Any = config
        for part in leaf.path.split("."):
            value = getattr(value, part)
        node = tree
        *parents, last = leaf.path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = display_value(leaf, value, mask=mask)
    return tree


def render_effective(config: Config) -> str:
    return yaml.safe_dump(effective_tree(config), sort_keys=False, allow_unicode=True)


def _default_text(leaf: Leaf) -> str:
    value = display_value(leaf, leaf.default, mask=False)
    if value in ("", [], {}):
        return "(empty)"
    if isinstance(value, list):
        return ", ".join(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _accepted(leaf: Leaf) -> str:
    if leaf.kind == "choice":
        return " \\| ".join(choices_of(leaf.type_hint))
    return {
        "duration": "duration",
        "size": "size",
        "bool": "true \\| false",
        "int": "integer",
        "float": "number",
        "str": "text",
        "list": "list (env: comma-separated)",
        "map": "map (env: k=v,k=v)",
        "sections": "map of topic settings (env: YAML/JSON)",
        "section_list": "list of subscriptions (env: YAML/JSON, or one field: `_<n>_<FIELD>`)",
    }[leaf.kind]


def render_markdown() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from `agent/config/tree.py` by `python -m agent.config.render markdown`; a test",
        "fails when this file drifts from the schema.",
        "",
        "Precedence, lowest first: built-in defaults < YAML file (`--config PATH` or",
        "`SIDECAR_CONFIG`) < standard env (`OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME`,",
        "`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`, `REDIS_URL`) < `SIDECAR_*` env",
        "< CLI `--set key=value`. Durations: `250ms`, `5s`, `1m30s`. Sizes: `64MiB`, `10MB`.",
        "Unknown keys and unknown `SIDECAR_*` variables are errors that name the closest valid",
        "one. `messages.topics` entries take the keys of `messages.default_topic` (layout, key,",
        "maxlen). Each `messages.subscriptions` entry takes the keys listed below as",
        "`messages.subscriptions[].…`; one field of entry n is also set by",
        "`SIDECAR_MESSAGES_SUBSCRIPTIONS_<n>_<FIELD>` or",
        "`--set messages.subscriptions.<n>.<field>=…` (n = the current length appends an entry).",
        "",
        "Two variables are not config keys; they are read at import, before any config:",
        "`SIDECAR_AGENT_NATIVE` (`auto`, the default: run the compiled hot modules when a build",
        "of these exact sources is present; `off`: pure Python; `require`: a missing or stale",
        "build is an error; any other value is taken as `auto`, which `sidecar-agent version` and",
        "the start log line say) and `SIDECAR_AGENT_NATIVE_DIR` (the build's directory; default",
        "`<sys.prefix>/sidecar-agent-native`).",
        "",
        "| key | env var | default | accepted | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for leaf in leaves().values():
        secret = " (secret: masked by check-config)" if leaf.secret else ""
        lines.append(
            f"| `{leaf.path}` | `{leaf.env}` | `{_default_text(leaf)}` | {_accepted(leaf)} "
            f"| {leaf.doc}{secret} |"
        )
        if leaf.kind == "section_list":
            lines.extend(_entry_rows(leaf))
    return "\n".join(lines) + "\n"


def _entry_rows(list_leaf: Leaf) -> list[str]:
    """One row per field of a list entry (they have no fixed env var: `_<n>_<FIELD>`)."""
    rows = []
    for leaf in walk(list_leaf.type_hint.__args__[0], list_leaf.path + "[]."):
        env = f"{list_leaf.env}_<n>_{leaf.path.rpartition('.')[2].upper()}"
        rows.append(
            f"| `{leaf.path}` | `{env}` | `{_default_text(leaf)}` | {_accepted(leaf)} "
            f"| {leaf.doc} |"
        )
    return rows


def render_reference_yaml() -> str:
    lines = [
        "# sidecar-agent configuration: every key with its default.",
        "# Generated by `python -m agent.config.render yaml`; see docs/configuration.md.",
        "# Each key can also be set by env: SIDECAR_ + the key path upper-cased, . -> _",
        "# (spans.paths -> SIDECAR_SPANS_PATHS).",
    ]
    seen_sections: set[str] = set()
    for leaf in leaves().values():
        *parents, name = leaf.path.split(".")
        for depth in range(len(parents)):
            path = ".".join(parents[: depth + 1])
            if path not in seen_sections:
                seen_sections.add(path)
                indent = "  " * depth
                lines += ["", f"{indent}# {section_doc(path)}", f"{indent}{parents[depth]}:"]
        indent = "  " * len(parents)
        value = yaml.safe_dump(
            {name: display_value(leaf, leaf.default, mask=False)},
            default_flow_style=True,
            width=1000,
        ).strip()[1:-1]
        lines += [f"{indent}# {leaf.doc}", f"{indent}{value}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "markdown"
    output = render_markdown() if what == "markdown" else render_reference_yaml()
    sys.stdout.write(output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
