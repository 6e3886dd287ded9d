"""Asyncio adapters for the attested channel: `serve`, `connect`, `SecureChannel`.

Thin: all protocol logic lives in the sans-IO `handshake`/`record` modules. The server
runs on the hardened `nitroguard.transport.serve` (connection caps, first-byte, idle,
per-frame and write deadlines); the channel adds a whole-handshake deadline and the
periodic refresh of the attestation document.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Protocol

from cryptography import x509

from nitroguard._resource import AsyncResource
from nitroguard.attestation.policy import Policy
from nitroguard.channel import _wire
from nitroguard.channel._events import CloseReceived, DataReceived, HandshakeComplete
from nitroguard.channel._handshake import (
    DEFAULT_SUITES,
    ClientConnection,
    ConnectionState,
    ServerConnection,
    ServerIdentity,
)
from nitroguard.channel._messages import (
    DEFAULT_MAX_MESSAGE,
    BufferBudget,
    MessageBuffer,
    encode_message,
)
from nitroguard.channel._record import RecordLimits
from nitroguard.channel._verify import DEFAULT_MAX_AGE, DocumentCheck
from nitroguard.errors import (
    ChannelError,
    ConfigError,
    DeadlineError,
    DecryptionError,
    Error,
    LocalProtocolError,
    Reason,
    RemoteProtocolError,
)
from nitroguard.framing import NEED_DATA, ConnectionClosed, FrameDecoder, encode_frame
from nitroguard.nsm import Attesting
from nitroguard.transport import Address, Connection, Server, ServerLimits, Stream
from nitroguard.transport import connect as transport_connect
from nitroguard.transport import serve as transport_serve

__all__ = ["MAX_FRAME", "ChannelServer", "SecureChannel", "connect", "serve"]

_log = logging.getLogger("nitroguard.channel")

#: Largest frame the channel ever sends or accepts (a full record).
MAX_FRAME = max(_wire.MAX_HANDSHAKE_MESSAGE, 1 + _wire.MAX_CIPHERTEXT)
#: Default deadline for a whole handshake, both sides.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: Default interval between attestation document refreshes (well inside MaxAge 300 s).
DEFAULT_REFRESH_INTERVAL = 60.0


class _Frames(Protocol):
    async def recv_frame(self) -> bytes | None: ...  # pragma: no cover - protocol
    async def send_frame(self, payload: bytes | bytearray) -> None: ...  # pragma: no cover


class _StreamFrames:
    """Client-side framing over a raw stream (the server side uses `Connection`)."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self._decoder = FrameDecoder(max_frame_size=MAX_FRAME)

    async def recv_frame(self) -> bytes | None:
        while True:
            event = self._decoder.next_event()
            if event is NEED_DATA:
                self._decoder.receive_data(await self.stream.receive_some(MAX_FRAME))
                continue
            if isinstance(event, ConnectionClosed):
                return None
            return event.payload  # type: ignore[union-attr]

    async def send_frame(self, payload: bytes | bytearray) -> None:
        await self.stream.send_all(encode_frame(payload))


