"""The modules compiled with mypyc (agent/native/build.py) keep the rule their coroutines need
there (docs/architecture.md, "Compiled modules"): no await inside an `except` or
`finally` block. Compiled, a handled exception lives in the thread's state rather than the
coroutine's, so a coroutine suspended in a handler makes other tasks' re-raises raise it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from agent.native.build import MODULES

ROOT = Path(__file__).resolve().parents[3]


def awaits_in_handlers(source: str) -> list[int]:
    """Lines of awaits (await, async with, async for) inside except or finally blocks."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Try | ast.TryStar):
            continue
        blocks = [handler.body for handler in node.handlers] + [node.finalbody]
        for statement in (statement for block in blocks for statement in block):
            lines += [
                inner.lineno
                for inner in ast.walk(statement)
                if isinstance(inner, ast.Await | ast.AsyncWith | ast.AsyncFor)
            ]
    return lines


@pytest.mark.parametrize("module", MODULES)
def test_no_await_inside_an_except_or_finally_block(module: str) -> None:
    assert awaits_in_handlers((ROOT / module).read_text()) == []


def test_the_check_finds_both_kinds() -> None:
    source = """
async def f():
    try:
        pass
    except OSError:
        await g()
    finally:
        async with h():
            pass
"""
    assert awaits_in_handlers(source) == [6, 8]
