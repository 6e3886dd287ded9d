"""Clients: `connect` (async, returns a `Stream`) and `BlockingClient`.

The blocking `recv_exact` is the loop the seed warns about, done right
(checklist VS-3, landscape 2a / aws-nitro-enclaves-cli PR 609):

* a 0-byte ``recv`` is EOF and raises (``truncated``) instead of spinning;
* ``EINTR`` is retried (``InterruptedError``; PEP 475 already retries inside
  ``recv`` when the signal handler returns, but sock-likes may surface it);
* an absolute deadline bounds the whole call, not each ``recv``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable
from typing import Any, Final, Protocol, final

from nitroguard._resource import Resource
from nitroguard.errors import (
    BrokenResourceError,
    ClosedResourceError,
    ConfigError,
    DeadlineError,
    Reason,
    RemoteProtocolError,
    TransportError,
)
from nitroguard.framing import (
    MAX_FRAME_SIZE,
    NEED_DATA,
    ConnectionClosed,
    FrameDecoder,
    encode_frame,
)
from nitroguard.transport._address import Address, has_vsock, parse_address
from nitroguard.transport._stream import DEFAULT_RECEIVE_SIZE, SocketStream

__all__ = ["BlockingClient", "connect", "connect_socket", "recv_exact"]

DEFAULT_TIMEOUT: Final = 10.0


class _Recv(Protocol):
    def recv(self, bufsize: int, /) -> bytes: ...
    def settimeout(self, value: float | None, /) -> None: ...


def _addr(address: str | Address) -> Address:
    return parse_address(address) if isinstance(address, str) else address


async def connect(address: str | Address, *, timeout: float = DEFAULT_TIMEOUT) -> SocketStream:  # noqa: ASYNC109 - a built-in connect deadline is the safe default
    """Open a stream to ``address`` (TCP, Unix or vsock).

    Args:
        address: where to connect.
        timeout: seconds allowed for the connection to be established.

    Returns:
        A connected `SocketStream`.

    Raises:
        DeadlineError: ``timeout`` when connecting takes too long.
        TransportError: ``connection_refused`` when the peer is not listening.
        ConfigError: ``invalid_address`` for a bad address or missing AF_VSOCK.
    """
    sock = await connect_socket(address, timeout=timeout)
    try:
        return await SocketStream.from_socket(sock)
    except BaseException:
        sock.close()
        raise


async def connect_socket(
    address: str | Address,
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - as `connect`
) -> socket.socket:
    """Like `connect`, but return the raw connected non-blocking socket (same errors).

    The zero-copy proxy splices between raw descriptors (issue 16).
    """
    addr = _addr(address)
    loop = asyncio.get_running_loop()
    sock = _new_socket(addr)
    try:
        sock.setblocking(False)
        async with asyncio.timeout(timeout):
            if addr.kind == "tcp":
                family, sockaddr = await _resolve_tcp(addr)
                if family != sock.family:
                    sock.close()
                    sock = socket.socket(family, socket.SOCK_STREAM)
                    sock.setblocking(False)
                await loop.sock_connect(sock, sockaddr)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            else:
                await loop.sock_connect(sock, _sockaddr(addr))
            return sock
    except TimeoutError:
        sock.close()
        raise DeadlineError(
            f"connecting to {addr} timed out after {timeout:g} s", Reason.TIMEOUT, kind="connect"
        ) from None
    except socket.gaierror as exc:
        sock.close()
        raise TransportError(
            f"cannot resolve {addr}: {exc.strerror}", Reason.CONNECTION_REFUSED
        ) from exc
    except OSError as exc:
        sock.close()
        raise TransportError(
            f"cannot connect to {addr}: {exc.strerror or exc}", Reason.CONNECTION_REFUSED
        ) from exc
    except BaseException:
        sock.close()
        raise


async def _resolve_tcp(addr: Address) -> tuple[int, Any]:
    # IP literals need no resolver round trip (getaddrinfo runs in a thread pool).
    try:
        ip = ipaddress.ip_address(addr.host)
    except ValueError:
        pass
    else:
        if ip.version == 6:
            return socket.AF_INET6, (addr.host, addr.port, 0, 0)
        return socket.AF_INET, (addr.host, addr.port)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(addr.host, addr.port, type=socket.SOCK_STREAM)
    return infos[0][0], infos[0][4]


def _new_socket(addr: Address) -> socket.socket:
    if addr.kind == "tcp":
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if addr.kind == "unix":
        return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if not has_vsock():
        raise ConfigError("AF_VSOCK is not available on this platform", Reason.INVALID_ADDRESS)
    return socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)


def _sockaddr(addr: Address) -> str | tuple[int, int]:
    return addr.path if addr.kind == "unix" else (addr.cid, addr.port)


def recv_exact(
    sock: _Recv,
    n: int,
    *,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
) -> bytes:
    """Receive exactly ``n`` bytes from a blocking socket before ``deadline``.

    Args:
        sock: a blocking socket (or anything with ``recv``/``settimeout``).
        n: how many bytes to read.
        deadline: absolute time on ``clock`` by which all bytes must arrive.
        clock: the monotonic clock ``deadline`` refers to (injectable for tests).

    Returns:
        Exactly ``n`` bytes.

    Raises:
        RemoteProtocolError: ``truncated`` when the peer closes first (never spins).
        DeadlineError: ``timeout`` when the deadline passes.
        BrokenResourceError: the connection was reset.
    """
    chunks: list[bytes] = []
    got = 0
    while got < n:
        remaining = deadline - clock()
        if remaining <= 0:
            raise DeadlineError(
                f"recv_exact: deadline passed after {got} of {n} bytes",
                Reason.TIMEOUT,
                kind="read",
                received=got,
            )
        try:
            sock.settimeout(remaining)
            chunk = sock.recv(min(n - got, DEFAULT_RECEIVE_SIZE))
        except InterruptedError:
            continue  # EINTR: the connection is still live, retry (VS-3)
        except TimeoutError:
            continue  # re-checked against the deadline above
        except OSError as exc:
            raise BrokenResourceError(
                f"recv_exact: connection broken after {got} of {n} bytes: {exc}"
            ) from exc
        if not chunk:
            # The PR 609 fix: a 0-byte read is EOF, not "try again".
            raise RemoteProtocolError(
                f"peer closed the connection after {got} of {n} bytes",
                Reason.TRUNCATED,
                received=got,
                expected=n,
            )
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


@final
class BlockingClient(Resource):
    """A blocking framed client (for scripts, tests and non-async callers).

    Example::

        with BlockingClient("tcp://127.0.0.1:5000") as c:
            c.send_frame(b"ping")
            reply = c.recv_frame()
    """

    def __init__(
        self,
        address: str | Address,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_frame_size: int = MAX_FRAME_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Connect to ``address``.

        Args:
            address: where to connect.
            timeout: default deadline, in seconds, for connect and for each call.
            max_frame_size: largest frame accepted or sent.
            clock: monotonic clock for deadlines.

        Raises:
            TransportError: ``connection_refused`` or ``timeout``.
            ConfigError: ``invalid_address``.
        """
        self.address = _addr(address)
        self.timeout = timeout
        self._clock = clock
        self._max = max_frame_size
        self._decoder = FrameDecoder(max_frame_size)
        sock = _new_socket(self.address)
        sock.settimeout(timeout)
        try:
            if self.address.kind == "tcp":
                sock.close()
                sock = socket.create_connection(
                    (self.address.host, self.address.port), timeout=timeout
                )
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            else:
                sock.connect(_sockaddr(self.address))
        except TimeoutError:
            sock.close()
            raise DeadlineError(
                f"connecting to {self.address} timed out", Reason.TIMEOUT, kind="connect"
            ) from None
        except OSError as exc:
            sock.close()
            raise TransportError(
                f"cannot connect to {self.address}: {exc.strerror or exc}",
                Reason.CONNECTION_REFUSED,
            ) from exc
        self._sock: socket.socket | None = sock

    @property
    def socket(self) -> socket.socket:
        """The connected socket.

        Raises:
            ClosedResourceError: after `close`.
        """
        if self._sock is None:
            raise ClosedResourceError("client is closed")
        return self._sock

    def _deadline(self, timeout: float | None) -> float:
        return self._clock() + (self.timeout if timeout is None else timeout)

    def send_all(self, data: bytes, *, timeout: float | None = None) -> None:
        """Send all of ``data`` (bounded by ``timeout``, default the client's).

        Raises:
            DeadlineError: the peer did not read in time.
            BrokenResourceError: the connection broke.
        """
        sock = self.socket
        sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            sock.sendall(data)
        except TimeoutError:
            raise DeadlineError("send timed out", Reason.TIMEOUT, kind="write") from None
        except OSError as exc:
            raise BrokenResourceError(f"send failed: {exc}") from exc

    def send_frame(self, payload: bytes, *, timeout: float | None = None) -> None:
        """Send one frame.

        Raises:
            LocalProtocolError: ``frame_too_large``.
            DeadlineError / BrokenResourceError: as `send_all`.
        """
        self.send_all(encode_frame(payload, max_frame_size=self._max), timeout=timeout)

    def recv_exact(self, n: int, *, timeout: float | None = None) -> bytes:
        """Receive exactly ``n`` raw bytes (see module `recv_exact`)."""
        return recv_exact(self.socket, n, deadline=self._deadline(timeout), clock=self._clock)

    def recv_frame(self, *, timeout: float | None = None) -> bytes | None:
        """Receive one frame; ``None`` on a clean EOF between frames.

        Raises:
            RemoteProtocolError: ``truncated`` or ``frame_too_large``.
            DeadlineError: the whole frame did not arrive before the deadline.
        """
        sock = self.socket
        deadline = self._deadline(timeout)
        dec = self._decoder
        while True:
            event = dec.next_event()
            if isinstance(event, ConnectionClosed):
                return None
            if event is not NEED_DATA:
                return event.payload  # type: ignore[union-attr]
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise DeadlineError("recv_frame: deadline passed", Reason.TIMEOUT, kind="read")
            try:
                sock.settimeout(remaining)
                chunk = sock.recv(min(dec.bytes_wanted(), DEFAULT_RECEIVE_SIZE))
            except (InterruptedError, TimeoutError):
                continue
            except OSError as exc:
                raise BrokenResourceError(f"recv failed: {exc}") from exc
            dec.receive_data(chunk)

    def request(self, payload: bytes, *, timeout: float | None = None) -> bytes:
        """Send a frame and return the reply frame.

        Raises:
            RemoteProtocolError: ``truncated`` when the server closes instead of replying.
        """
        deadline = self._deadline(timeout)
        self.send_frame(payload, timeout=timeout)
        reply = self.recv_frame(timeout=max(0.0, deadline - self._clock()))
        if reply is None:
            raise RemoteProtocolError(
                "server closed the connection without replying", Reason.TRUNCATED
            )
        return reply

    def shutdown_write(self) -> None:
        """Half-close: send EOF, keep receiving."""
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise BrokenResourceError(f"shutdown failed: {exc}") from exc

    def close(self) -> None:
        """Close the connection. Idempotent."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