class SecureChannel(AsyncResource):
    """An established attested channel (both roles).

    `recv()`/`send()` move raw bytes; `recv_message()`/`send_message()` move
    length-prefixed application messages. Closing sends the authenticated CLOSE;
    ``async with`` sends it only when the block ended without an exception (else
    `abort`), so the peer never mistakes a partial conversation for a complete one.
    """

    def __init__(
        self,
        conn: ClientConnection | ServerConnection,
        frames: _Frames,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
        on_close: Callable[[], Awaitable[None]] | None = None,
        budget: BufferBudget | None = None,
    ) -> None:
        self._conn = conn
        self._frames = frames
        self._messages = MessageBuffer(max_message, budget)
        self._on_close = on_close

    @property
    def handshake(self) -> HandshakeComplete:
        """The handshake result (document, server key, channel binding...)."""
        if self._conn.handshake is None:  # pragma: no cover - constructed established
            raise LocalProtocolError("not established")
        return self._conn.handshake

    async def _flush(self) -> None:
        for frame in self._conn.data_to_send():
            await self._frames.send_frame(frame)

    async def send(self, data: bytes) -> None:
        """Encrypt and send `data`.

        Raises:
            LocalProtocolError: after `aclose()`.
            TransportError: the stream broke or the write timed out.
        """
        self._conn.send_data(data)
        await self._flush()

    async def recv(self) -> bytes | bytearray | None:
        """Receive the next decrypted chunk; None after the peer's authenticated CLOSE.

        The chunk is one record's payload, as a fresh `bytearray` (no copy made).

        Raises:
            DecryptionError: any record failure, including truncation (opaque).
            TransportError: the stream broke or timed out.
        """
        while True:
            if self._conn.peer_closed:
                return None
            frame = await self._frames.recv_frame()
            if frame is None:
                try:
                    self._conn.receive_eof()  # raises unless the peer closed properly
                except DecryptionError:
                    # The stream's end is visible to the parent anyway: say what it
                    # was (the server logs it), rather than an opaque record failure.
                    raise DecryptionError("peer closed without authenticated close") from None
                return None
            for event in self._conn.receive_frame(frame):
                if isinstance(event, DataReceived) and event.data:
                    return event.data
                if isinstance(event, CloseReceived):
                    # Answer the peer's CLOSE with ours (section 4.4).
                    await self._close_records()
                    return None

    async def send_message(self, message: bytes) -> None:
        """Send one length-prefixed application message."""
        await self.send(encode_message(message))

    async def recv_message(self) -> bytes | None:
        """Receive one application message; None on a clean close between messages.

        Raises:
            RemoteProtocolError: `too_large` over `max_message`, or `truncated` when
                the peer closed in the middle of a message.
            DecryptionError: any record failure.
        """
        while (message := self._messages.next_message()) is None:
            data = await self.recv()
            if data is None:
                if self._messages.pending:
                    raise ChannelError("peer closed inside a message", Reason.TRUNCATED)
                return None
            self._messages.feed(data)
        return message

    async def _close_records(self) -> None:
        if self._conn.state in (ConnectionState.ESTABLISHED, ConnectionState.CLOSED):
            self._conn.close()
            with contextlib.suppress(Error):
                await self._flush()

    async def aclose(self) -> None:
        """Send the authenticated CLOSE (if not yet sent) and release the stream."""
        await self._close_records()
        await self.abort()

    async def abort(self) -> None:
        """Release the stream WITHOUT the authenticated CLOSE.

        Use it when the conversation did not complete (an exception): the peer then
        sees a truncation (`DecryptionError`), never a clean end of a partial reply.
        """
        self._messages.release()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            await on_close()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.aclose()
        else:
            await self.abort()


async def _run_handshake(conn: ClientConnection | ServerConnection, frames: _Frames) -> None:
    """Drive a handshake to ESTABLISHED, always flushing (alerts included)."""
    for out in conn.data_to_send():
        await frames.send_frame(out)
    while conn.state is not ConnectionState.ESTABLISHED:
        frame = await frames.recv_frame()
        try:
            if frame is None:
                conn.receive_eof()
            else:
                conn.receive_frame(frame)
        finally:
            with contextlib.suppress(Error):
                for out in conn.data_to_send():
                    await frames.send_frame(out)


