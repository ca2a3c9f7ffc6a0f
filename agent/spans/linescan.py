"""Scans of a read's text by lines: its line count, and where a pretty-printed object closes.

The tailer's reader counts the lines of every block it hands on unsplit (the lines metric and
the read's line bound need the count), and the otel-sdk decoders find each pretty-printed
object in a block by its closing line (`agent.spans.decode.pretty`). Both look at every byte
of a pretty-printed file once, and CPython's byte loops for them (`bytes.count` of one byte,
a regular expression's search) take several instructions a byte, as much as a third of what
reading such a file costs beside the decoding (docs/benchmarks.md).

The C extension of the same name (`linescan.c` beside this file), which
`python -m agent.native.build` compiles with the other native modules, then loads in place of
this module (see `agent.native`) and does the same with the processor's vector compares and
`memchr`; this pure module is what runs without that build, with the same answers
(tests/unit/spans/test_linescan.py holds the two to each other on generated texts).
"""

from __future__ import annotations

import re
from typing import Final

AVAILABLE = False  # the C extension says True

# A line beginning with `{`: where the otel-sdk framer cuts an object.
_CUT: Final = re.compile(rb"\n\{")


def count_lines(text: bytes, start: int, end: int) -> int:
    """The newlines in `text[start:end]` (indexes as a slice takes them)."""
    return text.count(b"\n", start, end)


def object_close(text: bytes, at: int) -> int:
    """For an object whose first line starts at `at` (0 <= `at` <= len(text)): where the last
    line that is just `}` before the next line beginning with `{` (after the one at `at`), or
    the end, starts, less one (the index of its newline before, as `rfind(b"\\n}\\n")`
    answers); -1 when there is none."""
    if not 0 <= at <= len(text):
        raise ValueError("object_close: `at` is outside the text")
    cut = _CUT.search(text, at + 1)
    bound = len(text) if cut is None else cut.start() + 1
    return text.rfind(b"\n}\n", at, bound)
