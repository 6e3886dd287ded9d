"""Sans-IO length-prefixed frame codec (h11 style: no sockets, no clocks).

Wire format: a frame is a 4-byte unsigned big-endian length ``n`` followed by
exactly ``n`` payload bytes. An empty payload (``n == 0``) is a valid frame.

Strategy (why it is shaped like this):

* The length prefix is validated against ``max_frame_size`` as soon as the four
  header bytes are present, *before* any payload byte is buffered, so a hostile
  4 GiB prefix is rejected without allocating anything (checklist MEM-1, VS-2).
* The decoder buffers at most ``max_buffer_size`` bytes. A well-behaved adapter
  only reads more when `FrameDecoder.next_event` returns `NEED_DATA`, so in
  practice the buffer never holds more than one read plus one partial frame.
* ``receive_data(b"")`` means EOF (as in h11). EOF on a frame boundary yields
  `ConnectionClosed`; EOF inside a frame raises `RemoteProtocolError` with
  reason ``truncated``: the peer closed early, and we never spin waiting for
  bytes that cannot come (the aws-nitro-enclaves-cli PR 609 bug, landscape 2a).
* After an error the decoder is in an error state and every later call raises
  again; it never silently resynchronises on attacker-controlled data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, final

from nitroguard._util import is_int
from nitroguard.errors import ConfigError, LocalProtocolError, Reason, RemoteProtocolError

# Everything in __all__ gets re-exported as part of the nitroguard.framing public API.
__all__ = [
    "HEADER_SIZE",
    "MAX_FRAME_SIZE",
    "NEED_DATA",
    "ConnectionClosed",
    "Frame",
    "FrameDecoder",
    "FrameEvent",
    "encode_frame",
]

#: Default upper bound on a frame's payload: 1 MiB.
MAX_FRAME_SIZE: Final = 1 << 20
#: Size of the length prefix.
HEADER_SIZE: Final = 4
#: Largest value a u32 length prefix can carry.
_U32_MAX: Final = 0xFFFF_FFFF
_HEADER = struct.Struct(">I")
# Reads larger than this are never useful to the decoder; it bounds the slack
# allowed on top of one full frame in the receive buffer.
_READ_SLACK: Final = 64 * 1024


class _NeedData:
    """Sentinel type: the decoder needs more bytes before it can produce an event."""

    _instance: _NeedData | None = None

    def __new__(cls) -> _NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by `FrameDecoder.next_event` when more input is required.
NEED_DATA: Final = _NeedData()


@final
@dataclass(frozen=True, slots=True)
class Frame:
    """One complete frame received from the peer.

    Attributes:
        payload: the frame's payload (without the length prefix).
    """

    payload: bytes


@final
@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its sending side cleanly, on a frame boundary."""


#: Everything `FrameDecoder.next_event` can return.
FrameEvent = Frame | ConnectionClosed | _NeedData


def _check_max(max_frame_size: int) -> int:
    if not is_int(max_frame_size):
        raise ConfigError(f"max_frame_size must be an int, not {type(max_frame_size).__name__}")
    if not 0 < max_frame_size <= _U32_MAX:
        raise ConfigError(f"max_frame_size must be in 1..{_U32_MAX}, got {max_frame_size}")
    return max_frame_size


def encode_frame(
    payload: bytes | bytearray | memoryview, *, max_frame_size: int = MAX_FRAME_SIZE
) -> bytes:
    """Encode one frame: u32 big-endian length + payload.

    Args:
        payload: the bytes to send.
        max_frame_size: refuse payloads larger than this (default `MAX_FRAME_SIZE`).

    Returns:
        The encoded frame.

    Raises:
        LocalProtocolError: reason ``frame_too_large`` when the payload exceeds
            ``max_frame_size``; the peer would reject it anyway.
        ConfigError: when ``max_frame_size`` is out of range.
    """
    limit = max_frame_size if max_frame_size == MAX_FRAME_SIZE else _check_max(max_frame_size)
    size = len(payload)
    if size > limit:
        raise LocalProtocolError(
            f"frame payload of {size} bytes exceeds the maximum of {limit}",
            Reason.FRAME_TOO_LARGE,
            size=size,
            max_frame_size=limit,
        )
    if type(payload) is bytes:
        return _HEADER.pack(size) + payload
    return _HEADER.pack(size) + bytes(payload)


