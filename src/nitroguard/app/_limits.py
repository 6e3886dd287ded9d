"""The runtime's rate limits and log throttling (sans-IO: the clock is injected)."""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["Bucket", "LogLimiter"]

log = logging.getLogger("nitroguard.app")


class Bucket:
    """Token bucket for the nonce attestation endpoint (per connection or app-wide)."""

    __slots__ = ("_clock", "_last", "_rate", "_size", "_tokens")

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = per_minute / 60.0
        self._size = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._size, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class LogLimiter:
    """At most one log line per key and interval; the suppressed count goes in the next.

    Anonymous peers trigger refusals at will: logging each one would let them flood
    the log (and the disk or the log pipeline behind it).
    """

    __slots__ = ("_clock", "_interval", "_state")

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self._interval = interval
        self._clock = clock
        self._state: dict[str, tuple[float, int]] = {}

    def limited(self, key: str, message: str, *args: object) -> bool:
        """Log `message` unless `key` was logged within the interval. True if logged."""
        now = self._clock()
        last, suppressed = self._state.get(key, (-float("inf"), 0))
        if now - last < self._interval:
            self._state[key] = (last, suppressed + 1)
            return False
        if suppressed:
            message += f" ({suppressed} similar suppressed in the last interval)"
        self._state[key] = (now, 0)
        log.warning(message, *args)
        return True
