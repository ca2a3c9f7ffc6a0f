"""agent/spans/linescan.c against its pure twin, linescan.py, on generated texts.

With the native build loaded, `agent.spans.linescan` is the C extension; the pure module is
loaded here from its source file beside it, and every answer (or error) of the two must be
the same. Without the build both names are the pure module, and these tests are skipped,
saying why; the reader's and the decoders' own tests (tail/test_linereader.py,
decode/test_pretty.py) hold either to a plain reading of the same files.
"""

from __future__ import annotations

import importlib.util
import json
import random
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agent import native
from agent.spans import linescan

pytestmark = pytest.mark.skipif(
    not native.compiled(linescan),
    reason="the C line scans are part of the native build, which is not loaded here "
    f"({native.STATUS.describe()})",
)


def _pure() -> ModuleType:
    source = Path(__file__).parents[3] / "agent" / "spans" / "linescan.py"
    spec = importlib.util.spec_from_file_location("linescan_pure", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pure = _pure()


def outcome(call: Callable[..., int], *args: Any) -> int | str:
    try:
        return call(*args)
    except (ValueError, TypeError) as error:
        return type(error).__name__


def texts(seed: int, count: int) -> list[bytes]:
    """Texts of the bytes that matter (newlines, braces at line starts and inside lines),
    some pretty-printed SDK-like objects among them, of every small length and a few long."""
    rng = random.Random(seed)
    out = [b"", b"\n", b"{", b"{\n", b"\n}\n", b"{\n}\n", b"\n{", b"}\n{\n"]
    pieces = [b"\n", b"{", b"}", b" ", b"a", b"\n{", b"\n}\n", b"{\n", b'"x": {', b"\n    {"]
    for _ in range(count):
        size = rng.choice((rng.randrange(8), rng.randrange(40), rng.randrange(600)))
        out.append(b"".join(rng.choice(pieces) for _ in range(size)))
    record = {"name": "n", "context": {"span_id": "0x1"}, "events": [{"a": {"b": 1}}]}
    pretty = json.dumps(record, indent=4).encode() + b"\n"
    for _ in range(count // 10):
        objects = [pretty] * rng.randrange(1, 5)
        if rng.random() < 0.5:
            objects.insert(rng.randrange(len(objects) + 1), b"{\n" + b"x\n" * rng.randrange(3))
        text = b"".join(objects)
        out.append(text[: rng.randrange(len(text) + 1)] if rng.random() < 0.5 else text)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_count_lines_is_bytes_count_for_every_slice(seed: int) -> None:
    rng = random.Random(seed)
    for text in texts(seed, 300):
        size = len(text)
        bounds = [0, size, -1, size + 1, -size - 5, 2**70, -(2**70), True]
        bounds += [rng.randrange(-size - 3, size + 4) for _ in range(6)]
        for start in bounds:
            for end in bounds:
                expected = outcome(pure.count_lines, text, start, end)
                assert outcome(linescan.count_lines, text, start, end) == expected
                assert expected == text.count(b"\n", start, end)


def test_count_lines_of_long_texts_across_its_steps() -> None:
    """The C counts 16 bytes a step and sums its lanes every 255 steps: lengths around those
    sizes, and newlines everywhere or nowhere."""
    rng = random.Random(5)
    for size in (15, 16, 17, 255 * 16 - 1, 255 * 16, 255 * 16 + 1, 2 * 255 * 16 + 7, 100_003):
        for text in (b"\n" * size, b"x" * size, rng.randbytes(size), bytes(size)):
            for start, end in ((0, size), (1, size - 1), (3, size), (size // 2, size)):
                expected = text.count(b"\n", start, end)
                assert linescan.count_lines(text, start, end) == expected
                assert pure.count_lines(text, start, end) == expected


@pytest.mark.parametrize("seed", range(4))
def test_object_close_is_the_pure_search_from_every_position(seed: int) -> None:
    for text in texts(seed, 300):
        for at in (*range(-2, len(text) + 3), 2**70, -(2**70)):
            assert outcome(linescan.object_close, text, at) == outcome(pure.object_close, text, at)


def test_object_close_finds_the_pretty_objects_of_a_block() -> None:
    first = json.dumps({"a": {"b": [{"c": 1}]}}, indent=4).encode() + b"\n"
    second = json.dumps({"d": 2}, indent=4).encode() + b"\n"
    text = first + second
    assert linescan.object_close(text, 0) == len(first) - 3
    assert linescan.object_close(text, len(first)) == len(text) - 3
    assert linescan.object_close(first[:-2], 0) == -1  # cut before its last line
    cut = b"{\n" + first  # a line beginning with `{` inside: the framer cuts there
    assert linescan.object_close(cut, 0) == -1


def test_wrong_arguments_are_refused_alike() -> None:
    for args in ((b"ab", 0), ("ab", 0, 1), (b"ab", "0", 1)):
        with pytest.raises(TypeError):
            linescan.count_lines(*args)
    for args in (("ab", 0), (b"ab", "0"), (b"ab",)):
        with pytest.raises(TypeError):
            linescan.object_close(*args)
