"""Blocking client for the attested channel (scripts, CLIs, non-async callers).

Thin, like `aio`: framing comes from `nitroguard.transport.BlockingClient`, protocol
logic from the sans-IO `ClientConnection`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from types import TracebackType

from cryptography import x509

from nitroguard._resource import Resource
from nitroguard.attestation.policy import Policy
from nitroguard.channel import _wire
from nitroguard.channel._aio import DEFAULT_HANDSHAKE_TIMEOUT, MAX_FRAME
from nitroguard.channel._events import CloseReceived, DataReceived, HandshakeComplete
from nitroguard.channel._handshake import DEFAULT_SUITES, ClientConnection, ConnectionState
from nitroguard.channel._messages import DEFAULT_MAX_MESSAGE, MessageBuffer, encode_message
from nitroguard.channel._record import RecordLimits
from nitroguard.channel._verify import DEFAULT_MAX_AGE, DocumentCheck
from nitroguard.errors import ChannelError, ConfigError, Error, LocalProtocolError, Reason
from nitroguard.transport import Address, BlockingClient

__all__ = ["BlockingChannel", "connect_blocking"]


class BlockingChannel(Resource):
    """An established channel over a blocking socket (see `connect_blocking`).

    ``with`` sends the authenticated CLOSE only when the block ended without an
    exception (else `abort`), like `SecureChannel`.
    """

    def __init__(self, conn: ClientConnection, client: BlockingClient, max_message: int) -> None:
        self._conn = conn
        self._client = client
        self._messages = MessageBuffer(max_message)
        #: The stream failed under us (I/O or record error): no CLOSE can follow.
        self._broken = False

    @property
    def handshake(self) -> HandshakeComplete:
        """The handshake result (verified document, server key, channel binding)."""
        if self._conn.handshake is None:  # pragma: no cover - constructed established
            raise LocalProtocolError("not established")
        return self._conn.handshake

    def _flush(self) -> None:
        try:
            for frame in self._conn.data_to_send():
                self._client.send_frame(bytes(frame))
        except Error:
            self._broken = True
            raise

    def send(self, data: bytes) -> None:
        """Encrypt and send `data`."""
        self._conn.send_data(data)
        self._flush()

    def recv(self) -> bytes | bytearray | None:
        """Next decrypted chunk (a `bytearray`); None after the peer's authenticated CLOSE.

        Raises:
            DecryptionError: any record failure, truncation included (opaque).
        """
        while not self._conn.peer_closed:
            try:
                frame = self._client.recv_frame()
                if frame is None:
                    self._conn.receive_eof()
                    return None
            except Error:
                self._broken = True
                raise
            for event in self._conn.receive_frame(frame):
                if isinstance(event, DataReceived) and event.data:
                    return event.data
                if isinstance(event, CloseReceived):
                    self.close()
                    return None
        return None

    def send_message(self, message: bytes) -> None:
        """Send one length-prefixed application message."""
        self.send(encode_message(message))

    def recv_message(self) -> bytes | None:
        """One application message; None on a clean close between messages."""
        while (message := self._messages.next_message()) is None:
            data = self.recv()
            if data is None:
                if self._messages.pending:
                    raise ChannelError("peer closed inside a message", Reason.TRUNCATED)
                return None
            self._messages.feed(data)
        return message

    def request(self, message: bytes) -> bytes:
        """Send a message and wait for one reply.

        Raises:
            ChannelError: `connection_closed` if the server closed instead of replying.
        """
        self.send_message(message)
        reply = self.recv_message()
        if reply is None:
            raise ChannelError("server closed the channel", Reason.CONNECTION_CLOSED)
        return reply

    def close(self) -> None:
        """Send the authenticated CLOSE (once) and close the socket."""
        if self._conn.state in (ConnectionState.ESTABLISHED, ConnectionState.CLOSED):
            self._conn.close()
            with contextlib.suppress(Error):
                self._flush()
        self._client.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # An exception of the application (its own bug, an error reply it did not
        # expect) leaves a sound channel: end it with the authenticated CLOSE, so the
        # server does not log a truncation. Only a broken stream is aborted.
        if self._broken or self._conn.state is ConnectionState.ERROR:
            self.abort()
        else:
            self.close()

    def abort(self) -> None:
        """Close the socket WITHOUT the authenticated CLOSE (the peer sees truncation)."""
        self._client.close()


def connect_blocking(
    address: str | Address,
    expected: Policy | None = None,
    *,
    roots: Sequence[x509.Certificate] | None = None,
    check: DocumentCheck | None = None,
    max_age: float = DEFAULT_MAX_AGE,
    allow_debug: bool = False,
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    rng: Callable[[int], bytes] = os.urandom,
    suites: Sequence[_wire.Suite] = DEFAULT_SUITES,
    record_limits: RecordLimits | None = None,
    max_message: int = DEFAULT_MAX_MESSAGE,
    service: str | None = None,
) -> BlockingChannel:
    """Blocking twin of `nitroguard.channel.connect` (same arguments and errors).

    `timeout` bounds the connect and each read/write of the handshake.
    """
    if check is None:
        if expected is None:
            raise ConfigError("connect_blocking() needs a policy (expected=) or check=")
        check = DocumentCheck(
            expected, roots=roots, max_age=max_age, allow_debug=allow_debug, service=service
        )
    client = BlockingClient(address, timeout=timeout, max_frame_size=MAX_FRAME)
    conn = ClientConnection(check, rng=rng, suites=suites, limits=record_limits)
    try:
        conn.start()
        while conn.state is not ConnectionState.ESTABLISHED:
            for frame in conn.data_to_send():
                client.send_frame(bytes(frame))
            reply = client.recv_frame()
            try:
                if reply is None:
                    conn.receive_eof()
                else:
                    conn.receive_frame(reply)
            finally:
                with contextlib.suppress(Error):
                    for frame in conn.data_to_send():
                        client.send_frame(bytes(frame))
    except BaseException:
        client.close()
        raise
    return BlockingChannel(conn, client, max_message)
