"""Application messages over the channel's byte stream (sans-IO).

A message is a u32 big-endian length and that many bytes, carried inside DATA records
(so lengths are encrypted too). Records and messages are independent: a message may
span records and a record may hold several messages. The format is the package's one
u32 framing (`nitroguard.framing`), so this module only adds the server-wide memory
budget and the channel's error reasons on top of `FrameDecoder`.
"""

from __future__ import annotations

import sys

from nitroguard.errors import ConfigError, Reason, RemoteProtocolError
from nitroguard.framing import NEED_DATA, Frame, FrameDecoder, encode_frame

__all__ = ["DEFAULT_MAX_MESSAGE", "BufferBudget", "MessageBuffer", "encode_message"]

#: Default largest application message (both directions).
DEFAULT_MAX_MESSAGE = 1 << 20


_U32_MAX = 0xFFFF_FFFF


def encode_message(message: bytes) -> bytes:
    """Prefix `message` with its u32 length.

    Raises:
        LocalProtocolError: `frame_too_large` past 4 GiB - 1 (no u32 length).
    """
    return encode_frame(message, max_frame_size=_U32_MAX)


class BufferBudget:
    """One budget for the partial messages buffered by all connections of a server.

    Each anonymous peer may park up to one message's worth of bytes; without a global
    cap, ``max_connections x max_message`` is the server's exposure. When a `feed`
    would take the total past `limit`, the largest buffers are evicted first: if the
    feeding buffer is the largest, it is refused; otherwise the largest other buffer is
    emptied at once (its memory is freed) and its connection fails on its next use.
    Both cases raise `memory_budget`.

    Args:
        limit: bytes allowed across every buffer (> 0).
    """

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ConfigError("the buffer budget must be > 0")
        self.limit = limit
        self.used = 0
        self.evictions = 0
        """Buffers refused or evicted so far (for logs and tests)."""
        self._buffers: dict[int, MessageBuffer] = {}

    def _grow(self, buffer: MessageBuffer, extra: int) -> None:
        self._buffers[id(buffer)] = buffer
        while self.used + extra > self.limit:
            # The largest buffer (counting what this feed would add) goes first.
            largest = max(
                self._buffers.values(), key=lambda b: b.pending + (extra if b is buffer else 0)
            )
            self.evictions += 1
            if largest is buffer:
                buffer.evict()
                raise RemoteProtocolError(
                    f"buffered messages exceed the server's budget of {self.limit} bytes",
                    Reason.MEMORY_BUDGET,
                )
            largest.evict()
        self.used += extra

    def _forget(self, buffer: MessageBuffer, amount: int) -> None:
        self.used -= amount
        if not buffer.pending:
            self._buffers.pop(id(buffer), None)


class MessageBuffer:
    """Reassembles length-prefixed messages from decrypted data.

    Args:
        max_message: largest accepted message; a larger length is rejected before
            anything is buffered for it.
        budget: a server-wide `BufferBudget` this buffer's pending bytes count against.
    """

    def __init__(
        self, max_message: int = DEFAULT_MAX_MESSAGE, budget: BufferBudget | None = None
    ) -> None:
        self._max = max_message
        self._decoder = self._new_decoder()
        self._budget = budget
        self._held = 0  # bytes counted against the budget
        self._evicted = False

    def _new_decoder(self) -> FrameDecoder:
        # No per-buffer byte cap beyond one message: the server-wide `BufferBudget`
        # bounds what all connections hold together.
        return FrameDecoder(self._max, max_buffer_size=sys.maxsize)

    def _refuse_if_evicted(self) -> None:
        if self._evicted:
            raise RemoteProtocolError(
                "this connection's buffer was evicted (server memory budget)",
                Reason.MEMORY_BUDGET,
            )

    def _settle(self) -> None:
        """Return to the budget whatever the decoder no longer holds."""
        freed = self._held - self._decoder.buffered
        if freed > 0:
            self._held -= freed
            if self._budget is not None:
                self._budget._forget(self, freed)

    def feed(self, data: bytes | bytearray) -> None:
        """Add decrypted bytes.

        Raises:
            RemoteProtocolError: `memory_budget` when the server-wide budget refused it
                (or evicted this buffer earlier).
        """
        self._refuse_if_evicted()
        if not data:
            return  # b"" would mean EOF to the decoder; here it is just nothing
        if self._budget is not None:
            self._budget._grow(self, len(data))
        self._held += len(data)
        try:
            self._decoder.receive_data(data)
        except RemoteProtocolError:
            # An over-long length prefix: the decoder keeps the error and dropped its
            # bytes; `next_message` reports it (nothing was buffered for it).
            self._settle()

    def evict(self) -> None:
        """Drop the buffered bytes now (memory budget); every later use fails."""
        self.release()
        self._evicted = True

    def release(self) -> None:
        """Return every pending byte to the budget (the connection is over)."""
        self._decoder = self._new_decoder()
        self._settle()

    def next_message(self) -> bytes | None:
        """Return the next complete message, or None if more data is needed.

        Raises:
            RemoteProtocolError: `too_large` when the announced length exceeds the limit;
                `memory_budget` when this buffer was evicted.
        """
        self._refuse_if_evicted()
        try:
            event = self._decoder.next_event()
        except RemoteProtocolError as exc:
            self._settle()
            size = exc.details.get("size", "?")
            raise RemoteProtocolError(
                f"message of {size} bytes exceeds the {self._max}-byte limit", Reason.TOO_LARGE
            ) from None
        if event is NEED_DATA:
            return None
        self._settle()
        # The decoder never sees EOF here (the channel ends on records), so anything
        # but NEED_DATA is a frame.
        return event.payload if isinstance(event, Frame) else None

    @property
    def pending(self) -> int:
        """Bytes buffered but not yet returned."""
        return self._decoder.buffered
