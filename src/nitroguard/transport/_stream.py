"""`Stream` / `Listener` ABCs and their socket implementation (TCP, Unix, vsock).

Trio-style resource contracts on asyncio: small ABCs, one implementation for
every socket family, `aclose()` always safe to call twice, and distinct errors
for "we closed it" (`ClosedResourceError`) versus "the peer broke it"
(`BrokenResourceError`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import errno
import os
import socket
import stat
from typing import Final, Protocol, final

from nitroguard._resource import AsyncResource
from nitroguard.errors import BrokenResourceError, ClosedResourceError, ConfigError, Reason
from nitroguard.transport._address import VMADDR_CID_ANY, Address, has_vsock

__all__ = ["Listener", "SocketListener", "SocketStream", "Stream", "open_listener"]

#: Bytes read per `receive_some` call when the caller does not say.
DEFAULT_RECEIVE_SIZE: Final = 64 * 1024
#: How long `aclose()` waits for buffered bytes to flush before aborting.
DEFAULT_CLOSE_TIMEOUT: Final = 5.0
_BACKLOG: Final = 1024


class _ByteCounter(Protocol):
    bytes_in: int
    bytes_out: int


class Stream(AsyncResource):
    """A bidirectional, half-closeable byte stream (trio's ``HalfCloseableStream``).

    Implementations: `SocketStream` (TCP, Unix, vsock). The channel layer and
    the proxy only ever use these four methods.
    """

    @abc.abstractmethod
    async def receive_some(self, max_bytes: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        """Return between 1 and ``max_bytes`` bytes, or ``b""`` at EOF.

        Raises:
            ClosedResourceError: the stream was closed locally.
            BrokenResourceError: the peer reset the connection.
        """

    @abc.abstractmethod
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send every byte of ``data``, waiting while the peer is not reading (backpressure).

        Raises:
            ClosedResourceError: the stream was closed locally (or EOF was sent).
            BrokenResourceError: the peer reset the connection.
        """

    @abc.abstractmethod
    async def send_eof(self) -> None:
        """Half-close: flush, then signal EOF (``SHUT_WR``); receiving still works."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the stream, flushing buffered bytes for a bounded time. Idempotent."""


class Listener(AsyncResource):
    """Something that accepts incoming `Stream` connections."""

    @property
    @abc.abstractmethod
    def address(self) -> Address:
        """The address actually bound (a TCP port 0 is resolved)."""

    @abc.abstractmethod
    async def accept(self) -> Stream:
        """Wait for and return the next connection."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop listening. Idempotent."""


@final
class SocketStream(Stream):
    """`Stream` over a connected stream socket of any family.

    Built on asyncio's transport/protocol machinery (`asyncio.StreamReader` /
    `StreamWriter`), which gives bounded read buffering (reading pauses when
    64 KiB is buffered) and write backpressure (`send_all` waits for drain).
    """

    __slots__ = ("_closed", "_counter", "_eof_sent", "_reader", "_writer")

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        counter: _ByteCounter | None = None,
    ) -> None:
        """Wrap an asyncio reader/writer pair (use `from_socket` or `connect` instead)."""
        self._reader = reader
        self._writer = writer
        self._counter = counter
        self._closed = False
        self._eof_sent = False

    @classmethod
    async def from_socket(
        cls, sock: socket.socket, *, counter: _ByteCounter | None = None
    ) -> SocketStream:
        """Wrap an already-connected socket (e.g. one returned by ``accept``).

        Args:
            sock: a connected ``SOCK_STREAM`` socket; ownership passes to the stream.
            counter: optional object whose ``bytes_in``/``bytes_out`` are incremented.
        """
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=DEFAULT_RECEIVE_SIZE, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        return cls(reader, writer, counter=counter)

    @property
    def socket(self) -> socket.socket | None:
        """The underlying socket (for options such as ``SO_PEERCRED``); do not read from it."""
        sock = self._writer.get_extra_info("socket")
        return sock if isinstance(sock, socket.socket) else None

    @property
    def peer(self) -> object:
        """The peer's socket address as returned by ``getpeername`` (family-specific)."""
        return self._writer.get_extra_info("peername")

    @property
    def closed(self) -> bool:
        """True once `aclose` or `abort` was called."""
        return self._closed

    async def receive_some(self, max_bytes: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        """See `Stream.receive_some`."""
        if self._closed:
            raise ClosedResourceError("receive on a closed stream")
        try:
            data = await self._reader.read(max_bytes)
        except OSError as exc:
            raise BrokenResourceError(
                f"connection broken while receiving: {exc}", Reason.CONNECTION_CLOSED
            ) from exc
        if self._counter is not None:
            self._counter.bytes_in += len(data)
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """See `Stream.send_all`."""
        if not self.write_nowait(data):
            await self.drain()

    def write_nowait(self, data: bytes | bytearray | memoryview) -> bool:
        """Queue ``data`` without waiting; True when nothing is left to wait for.

        When it returns False, await `drain` (under a timeout) before writing more.

        Raises:
            ClosedResourceError: closed locally or after `send_eof`.
            BrokenResourceError: the connection was lost.
        """
        if self._closed:
            raise ClosedResourceError("send on a closed stream")
        if self._eof_sent:
            raise ClosedResourceError("send after send_eof")
        writer = self._writer
        transport = writer.transport
        if transport.is_closing():
            raise BrokenResourceError("connection lost before send", Reason.CONNECTION_CLOSED)
        writer.write(data)
        if self._counter is not None:
            self._counter.bytes_out += len(data)
        # The common case (the kernel took everything) needs no await at all.
        return not transport.get_write_buffer_size()

    async def drain(self) -> None:
        """Wait until the write buffer is below the high-water mark (backpressure).

        Raises:
            BrokenResourceError: the connection was lost meanwhile.
        """
        try:
            await self._writer.drain()
        except OSError as exc:
            raise BrokenResourceError(
                f"connection broken while sending: {exc}", Reason.CONNECTION_CLOSED
            ) from exc

    async def send_eof(self) -> None:
        """See `Stream.send_eof`. A second call is a no-op."""
        if self._closed:
            raise ClosedResourceError("send_eof on a closed stream")
        if self._eof_sent:
            return
        self._eof_sent = True
        writer = self._writer
        if writer.transport.is_closing():
            return
        try:
            if writer.can_write_eof():
                # asyncio shuts down the write side once the buffer is flushed.
                writer.write_eof()
            await writer.drain()
        except OSError as exc:
            raise BrokenResourceError(
                f"connection broken while sending EOF: {exc}", Reason.CONNECTION_CLOSED
            ) from exc

    def abort(self) -> None:
        """Close immediately, discarding unsent bytes (used on errors and timeouts)."""
        self._closed = True
        self._writer.transport.abort()

    async def aclose(self, flush_timeout: float = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Flush buffered bytes for at most ``flush_timeout`` seconds, then close (abort after)."""
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        writer.close()
        try:
            async with asyncio.timeout(flush_timeout):
                await writer.wait_closed()
        except (TimeoutError, OSError):
            writer.transport.abort()
        except asyncio.CancelledError:
            writer.transport.abort()
            raise


def _family(address: Address) -> tuple[int, str | tuple[int, int]]:
    if address.kind == "unix":
        return socket.AF_UNIX, address.path
    if address.kind == "vsock":
        if not has_vsock():
            raise ConfigError("AF_VSOCK is not available on this platform", Reason.INVALID_ADDRESS)
        return socket.AF_VSOCK, (address.cid, address.port)
    raise AssertionError(address.kind)  # pragma: no cover


def _bind_socket(address: Address, backlog: int) -> socket.socket:
    if address.kind == "tcp":
        infos = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
        except BaseException:
            sock.close()
            raise
    else:
        ufamily, usockaddr = _family(address)
        if address.kind == "unix":
            _remove_stale_unix_socket(address.path)
        # SOCK_STREAM only: vsock SOCK_DGRAM has different semantics (checklist VS-6).
        sock = socket.socket(ufamily, socket.SOCK_STREAM)
        try:
            sock.bind(usockaddr)
        except BaseException:
            sock.close()
            raise
    try:
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _remove_stale_unix_socket(path: str) -> None:
    # Only ever unlink an existing *socket*; never a regular file someone pointed us at.
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)


def _bound_address(address: Address, sock: socket.socket) -> Address:
    if address.kind == "unix":
        return address
    name = sock.getsockname()
    if address.kind == "tcp":
        return Address("tcp", host=address.host, port=int(name[1]))
    cid, port = int(name[0]), int(name[1])
    return Address("vsock", port=port, cid=VMADDR_CID_ANY if address.cid == VMADDR_CID_ANY else cid)


@final
class SocketListener(Listener):
    """A listening socket (TCP, Unix or vsock) with a non-blocking accept."""

    def __init__(self, sock: socket.socket, address: Address) -> None:
        """Wrap a bound, listening, non-blocking socket (use `open_listener`)."""
        self._sock = sock
        self._address = address
        self._closed = False

    @property
    def address(self) -> Address:
        """See `Listener.address`."""
        return self._address

    @property
    def fileno(self) -> int:
        """The listening socket's file descriptor (-1 once closed)."""
        return -1 if self._closed else self._sock.fileno()

    async def accept_socket(self) -> socket.socket:
        """Accept one raw connected socket (non-blocking, not yet wrapped).

        Raises:
            OSError: as ``accept(2)`` reports it (EMFILE, ECONNABORTED, ...);
                the server's accept loop decides which ones to survive.
            ClosedResourceError: the listener was closed.
        """
        if self._closed:
            raise ClosedResourceError("accept on a closed listener")
        loop = asyncio.get_running_loop()
        conn, _ = await loop.sock_accept(self._sock)
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            # Small request/response frames: do not let Nagle add 40 ms.
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    async def accept(self) -> SocketStream:
        """See `Listener.accept`."""
        sock = await self.accept_socket()
        try:
            return await SocketStream.from_socket(sock)
        except BaseException:
            sock.close()
            raise

    async def aclose(self) -> None:
        """See `Listener.aclose`; also unlinks the Unix socket file it created."""
        if self._closed:
            return
        self._closed = True
        self._sock.close()
        if self._address.kind == "unix":
            _remove_stale_unix_socket(self._address.path)


def open_listener(address: Address, *, backlog: int = _BACKLOG) -> SocketListener:
    """Bind and listen on ``address``.

    Args:
        address: where to listen; TCP port 0 picks a free port.
        backlog: the ``listen(2)`` backlog.

    Returns:
        A `SocketListener` whose ``address`` is the one actually bound.

    Raises:
        ConfigError: reason ``invalid_address`` when vsock is unavailable or the
            address cannot be bound (in use, permission, unknown host).
    """
    try:
        sock = _bind_socket(address, backlog)
    except socket.gaierror as exc:
        raise ConfigError(
            f"cannot resolve {address}: {exc.strerror}", Reason.INVALID_ADDRESS
        ) from exc
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno == errno.EADDRINUSE:
            why = "address already in use"
        raise ConfigError(f"cannot listen on {address}: {why}", Reason.INVALID_ADDRESS) from exc
    return SocketListener(sock, _bound_address(address, sock))
