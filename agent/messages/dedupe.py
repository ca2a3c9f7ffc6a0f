"""Recently accepted client-chosen message ids, so a retried publish gets the original answer.

Only ids the client chose are remembered: an id the agent generated can only come back if the
client copies it from our answer, and skipping them keeps id-less traffic free of this cost.
An id is "in progress" from validation until its record is in the queue (a concurrent retry
waits for that outcome), then "accepted" for `window` seconds, with the stream entry id filled
in once the XADD succeeds (for `?ack=redis` retries). Memory is bounded by `max_ids`: past it
the oldest ids are forgotten early. The cache lives in memory: after a restart, retries are
deduplicated only by IDMP (Redis >= 8.6) or by consumers, through the message id.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class Seen:
    __slots__ = ("accepted", "entry_id", "expires", "written")

    def __init__(self, expires: float, accepted: asyncio.Future[None]) -> None:
        self.expires = expires
        self.accepted: asyncio.Future[None] | None = accepted  # None once the put settled
        self.entry_id: bytes | None = None
        self.written: asyncio.Future[bytes | None] | None = None  # made when someone waits


class DedupeCache:
    def __init__(
        self, window: float, max_ids: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self.max_ids = max_ids
        self._clock = clock
        self._seen: dict[tuple[str, str], Seen] = {}
        self._order: deque[tuple[float, tuple[str, str], Seen]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def get(self, topic: str, message_id: str) -> Seen | None:
        seen = self._seen.get((topic, message_id))
        if seen is not None and seen.expires <= self._clock():
            return None
        return seen

    def reserve(self, topic: str, message_id: str) -> Seen:
        """Mark an id as in progress; the caller must `settle` it either way."""
        now = self._clock()
        self._evict(now)
        key = (topic, message_id)
        seen = Seen(now + self.window, asyncio.get_running_loop().create_future())
        self._seen[key] = seen
        self._order.append((seen.expires, key, seen))
        return seen

    def settle(self, topic: str, message_id: str, seen: Seen, error: BaseException | None) -> None:
        """The put finished: keep the id (success) or forget it so a retry can try again."""
        future, seen.accepted = seen.accepted, None
        if error is not None and self._seen.get((topic, message_id)) is seen:
            del self._seen[(topic, message_id)]
        if future is not None and not future.done():
            if error is None:
                future.set_result(None)
            else:
                if not isinstance(error, Exception):  # cancelled: waiters must retry, not die
                    error = RuntimeError("the first request with this id was cancelled")
                future.set_exception(error)
                future.exception()  # waiters may be gone; that is fine

    def written(self, topic: str, message_id: str, entry_id: bytes | None) -> None:
        """The XADD of an accepted id succeeded (or the entry was dead-lettered: None)."""
        seen = self._seen.get((topic, message_id))
        if seen is None:
            return
        seen.entry_id = entry_id
        if seen.written is not None and not seen.written.done():
            seen.written.set_result(entry_id)

    async def wait_written(self, seen: Seen) -> bytes | None:
        """The stream entry id of an accepted id, once written (bound it with a timeout)."""
        if seen.entry_id is not None:
            return seen.entry_id
        if seen.written is None:
            seen.written = asyncio.get_running_loop().create_future()
        return await asyncio.shield(seen.written)

    def _evict(self, now: float) -> None:
        # `order` also keeps the ids a failed put forgot (a bad entry, a full queue) until they
        # expire: its own bound stops clients that retry failures from growing it all window.
        order, seen = self._order, self._seen
        most = self.max_ids
        while order and (order[0][0] <= now or len(seen) >= most or len(order) >= 2 * most):
            _, key, entry = order.popleft()
            if seen.get(key) is entry:
                del seen[key]
