"""The framed echo service behind ``nitroguard serve echo`` (and the probe's reference target).

Protocol: every frame is echoed back unchanged. A frame whose payload starts
with ``sleep:SECONDS`` (ASCII decimal, e.g. ``sleep:2.5`` or ``sleep:1:padding``)
is echoed after sleeping that long, capped at `MAX_SLEEP`; the probe's
``slow-handler`` attack uses it to check that one slow request never delays
other connections.
"""

from __future__ import annotations

import asyncio
import re
from typing import Final

from nitroguard.transport import Connection

__all__ = ["MAX_SLEEP", "SLEEP_PREFIX", "echo_handler", "parse_sleep"]

#: Payload prefix asking the echo service to sleep before replying.
SLEEP_PREFIX: Final = b"sleep:"
#: Longest sleep honoured, in seconds.
MAX_SLEEP: Final = 30.0
_SLEEP_RE = re.compile(rb"sleep:([0-9]{1,6}(?:\.[0-9]{1,6})?)(?::|$)")


def parse_sleep(payload: bytes) -> float:
    """Seconds the echo service sleeps for ``payload`` (0 when not a sleep request)."""
    if not payload.startswith(SLEEP_PREFIX):
        return 0.0
    match = _SLEEP_RE.match(payload)
    if match is None:
        return 0.0
    return min(float(match.group(1)), MAX_SLEEP)


async def echo_handler(conn: Connection) -> None:
    """Echo every frame back; honour ``sleep:`` requests."""
    while (payload := await conn.recv_frame()) is not None:
        if payload.startswith(SLEEP_PREFIX):
            delay = parse_sleep(payload)
            if delay > 0:
                await asyncio.sleep(delay)
        await conn.send_frame(payload)
