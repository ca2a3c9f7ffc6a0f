"""Which event loop runs the agent: uvloop where it is installed, asyncio's own otherwise.

uvloop (libuv underneath) takes less CPU per socket read, write and callback than the
stdlib's selector loop; the publish API's single-message requests are mostly that.
docs/benchmarks.md has the measured difference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from agent.config.tree import EventLoop

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: EventLoop) -> LoopFactory | None:
    """uvloop's loop for `auto` when it imports; None means asyncio's default loop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # an install without it (another platform): the stdlib loop works too
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], choice: EventLoop) -> T:
    """`asyncio.run(main)` on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """`uvloop` or `asyncio`, for the start-up log line and /status."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
