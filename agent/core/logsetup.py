"""The agent's own logs: one JSON object a line on stdout (or readable text for terminals).

Call sites use the standard library: `log.info("message", extra={"key": value})`; every extra
attribute becomes a field of the JSON line.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import orjson

_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime", "taskName"}
)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}


def _timestamp(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


Redact = Callable[[str], str]


class RedactingFormatter(logging.Formatter):
    """Passes every finished line through `redact`: credentials never reach the log, whatever
    a message, an extra field or an exception's text quotes."""

    def __init__(self, inner: logging.Formatter, redact: Redact) -> None:
        super().__init__()
        self._inner = inner
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(self._inner.format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(_extras(record))
        if record.exc_info and record.exc_info[1] is not None:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=repr).decode()


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        text = f"{_timestamp(record.created)} {record.levelname:<7} {record.getMessage()}"
        if extras:
            text = f"{text}  {extras}"
        if record.exc_info and record.exc_info[1] is not None:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text


def configure_logging(
    level: str = "info",
    fmt: str = "json",
    stream: TextIO | None = None,
    *,
    redact: Redact | None = None,
) -> None:
    handler = logging.StreamHandler(stream or sys.stdout)
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else ConsoleFormatter()
    if redact is not None:
        formatter = RedactingFormatter(formatter, redact)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp logs every request at info; the admin and proxy servers would flood the log.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