async def connect(
    address: str | Address,
    expected: Policy | None = None,
    *,
    roots: Sequence[x509.Certificate] | None = None,
    check: DocumentCheck | None = None,
    max_age: float = DEFAULT_MAX_AGE,
    allow_debug: bool = False,
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,  # noqa: ASYNC109 - a default deadline is the safe default
    rng: Callable[[int], bytes] = os.urandom,
    suites: Sequence[_wire.Suite] = DEFAULT_SUITES,
    record_limits: RecordLimits | None = None,
    max_message: int = DEFAULT_MAX_MESSAGE,
    service: str | None = None,
) -> SecureChannel:
    """Connect, verify the enclave's attestation and establish the channel.

    Args:
        address: where the enclave (or the parent's proxy) listens.
        expected: your policy (PCRs...); `MaxAge(max_age)` and `NotDebug` are added.
            Required unless `check` is given.
        roots: trust roots (default: AWS Root-G1; the emulator's root in development).
        check: a prepared (shared, cache-warm) `DocumentCheck` instead of the above.
        max_age: accepted document age in seconds.
        allow_debug: accept debug-mode enclaves (development only).
        timeout: deadline for TCP connect and for the whole handshake.
        rng: randomness (client random, ephemeral key).
        suites: AEAD suites to offer.
        record_limits: record limits (must match the server's).
        max_message: largest application message accepted.
        service: the application name the documents must bind (an `EnclaveApp`'s
            name); ignored when `check` is given (it has its own `service`).

    Returns:
        The established `SecureChannel`; no application data flowed before the
        document verified and the attested key signed this handshake.

    Raises:
        ConfigError: neither `expected` nor `check`.
        VerificationError: the document failed verification or the policy.
        ChannelError: binding, signature, version or finished failure.
        DeadlineError: the handshake did not finish within `timeout`.
        TransportError: the connection failed.
    """
    if check is None:
        if expected is None:
            raise ConfigError("connect() needs a policy (expected=) or a check=")
        check = DocumentCheck(
            expected, roots=roots, max_age=max_age, allow_debug=allow_debug, service=service
        )
    stream = await transport_connect(address, timeout=timeout)
    frames = _StreamFrames(stream)
    conn = ClientConnection(check, rng=rng, suites=suites, limits=record_limits)
    try:
        async with asyncio.timeout(timeout):
            conn.start()
            await _run_handshake(conn, frames)
    except TimeoutError:
        await stream.aclose()
        raise DeadlineError(f"channel handshake not done within {timeout} s") from None
    except BaseException:
        await stream.aclose()
        raise
    return SecureChannel(conn, frames, max_message=max_message, on_close=stream.aclose)


ChannelHandler = Callable[[SecureChannel], Awaitable[None]]


class ChannelServer(AsyncResource):
    """A running channel server: the transport `Server` plus the document refresher."""

    def __init__(
        self, server: Server, identity: ServerIdentity, refresher: asyncio.Task[None]
    ) -> None:
        self.server = server
        self.identity = identity
        self._refresher = refresher

    @property
    def address(self) -> Address:
        """The bound address (TCP port 0 resolved)."""
        return self.server.address

    async def aclose(self) -> None:
        """Stop refreshing and accepting; drain connections (transport grace)."""
        self._refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._refresher
        await self.server.close()

    async def close(self) -> None:
        """The same as `aclose` (the transport `Server`'s name for it)."""
        await self.aclose()

    async def serve_forever(self) -> None:
        """Wait until closed (closes gracefully when cancelled)."""
        try:
            await self.server.serve_forever()
        finally:
            self._refresher.cancel()


