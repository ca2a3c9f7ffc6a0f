"""An exception no push function is meant to raise still settles its spans.

aiohttp raises a plain ValueError before connecting when the endpoint URL carries userinfo and
an Authorization header is set too; the sender must dead-letter that request with the reason,
not die and leave its spans unsettled.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from agent.config.tree import ExportConfig
from agent.core.metrics import Metrics
from agent.core.retry import PermanentError
from agent.spans.export.exporter import OtlpHttpExporter, pack_request
from agent.spans.export.outbound import Token, span_sender
from agent.spans.export.sender import Outcome
from tests.harness.eventually import eventually


async def test_userinfo_plus_authorization_header_dead_letters_the_request() -> None:
    export = replace(
        ExportConfig(),
        # Port 9 (discard) is never reached: aiohttp refuses the request before connecting.
        endpoint="http://user:secret@127.0.0.1:9/v1/traces",
        headers={"Authorization": "Bearer token"},
        timeout=1.0,
    )
    metrics = Metrics()
    exporter = OtlpHttpExporter(export, metrics)
    settled: list[tuple[Token, Outcome]] = []
    dead: list[str] = []

    async def dead_letter(record: bytes, error: PermanentError) -> None:
        dead.append(str(error))

    sender = span_sender(
        "test",
        export,
        exporter,
        metrics,
        on_settled=lambda token, outcome: settled.append((token, outcome)),
        dead_letter=dead_letter,
    )
    await exporter.start()
    try:
        await sender.submit(pack_request(b"spans", 3, gzipped=False, json=False), {"a": 3})
        await eventually(lambda: settled == [({"a": 3}, Outcome.DEAD_LETTERED)])
        assert len(dead) == 1 and "ValueError" in dead[0] and "AUTHORIZATION" in dead[0]
        assert not sender.failed
        assert sender.units[Outcome.DEAD_LETTERED] == 3
    finally:
        await sender.close(asyncio.get_running_loop().time() + 1.0)
        await exporter.close()
