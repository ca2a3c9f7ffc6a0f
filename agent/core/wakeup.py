"""A broadcast wake-up for asyncio tasks that re-check their own condition after waking."""

from __future__ import annotations

import asyncio


class Wakeup:
    """``notify()`` wakes every task currently in ``wait_until``; later waiters wait afresh.

    Unlike ``asyncio.Event`` there is nothing to clear, so a notify can never be lost between
    one waiter's wake-up and another's clear.
    """

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    def notify(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._waiter = None

    async def wait_until(self, deadline: float | None) -> bool:
        """Wait for a notify; False if the loop clock passes ``deadline`` (None: never) first."""
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout_at(deadline):
                # Shielded: a waiter that times out must not cancel the others' future.
                await asyncio.shield(self._waiter)
        except TimeoutError:
            return False
        return True
