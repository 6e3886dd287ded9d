"""A hostile parent for channel tests and the demo: a frame-aware relay that can rewrite.

The parent instance relays every byte between users and the enclave (threat model), so
the interesting attacks are a relay that rewrites handshake frames, replays recorded
ones, or connects to another enclave. `HostileRelay` does all three, on the hardened
transport, for loopback tests only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
from collections.abc import Callable

from nitroguard.channel import _wire
from nitroguard.errors import ConfigError, Error
from nitroguard.framing import NEED_DATA, ConnectionClosed, FrameDecoder, encode_frame
from nitroguard.transport import Address, Connection, Server, ServerLimits, connect, serve

__all__ = ["HostileRelay", "Rewrite"]

#: ``rewrite(index, frame) -> frame``: index counts frames in that direction, from 0.
Rewrite = Callable[[int, bytes], bytes]

_MAX = 1 << 20


def _same(index: int, frame: bytes) -> bytes:
    return frame


class HostileRelay:
    """Relay frames between clients and `target`, rewriting them on the way.

    Args:
        target: the enclave's (or the next hop's) address.
        to_server: rewrites client-to-server frames.
        to_client: rewrites server-to-client frames.

    Attributes:
        transcripts: per connection, the list of ``(direction, frame)`` as received
            (before rewriting); direction is ``"c2s"`` or ``"s2c"``.
    """

    def __init__(
        self,
        target: str | Address,
        *,
        to_server: Rewrite = _same,
        to_client: Rewrite = _same,
    ) -> None:
        self.target = target
        self.to_server = to_server
        self.to_client = to_client
        self.transcripts: list[list[tuple[str, bytes]]] = []
        self._server: Server | None = None
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # Named rewrites for the classic attacks. They know the wire (docs/channel-protocol.md):
    # the relay is the attacker, and the attacker sees and rewrites every byte.

    @staticmethod
    def swap_handshake_key(share: bytes | None = None) -> Rewrite:
        """A ``to_client`` rewrite replacing the ServerHello's key share with `share`.

        The parent's man-in-the-middle: its own X25519 share instead of the enclave's
        (default: 32 fixed bytes). The attested key's signature no longer matches.
        """
        fake = share if share is not None else hashlib.sha256(b"mitm").digest()
        if len(fake) != _wire.SHARE_SIZE:
            raise ConfigError(f"a key share is {_wire.SHARE_SIZE} bytes")
        start = 1 + 2 + 2 + _wire.RANDOM_SIZE  # type, version, suite, server random

        def rewrite(index: int, frame: bytes) -> bytes:
            if index == 0 and frame[:1] == bytes([_wire.MessageType.SERVER_HELLO]):
                return frame[:start] + fake + frame[start + _wire.SHARE_SIZE :]
            return frame

        return rewrite

    @staticmethod
    def replay(frame: bytes, index: int = 0) -> Rewrite:
        """A rewrite that sends the recorded `frame` in place of frame number `index`."""
        return lambda i, f: frame if i == index else f

    @staticmethod
    def swap_document(document: bytes) -> Rewrite:
        """A ``to_client`` rewrite putting `document` in the ServerHello (e.g. an old one)."""

        def rewrite(index: int, frame: bytes) -> bytes:
            if index == 0 and frame[:1] == bytes([_wire.MessageType.SERVER_HELLO]):
                hello = _wire.decode_server_hello(frame)
                return _wire.encode_server_hello(dataclasses.replace(hello, document=document))
            return frame

        return rewrite

    def recorded(self, direction: str = "s2c", connection: int = 0) -> bytes:
        """The first frame relayed in `direction` on connection number `connection`."""
        return next(f for d, f in self.transcripts[connection] if d == direction)

    async def start(self, listen: str = "tcp://127.0.0.1:0") -> Address:
        """Start listening; returns the bound address."""
        limits = ServerLimits(max_frame_size=_MAX, first_byte_timeout=5, idle_timeout=5)
        self._server = await serve(self._relay, listen, limits)
        return self._server.address

    async def close(self, *, drain: float = 2.0) -> None:
        """Stop the relay, first letting relayed connections end by themselves.

        Args:
            drain: seconds to wait for in-flight connections (a shutdown that cut an
                idle read would drop frames still in flight, e.g. a final CLOSE).
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain):
                await self._idle.wait()
        if self._server is not None:
            await self._server.close()

    async def _relay(self, conn: Connection) -> None:
        self._active += 1
        self._idle.clear()
        try:
            await self._relay_one(conn)
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def _relay_one(self, conn: Connection) -> None:
        transcript: list[tuple[str, bytes]] = []
        self.transcripts.append(transcript)
        upstream = await connect(self.target, timeout=5)
        decoder = FrameDecoder(max_frame_size=_MAX)

        async def c2s() -> None:
            index = 0
            while (frame := await conn.recv_frame()) is not None:
                transcript.append(("c2s", frame))
                await upstream.send_all(encode_frame(self.to_server(index, frame)))
                index += 1
            await upstream.send_eof()

        async def s2c() -> None:
            index = 0
            while True:
                event = decoder.next_event()
                if event is NEED_DATA:
                    decoder.receive_data(await upstream.receive_some(_MAX))
                    continue
                if isinstance(event, ConnectionClosed):
                    return
                frame: bytes = event.payload  # type: ignore[union-attr]
                transcript.append(("s2c", frame))
                await conn.send_frame(self.to_client(index, frame))
                index += 1

        up, down = asyncio.create_task(c2s()), asyncio.create_task(s2c())
        tasks = (up, down)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if up in done and not up.cancelled() and up.exception() is None:
                # The client finished sending: let the server's last frames through.
                await asyncio.wait([down], timeout=5)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Error):
                    await task
            with contextlib.suppress(Error):
                await upstream.aclose()
