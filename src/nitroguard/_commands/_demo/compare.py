"""Demonstration secret-comparison services for ``nitroguard probe leak`` (SC-1, SC-3).

**Demonstration only. Never deploy `leaky_compare_handler`.** Both services take
a guess (the request payload) and answer whether it equals a secret:

- `leaky_compare_handler` compares byte by byte, stops at the first mismatch,
  and spends ``delay`` seconds of CPU per matching byte (busy-waiting, like
  real work would: an ``asyncio.sleep`` would round to the event loop's
  millisecond timer). It replies ``ok`` or ``denied``: a timing leak (SC-1)
  and a length leak (SC-3), on purpose, so the probe can be shown to catch them.
- `constant_compare_handler` uses `hmac.compare_digest` and pads every reply to
  `REPLY_SIZE` bytes: the probe should find nothing.

Reply contents are assumed to be encrypted by the attested channel; the
parent sees only their timing and length, which is what the probe measures.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Final

from nitroguard.transport import Connection, Handler

__all__ = [
    "DEFAULT_DELAY",
    "REPLY_SIZE",
    "constant_compare_handler",
    "leaky_compare",
    "leaky_compare_handler",
]

#: Default busy-wait per matching byte of the leaky service (50 us: far above loopback noise).
DEFAULT_DELAY: Final = 50e-6
#: Every reply of the constant-time service is padded to this many bytes.
REPLY_SIZE: Final = 16
_OK: Final = b"ok"
_DENIED: Final = b"denied"


def _spin(seconds: float, clock: Callable[[], float] = time.perf_counter) -> None:
    end = clock() + seconds
    while clock() < end:
        pass


def leaky_compare(
    guess: bytes, secret: bytes, delay: float, spin: Callable[[float], None] = _spin
) -> bool:
    """The classic early-exit comparison, with ``delay`` seconds of work per matching byte.

    Deliberately NOT constant time (demonstration of SC-1).
    """
    for g, s in zip(guess, secret, strict=False):
        if g != s:
            return False
        spin(delay)
    return len(guess) == len(secret)


def leaky_compare_handler(secret: bytes, delay: float = DEFAULT_DELAY) -> Handler:
    """A handler that leaks ``secret`` through timing and reply length (demonstration only).

    Args:
        secret: the value guesses are compared with.
        delay: seconds of busy work per matching byte.

    Returns:
        The connection handler: replies ``ok`` (2 bytes) or ``denied`` (6 bytes).
    """

    async def handler(conn: Connection) -> None:
        while (guess := await conn.recv_frame()) is not None:
            await conn.send_frame(_OK if leaky_compare(guess, secret, delay) else _DENIED)

    return handler


def constant_compare_handler(secret: bytes) -> Handler:
    """A handler that compares in constant time and replies with a fixed length.

    Args:
        secret: the value guesses are compared with.

    Returns:
        The connection handler: replies ``ok`` or ``denied`` padded with NULs to
        `REPLY_SIZE` bytes.
    """
    ok = _OK.ljust(REPLY_SIZE, b"\0")
    denied = _DENIED.ljust(REPLY_SIZE, b"\0")

    async def handler(conn: Connection) -> None:
        while (guess := await conn.recv_frame()) is not None:
            # compare_digest's time depends only on the lengths, not on where bytes differ.
            await conn.send_frame(ok if hmac.compare_digest(guess, secret) else denied)

    return handler
