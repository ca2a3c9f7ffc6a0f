"""`sidecar-agent` (and `python -m agent`): run, check-config, ship, status, healthcheck, version.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agent import __version__, native
from agent.config.load import ConfigError, load_config
from agent.config.render import render_effective
from agent.config.secrets import Redactor
from agent.config.tree import Config
from agent.core.logsetup import configure_logging
from agent.spans.decode.registry import FORMATS

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", metavar="PATH", help="YAML config file (default: $SIDECAR_CONFIG)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one key, e.g. --set spans.paths=/logs/*.log (repeatable)",
    )
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecar-agent",
        description="Ships span logs to Jaeger as OTLP and proxies messages into Redis Streams.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser("run", help="run the agent until SIGTERM/SIGINT")
    _config_options(run)
    check = commands.add_parser(
        "check-config", help="print the effective config (secrets masked) or the errors"
    )
    _config_options(check)
    status = commands.add_parser("status", help="show a running agent's /status")
    _config_options(status)
    status.add_argument("--url", help="admin base URL (default: from admin.listen)")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.add_argument(
        "--ready", action="store_true", help="exit 1 unless the agent is ready (healthchecks)"
    )
    health = commands.add_parser(
        "healthcheck",
        help="exit 0 when the running agent's /readyz answers 200, else 1 (container HEALTHCHECK)",
    )
    _config_options(health)
    health.add_argument("--url", help="admin base URL (default: from admin.listen)")
    health.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS")
    ship = commands.add_parser(
        "ship", help="export span log files once (gzip too) and print a summary"
    )
    _config_options(ship)
    ship.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="span log files to export, in order (a rotated set oldest first: JobFirst spans "
        "started in one file and ended in a later one are joined)",
    )
    ship.add_argument(
        "--format", choices=FORMATS, help="input format (default: spans.format, auto)"
    )
    ship.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="give up when the endpoint has failed this long in a row (default: 60)",
    )
    ship.add_argument(
        "--dead-letter-file",
        metavar="PATH",
        help="where rejected records go (default: <data_dir>/deadletter/ship-spans.jsonl)",
    )
    ship.add_argument("--json", action="store_true", help="print the summary as JSON")
    commands.add_parser("version", help="print the version")
    return parser


def _load(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    if args.log_level:
        overrides.append(f"log.level={args.log_level}")
    return load_config(config_path=args.config, cli_overrides=overrides)


def _print_config_errors(error: ConfigError) -> None:
    sys.stderr.write("configuration errors:\n")
    for problem in error.problems:
        # No config to know the secrets by yet: URL credentials are hidden all the same.
        sys.stderr.write(f"  - {Redactor(()).text(problem)}\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "version":
        sys.stdout.write(f"sidecar-agent {__version__}\n{native.STATUS.describe()}\n")
        return EXIT_OK
    try:
        config = _load(args)
    except ConfigError as error:
        _print_config_errors(error)
        # Docker reserves health status 2; a healthcheck only ever says healthy (0) or not (1).
        return EXIT_FAILURE if args.command == "healthcheck" else EXIT_CONFIG
    if args.command == "healthcheck":
        from agent.cli.status import check_ready

        return check_ready(config, url=args.url, timeout=args.timeout)
    if args.command == "check-config":
        sys.stdout.write(render_effective(config))
        return EXIT_OK
    if args.command == "status":
        from agent.cli.status import show_status

        return show_status(config, url=args.url, as_json=args.json, require_ready=args.ready)
    if args.command == "ship":
        from agent.cli.ship import run_ship

        # Logs go to stderr so that stdout holds only the summary.
        configure_logging(
            "warning", "console", stream=sys.stderr, redact=Redactor.for_config(config).text
        )
        return run_ship(
            config,
            args.files,
            fmt=args.format,
            timeout=args.timeout,
            dead_letter_file=args.dead_letter_file,
            as_json=args.json,
        )
    configure_logging(config.log.level, config.log.format, redact=Redactor.for_config(config).text)
    from agent.app import run_until_signalled
    from agent.core.eventloop import run
    from agent.core.garbage import tune_garbage_collector

    tune_garbage_collector()
    return run(run_until_signalled(config), config.event_loop)
