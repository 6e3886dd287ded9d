"""`ServerLimits` (every resource limit of a server) and `Counters` (its live statistics).

The limits are the server's answer to VS-2 and MEM-1 (see `nitroguard.transport._server`):
frame size, first-byte, idle, absolute per-frame and write deadlines, connection and
handler caps.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Final, final

from nitroguard.errors import (
    ConfigError,
)
from nitroguard.framing import (
    MAX_FRAME_SIZE,
)

__all__ = ["TIMEOUT_KINDS", "Counters", "ServerLimits"]

#: Timeout kinds, as counted in `Counters.timeouts` and reported in `DeadlineError.details["kind"]`.
TIMEOUT_KINDS: Final = ("first_byte", "idle", "frame", "write", "lifetime")


@final
@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Every resource limit of a server. Defaults are safe for an enclave service.

    Attributes:
        max_connections: connections handled at once (default 1024); above it a
            new connection is accepted and closed immediately (counted as refused).
        max_frame_size: largest frame payload accepted or sent (default 1 MiB).
        first_byte_timeout: seconds from accept to the first byte (default 10).
        idle_timeout: seconds allowed between frames (default 60).
        frame_timeout: seconds from a frame's first byte to its last; absolute,
            not extended by progress (default 10).
        write_timeout: seconds a send may wait for a peer that does not read (default 10).
        max_lifetime: optional cap on a connection's total duration (default None: no cap).
        max_concurrent_handlers: handlers processing a request at once (default 256).
            A connection holds a slot from the moment `Connection.recv_frame`
            returns a frame until it calls `recv_frame` again (or returns); idle
            connections hold none, so they cannot starve busy ones.
        shutdown_grace: seconds `Server.close` lets connections drain before
            cancelling them (default 5).
    """

    max_connections: int = 1024
    max_frame_size: int = MAX_FRAME_SIZE
    first_byte_timeout: float = 10.0
    idle_timeout: float = 60.0
    frame_timeout: float = 10.0
    write_timeout: float = 10.0
    max_lifetime: float | None = None
    max_concurrent_handlers: int = 256
    shutdown_grace: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_frame_size", "max_concurrent_handlers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ServerLimits.{name} must be a positive int, got {value!r}")
        if self.max_frame_size > 0xFFFF_FFFF:
            raise ConfigError("ServerLimits.max_frame_size must fit in a u32 length prefix")
        for name in (
            "first_byte_timeout",
            "idle_timeout",
            "frame_timeout",
            "write_timeout",
            "shutdown_grace",
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not value > 0
                or math.isnan(value)
            ):
                raise ConfigError(
                    f"ServerLimits.{name} must be a positive number of seconds, got {value!r}"
                )
        lifetime: object = self.max_lifetime
        if lifetime is not None and not (isinstance(lifetime, int | float) and lifetime > 0):
            raise ConfigError(
                f"ServerLimits.max_lifetime must be None or positive, got {self.max_lifetime!r}"
            )

    def replace(self, **changes: Any) -> ServerLimits:
        """A copy with some limits changed (validated again)."""
        return dataclasses.replace(self, **changes)


@final
@dataclass(slots=True)
class Counters:
    """Live server statistics (read them any time; `snapshot` for a copy).

    Attributes:
        accepted: connections accepted and handled.
        refused: connections closed at once because of ``max_connections`` or shutdown.
        active: connections being handled now.
        timeouts: timeouts by kind (first_byte, idle, frame, write, lifetime).
        protocol_errors: connections closed for a framing violation (oversize, truncated).
        handler_errors: handler exceptions (each closed only its connection).
        disconnects: connections reset or broken by the peer.
        accept_errors: accept(2) failures survived (EMFILE, ECONNABORTED, ...).
        bytes_in: bytes received on all connections.
        bytes_out: bytes sent on all connections.
    """

    accepted: int = 0
    refused: int = 0
    active: int = 0
    timeouts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIMEOUT_KINDS, 0))
    protocol_errors: int = 0
    handler_errors: int = 0
    disconnects: int = 0
    accept_errors: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        out = dataclasses.asdict(self)
        out["timeouts"] = dict(self.timeouts)
        return out
