"""`sidecar-agent status`: read a running agent's /status and show it."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from agent.config.tree import Config
from agent.core.http import parse_listen


def admin_url(config: Config) -> str:
    host, port = parse_listen(config.admin.listen)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def fetch_status(base_url: str, timeout: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url.rstrip('/')}/status", timeout=timeout) as response:
        body: dict[str, Any] = orjson.loads(response.read())
        return body


def check_ready(config: Config, *, url: str | None, timeout: float) -> int:
    """0 when /readyz answers 200, 1 otherwise (unreachable, not ready, timeout)."""
    target = f"{(url or admin_url(config)).rstrip('/')}/readyz"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:
            ready = response.status == 200
    except urllib.error.HTTPError as error:
        sys.stderr.write(f"not ready: {error.read()[:500].decode(errors='replace')}\n")
        return 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        sys.stderr.write(f"cannot reach {target}: {exc}\n")
        return 1
    return 0 if ready else 1


def show_status(config: Config, *, url: str | None, as_json: bool, require_ready: bool) -> int:
    base = url or admin_url(config)
    try:
        status = fetch_status(base)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        sys.stderr.write(f"cannot read {base}/status: {exc}\n")
        return 1
    if as_json:
        sys.stdout.write(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif not require_ready:
        _print_table(status)
    return 1 if require_ready and not status.get("ready") else 0


def _print_table(status: dict[str, Any]) -> None:
    console = Console()
    ready = "[green]ready[/]" if status.get("ready") else "[red]not ready[/]"
    console.print(
        f"sidecar-agent {status.get('version')}  {ready}  up {status.get('uptime_seconds')}s"
    )
    health = Table("component", "state", "dependency", "reason")
    for name, state in status.get("health", {}).items():
        dependency = "[green]ok[/]" if state.get("dependency_ok", True) else "[red]down[/]"
        health.add_row(name, state.get("state", "?"), dependency, state.get("reason", ""))
    console.print(health)
    for name, info in status.get("components", {}).items():
        summary = info.get("summary") if isinstance(info, dict) else None
        if not summary:
            continue
        table = Table(title=name, show_header=False, title_justify="left")
        for key, value in summary.items():
            table.add_row(key.replace("_", " "), _readable(value))
        console.print(table)
    console.print("[dim]details: sidecar-agent status --json[/]")


def _readable(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
