"""What a network sender waits on: its spans settled, one by one, by the span sender.

Spans read from files are settled against delivery marks that move a checkpoint; spans that
arrive in a request (`agent.receivers`) have no file to checkpoint: the request itself waits
until every one of its spans is safe (sent, fsync'd in the disk queue, or dead-lettered) and
only then answers. A `Receipt` is that wait. It is hashable by identity, so it rides in a
batch's marks beside the file marks.
"""

from __future__ import annotations

import asyncio


class Receipt:
    __slots__ = ("_done", "outstanding", "spans")

    def __init__(self, spans: int) -> None:
        self.spans = spans
        self.outstanding = spans
        self._done = asyncio.Event()
        if spans == 0:
            self._done.set()

    def settle(self, count: int) -> None:
        self.outstanding -= count
        if self.outstanding <= 0:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def wait(self) -> None:
        """Returns once every span is safe."""
        await self._done.wait()