@final
class FrameDecoder:
    """Incremental decoder for length-prefixed frames.

    Feed bytes with `receive_data` and pull events with `next_event` until it
    returns `NEED_DATA`. The decoder never touches a socket or a clock.

    Example::

        dec = FrameDecoder()
        dec.receive_data(b"\\x00\\x00\\x00\\x02hi")
        assert dec.next_event() == Frame(b"hi")
        assert dec.next_event() is NEED_DATA
    """

    __slots__ = ("_buf", "_eof", "_error", "_max", "_max_buffer", "_need", "_pos")

    def __init__(
        self, max_frame_size: int = MAX_FRAME_SIZE, *, max_buffer_size: int | None = None
    ) -> None:
        """Create a decoder.

        Args:
            max_frame_size: largest accepted payload, in bytes (default 1 MiB).
            max_buffer_size: most bytes buffered at once; defaults to one
                maximal frame plus 64 KiB of read slack.

        Raises:
            ConfigError: when a limit is out of range.
        """
        self._max = _check_max(max_frame_size)
        default_buffer = self._max + HEADER_SIZE + _READ_SLACK
        self._max_buffer = default_buffer if max_buffer_size is None else max_buffer_size
        if self._max_buffer < HEADER_SIZE + 1:
            raise ConfigError(f"max_buffer_size must be at least {HEADER_SIZE + 1}")
        self._buf = bytearray()
        self._pos = 0  # consumed prefix of _buf (compacted lazily)
        self._need = -1  # payload length of the frame being read, -1 = header not parsed
        self._eof = False
        self._error: RemoteProtocolError | None = None

    @property
    def max_frame_size(self) -> int:
        """The largest payload this decoder accepts."""
        return self._max

    @property
    def buffered(self) -> int:
        """Number of received bytes not yet returned as events."""
        return len(self._buf) - self._pos

    @property
    def in_frame(self) -> bool:
        """True when part of a frame has been received (a read deadline should run)."""
        return len(self._buf) > self._pos

    @property
    def eof(self) -> bool:
        """True once `receive_data(b"")` was called."""
        return self._eof

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes; ``b""`` signals EOF from the peer.

        Args:
            data: bytes read from the transport, or ``b""`` at EOF.

        Raises:
            LocalProtocolError: reason ``buffer_overflow`` when the caller feeds
                more than ``max_buffer_size`` bytes without draining events, or
                ``invalid_argument`` when data arrives after EOF.
            RemoteProtocolError: reason ``frame_too_large`` as soon as a length
                prefix exceeds ``max_frame_size``.
        """
        if self._error is not None:
            raise self._error
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("data received after EOF", Reason.INVALID_ARGUMENT)
        if self.buffered + len(data) > self._max_buffer:
            raise LocalProtocolError(
                f"receive buffer would exceed {self._max_buffer} bytes; drain events first",
                Reason.BUFFER_OVERFLOW,
                buffered=self.buffered,
                incoming=len(data),
            )
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data
        if self._need < 0 and self.buffered >= HEADER_SIZE:
            # Validate the prefix right away: the bound check precedes buffering
            # any further payload (MEM-1).
            self._parse_header()

    def _fail(self, err: RemoteProtocolError) -> RemoteProtocolError:
        self._error = err
        self._buf = bytearray()
        self._pos = 0
        return err

    def _parse_header(self) -> None:
        (size,) = _HEADER.unpack_from(self._buf, self._pos)
        if size > self._max:
            raise self._fail(
                RemoteProtocolError(
                    f"peer announced a {size}-byte frame; the maximum is {self._max}",
                    Reason.FRAME_TOO_LARGE,
                    size=size,
                    max_frame_size=self._max,
                )
            )
        self._need = size

    def next_event(self) -> FrameEvent:
        """Return the next event: a `Frame`, `ConnectionClosed` or `NEED_DATA`.

        Returns:
            `Frame` when a whole frame is buffered; `ConnectionClosed` after EOF
            on a frame boundary (repeatedly); otherwise `NEED_DATA`.

        Raises:
            RemoteProtocolError: reason ``frame_too_large`` for an oversized
                length prefix, ``truncated`` for EOF inside a frame. Once raised,
                every later call raises the same error.
        """
        if self._error is not None:
            raise self._error
        avail = len(self._buf) - self._pos
        if self._need < 0:
            if avail >= HEADER_SIZE:
                self._parse_header()
            elif avail == 0:
                return ConnectionClosed() if self._eof else NEED_DATA
            else:
                return self._need_more(avail, HEADER_SIZE)
        need = self._need
        if avail - HEADER_SIZE >= need:
            start = self._pos + HEADER_SIZE
            payload = bytes(self._buf[start : start + need])
            self._pos = start + need
            self._need = -1
            if self._pos == len(self._buf):
                self._buf.clear()
                self._pos = 0
            # A following header (if any) is validated on the next call, so a
            # bad prefix never hides the good frame that preceded it.
            return Frame(payload)
        return self._need_more(avail, HEADER_SIZE + need)

    def _need_more(self, have: int, want: int) -> _NeedData:
        if self._eof:
            raise self._fail(
                RemoteProtocolError(
                    f"peer closed the connection inside a frame ({have} of {want} bytes received)",
                    Reason.TRUNCATED,
                    received=have,
                    expected=want,
                )
            )
        return NEED_DATA

    def bytes_wanted(self) -> int:
        """How many more bytes complete the current header or frame (at least 1)."""
        avail = len(self._buf) - self._pos
        if self._need < 0:
            return max(1, HEADER_SIZE - avail)
        return max(1, HEADER_SIZE + self._need - avail)
