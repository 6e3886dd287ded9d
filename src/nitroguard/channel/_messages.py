"""Application messages over the channel's byte stream (sans-IO).

A message is a u32 big-endian length and that many bytes, carried inside DATA records
(so lengths are encrypted too). Records and messages are independent: a message may
span records and a record may hold several messages.
"""

from __future__ import annotations

import struct

from nitroguard.errors import Reason, RemoteProtocolError

__all__ = ["DEFAULT_MAX_MESSAGE", "MessageBuffer", "encode_message"]

#: Default largest application message (both directions).
DEFAULT_MAX_MESSAGE = 1 << 20


def encode_message(message: bytes) -> bytes:
    """Prefix `message` with its u32 length."""
    if len(message) > 0xFFFF_FFFF:
        raise ValueError("message too large for a u32 length")
    return struct.pack(">I", len(message)) + message


class MessageBuffer:
    """Reassembles length-prefixed messages from decrypted data.

    Args:
        max_message: largest accepted message; a larger length is rejected before
            anything is buffered for it.
    """

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._max = max_message

    def feed(self, data: bytes | bytearray) -> None:
        """Add decrypted bytes."""
        self._buf += data

    def next_message(self) -> bytes | None:
        """Return the next complete message, or None if more data is needed.

        Raises:
            RemoteProtocolError: `too_large` when the announced length exceeds the limit.
        """
        if len(self._buf) < 4:
            return None
        (length,) = struct.unpack_from(">I", self._buf)
        if length > self._max:
            raise RemoteProtocolError(
                f"message of {length} bytes exceeds the {self._max}-byte limit", Reason.TOO_LARGE
            )
        if len(self._buf) < 4 + length:
            return None
        message = bytes(self._buf[4 : 4 + length])
        del self._buf[: 4 + length]
        return message

    @property
    def pending(self) -> int:
        """Bytes buffered but not yet returned."""
        return len(self._buf)