async def _refresh_forever(identity: ServerIdentity, nsm: Attesting, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(identity.refresh, nsm)
        except Error as exc:
            # Keep serving the previous document: clients reject it once it is older
            # than their MaxAge, so a broken NSM fails closed on its own.
            _log.error("attestation refresh failed: %s", exc.diagnostics())


@dataclasses.dataclass(frozen=True, slots=True)
class _Acceptor:
    """What `serve` runs for each accepted connection: handshake, handler, CLOSE."""

    handler: ChannelHandler
    identity: ServerIdentity
    rng: Callable[[int], bytes]
    record_limits: RecordLimits | None
    handshake_timeout: float
    max_message: int
    budget: BufferBudget | None

    async def __call__(self, conn: Connection) -> None:
        sconn = ServerConnection(self.identity, rng=self.rng, limits=self.record_limits)
        channel: SecureChannel | None = None
        try:
            try:
                async with asyncio.timeout(self.handshake_timeout):
                    await _run_handshake(sconn, conn)
            except TimeoutError:
                raise DeadlineError(
                    f"handshake not done within {self.handshake_timeout} s", kind="handshake"
                ) from None
            except (ChannelError, RemoteProtocolError) as exc:
                if exc.reason is Reason.FRAME_TOO_LARGE:
                    raise
                _log.info("handshake rejected: %s", exc.diagnostics())
                return
            channel = SecureChannel(sconn, conn, max_message=self.max_message, budget=self.budget)
            # NOTE: CLOSE only after a normal return. If the handler raises, the
            # transport drops the connection and the client sees a truncation.
            await self.handler(channel)
            await channel.aclose()
        except DeadlineError as exc:
            # The transport counts it; the log line says which limit acted.
            _log.warning("limit enforced: %s", exc.message)
            raise
        except RemoteProtocolError as exc:
            if exc.reason is Reason.FRAME_TOO_LARGE:
                _log.warning("limit enforced: %s", exc.message)
            raise
        finally:
            if channel is not None:
                # Whatever happened, this connection's parked bytes leave the budget.
                channel._messages.release()


async def serve(
    handler: ChannelHandler,
    address: str | Address,
    nsm: Attesting,
    *,
    limits: ServerLimits | None = None,
    identity: ServerIdentity | None = None,
    ready: Callable[[Address], None] | None = None,
    rng: Callable[[int], bytes] = os.urandom,
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    record_limits: RecordLimits | None = None,
    max_message: int = DEFAULT_MAX_MESSAGE,
    message_budget: BufferBudget | None = None,
) -> ChannelServer:
    """Serve `handler` over the attested channel on the hardened transport.

    Args:
        handler: ``async def handler(channel: SecureChannel)``, called after a
            complete handshake; the channel is closed when it returns.
        address: where to listen (``vsock://any:5000`` inside an enclave).
        nsm: the NSM (device, emulator or socket client) that attests the identity.
        limits: transport limits; `max_frame_size` is capped at `MAX_FRAME`.
        identity: the attested identity (default: generated from `rng` here, so only
            call this after the RNG checks; `EnclaveApp` does).
        ready: called with the bound address before the first accept.
        rng: randomness (identity key, server randoms, ephemeral keys).
        refresh_interval: seconds between document refreshes.
        handshake_timeout: deadline for a whole handshake.
        record_limits: record limits (must match the clients').
        max_message: largest application message accepted.
        message_budget: one `BufferBudget` for the partial messages of every
            connection (the largest buffers are evicted past it); None: no global cap.

    Returns:
        The running `ChannelServer`.

    Raises:
        NsmError: the first attestation failed (nothing is served).
        ConfigError: bad address or limits.
    """
    if identity is None:
        identity = ServerIdentity.generate(rng)
    await asyncio.to_thread(identity.refresh, nsm)
    limits = limits or ServerLimits(max_frame_size=MAX_FRAME)
    if limits.max_frame_size > MAX_FRAME:
        _log.info("limit: max_frame_size lowered to %d (largest channel record)", MAX_FRAME)
        limits = limits.replace(max_frame_size=MAX_FRAME)
    _log.info(
        "limit: handshake_timeout=%ss refresh_interval=%ss max_message=%d record_limits=%s",
        handshake_timeout,
        refresh_interval,
        max_message,
        record_limits or RecordLimits(),
    )

    on_connection = _Acceptor(
        handler, identity, rng, record_limits, handshake_timeout, max_message, message_budget
    )
    server = await transport_serve(on_connection, address, limits, ready=ready)
    refresher = asyncio.create_task(
        _refresh_forever(identity, nsm, refresh_interval),
        name="nitroguard-attestation-refresh",
    )
    return ChannelServer(server, identity, refresher)
