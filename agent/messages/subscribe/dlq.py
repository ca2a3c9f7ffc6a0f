"""The dead-letter list `dlq:<topic>`: page through it, retry entries by message id (back into
the stream, in one script with their removal from the list), delete them.

Entries are the Message JSON JobFirst reads; a retried entry goes back with its own id (so
consumers that dedupe by id still can) and retry_count 0, in the topic's layout. Work on a long
list is done a page at a time, so memory stays bounded whatever its length.

The move is one script, not a MULTI: in a MULTI an XADD that fails (the key holds something
else) would not stop the LREM after it, and the message would be in neither place. The script
checks the element is still listed, XADDs (an error ends it before anything changed), then
removes it. In cluster mode the list and the stream are on different masters and the steps are
three commands (`_move_apart`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from typing import Any, NamedTuple

import orjson
from redis.exceptions import ResponseError

from agent.messages.subscribe.streams import RedisClient, dead_letter_key, moves_are_atomic

PAGE = 500
_MOVE = """
if not redis.call('LPOS', KEYS[1], ARGV[1]) then return 0 end
redis.call('XADD', KEYS[2], unpack(ARGV, 2))
return redis.call('LREM', KEYS[1], 1, ARGV[1])
"""

_DROP = """
local length = redis.call('LLEN', KEYS[1])
redis.call('UNLINK', KEYS[1])
return length
"""

Republish = Callable[[dict[str, Any]], list[bytes]]
"""A dead Message → the XADD command's arguments that put it back into its stream; raises
ValueError when the Message cannot be written in the topic's layout."""


class RetryResult(NamedTuple):
    retried: list[str]
    failed: dict[str, str]  # message id → why it stayed in the list


class DeadLetter(NamedTuple):
    position: int
    raw: bytes
    message: dict[str, Any] | None  # None: not a Message JSON (kept, listed, deletable)

    @property
    def message_id(self) -> str | None:
        value = self.message.get("id") if self.message else None
        return value if isinstance(value, str) else None

    def as_json(self) -> dict[str, Any]:
        if self.message is None:
            raw = self.raw.decode(errors="replace")
            return {"position": self.position, "id": None, "raw": raw}
        return {"position": self.position, "id": self.message_id, "message": self.message}


def _parse(index: int, raw: bytes) -> DeadLetter:
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return DeadLetter(index, raw, None)
    return DeadLetter(index, raw, message if isinstance(message, dict) else None)


class DeadLetterList:
    def __init__(self, client: RedisClient, topic: str) -> None:
        self.client = client
        self.topic = topic
        self.key = dead_letter_key(topic)

    async def length(self) -> int:
        return int(await self.client.llen(self.key))

    async def page(self, offset: int, limit: int) -> list[DeadLetter]:
        rows: Any = await self.client.lrange(self.key, offset, offset + limit - 1)
        return [_parse(offset + i, bytes(row)) for i, row in enumerate(rows)]

    async def _scan(self, removed: list[int]) -> AsyncIterator[DeadLetter]:
        """Every entry once, oldest first. The caller appends to `removed` for each entry it
        takes out, so the cursor steps back by that much (entries behind it shifted)."""
        offset = 0
        while True:
            entries = await self.page(offset, PAGE)
            if not entries:
                return
            taken = len(removed)
            for entry in entries:
                yield entry
            offset += len(entries) - (len(removed) - taken)

    async def retry(self, ids: Collection[str] | None, republish: Republish) -> RetryResult:
        """Put the entries with these message ids (all when None) back into the stream."""
        result = RetryResult([], {})
        removed: list[int] = []
        move = self.client.register_script(_MOVE)
        atomic = moves_are_atomic(self.client)
        async for entry in self._scan(removed):
            message_id = entry.message_id
            if entry.message is None or message_id is None:
                continue
            if ids is not None and message_id not in ids:
                continue
            try:
                command = republish({**entry.message, "retry_count": 0})
                stream = command[1]
                if atomic:
                    moved = await move(keys=[self.key, stream], args=[entry.raw, *command[2:]])
                else:
                    moved = await self._move_apart(entry.raw, command)
            except (ValueError, ResponseError) as error:
                result.failed[message_id] = str(error)
                continue
            if moved:
                removed.append(entry.position)
                result.retried.append(message_id)
        return result

    async def _move_apart(self, raw: bytes, command: list[bytes]) -> int:
        """The script's steps as three commands (cluster mode: the list and the stream are on
        different masters). A crash after the XADD leaves the entry listed too: retried
        again, it is a second copy with the same message id, never a lost one."""
        if await self.client.lpos(self.key, raw) is None:  # type: ignore[arg-type]
            return 0
        await self.client.execute_command(command[0].decode(), *command[1:])  # a str name
        return int(await self.client.lrem(self.key, 1, raw))  # type: ignore[arg-type]

    async def delete(self, ids: Collection[str] | None) -> int:
        """Remove the entries with these message ids (all when None); how many went."""
        if ids is None:  # one key, one script: the same in every mode (a cluster too)
            length = await self.client.register_script(_DROP)(keys=[self.key])
            return int(length)
        removed: list[int] = []
        async for entry in self._scan(removed):
            wanted = entry.message_id is not None and entry.message_id in ids
            if wanted and await self.client.lrem(self.key, 1, entry.raw):  # type: ignore[arg-type]
                removed.append(entry.position)
        return len(removed)
