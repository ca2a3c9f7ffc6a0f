"""Reassembling JSON objects that span several lines (pretty-printed exporter output).

`ObjectFramer.push(line)` returns the frames that line completes:

- `("object", text)`: a whole object (its lines joined with newlines), not yet parsed;
- `("skip", b"")`: a blank line between objects;
- `("not_json", line)`: a line outside any object that does not start one;
- `("truncated_object", text)`: an object cut off by the start of the next one (a
  crashed writer) — a line beginning with `{` in column 0 always starts a new
  top-level object, since pretty printers indent nested ones;
- `("object_too_large", text)`: an object that grew past `max_object_bytes`; its
  text is what was buffered, and the rest of it is skipped up to its closing brace.

Braces are balanced outside strings with a regex over the four bytes that matter,
so a line costs one C-level scan. State is only the buffered lines and is
snapshot/restored exactly (the depth is recomputed from the lines).
"""

from __future__ import annotations

import base64
import re
from typing import Any, Final

Frame = tuple[str, bytes]

_SIGNIFICANT: Final = re.compile(rb'[{}"\\]')


class ObjectFramer:
    def __init__(self, max_object_bytes: int) -> None:
        self.max_object_bytes = max_object_bytes
        self._lines: list[bytes] = []
        self._size = 0
        self._depth = 0
        self._in_string = False
        self._discarding = False

    @property
    def pending(self) -> int:
        return 1 if self._lines or self._discarding else 0

    def push(self, line: bytes) -> list[Frame]:
        if not self._lines and not self._discarding:
            return self._outside(line)
        if line[:1] == b"{":
            frames = self._cut()
            return frames + self._outside(line)
        if self._discarding:
            self._scan(line)
            if self._depth <= 0:
                self._reset()
            return []
        return self._append(line)

    def _outside(self, line: bytes) -> list[Frame]:
        stripped = line.strip()
        if not stripped:
            return [("skip", b"")]
        if stripped[:1] != b"{":
            return [("not_json", line)]
        return self._append(line)

    def _append(self, line: bytes) -> list[Frame]:
        self._lines.append(line)
        self._size += len(line) + 1
        self._scan(line)
        if self._depth <= 0:
            text = b"\n".join(self._lines)
            self._reset()
            return [("object", text)]
        if self._size > self.max_object_bytes:
            text = b"\n".join(self._lines)
            self._lines, self._size, self._discarding = [], 0, True
            return [("object_too_large", text)]
        return []

    def open_object(self) -> tuple[bytes, int] | None:
        """The lines of the object being read, joined, and their size as counted against
        `max_object_bytes`; None when no object is open or the rest of one is being skipped."""
        if not self._lines or self._discarding:
            return None
        return b"\n".join(self._lines), self._size

    def drop(self) -> None:
        """Forget the object being read: the caller has read it whole."""
        self._reset()

    def end(self) -> list[Frame]:
        """The input ended: an object still open is a truncated one (none while discarding
        the rest of one already reported too large)."""
        return self._cut() if self.pending else []

    def _cut(self) -> list[Frame]:
        text = b"\n".join(self._lines)
        was_discarding = self._discarding
        self._reset()
        return [] if was_discarding else [("truncated_object", text)]

    def _reset(self) -> None:
        self._lines, self._size, self._depth = [], 0, 0
        self._in_string = self._discarding = False

    def _scan(self, line: bytes) -> None:
        depth, in_string, skip_at = self._depth, self._in_string, -1
        for match in _SIGNIFICANT.finditer(line):
            at = match.start()
            if at == skip_at:
                continue
            char = line[at]
            if in_string:
                if char == 0x5C:  # backslash: the next byte is escaped
                    skip_at = at + 1
                elif char == 0x22:
                    in_string = False
            elif char == 0x22:
                in_string = True
            elif char == 0x7B:
                depth += 1
            elif char == 0x7D:
                depth -= 1
        self._depth, self._in_string = depth, in_string

    def snapshot(self) -> dict[str, Any]:
        if not self.pending:
            return {}
        return {
            "lines": [base64.b64encode(line).decode("ascii") for line in self._lines],
            "discarding": self._discarding,
            "depth": self._depth,
            "in_string": self._in_string,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._reset()
        if not state:
            return
        self._discarding = bool(state.get("discarding"))
        for text in state.get("lines", []):
            line = base64.b64decode(text)
            self._lines.append(line)
            self._size += len(line) + 1
            self._scan(line)
        if self._discarding:
            # The discarded lines are gone; only where the scan stood is known.
            self._depth = int(state.get("depth", 1))
            self._in_string = bool(state.get("in_string"))
