"""The emulator as a service: `NsmServer` over a Unix socket, and its client `SocketNsm`.

Wire format: each message is a `nitroguard.framing` frame, a u32 big-endian length
then that many bytes; both sides use the transport's blocking ``recv_exact`` and
`BlockingClient`, so there is one framer in the package.
A request frame carries exactly the CBOR request the device would get (at most 4096
bytes); the answer frame carries exactly the device's CBOR answer (at most 12288).

The server is hardened like any enclave-facing service (threat checklist VS-1/VS-2):
one thread per connection with a cap on connections, bounded frames, deadlines
(an idle limit between requests, an absolute limit to receive a frame once started),
and a misbehaving or vanishing peer only ever loses its own connection.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Final, Self

from nitroguard._resource import Resource
from nitroguard.errors import ConfigError, NsmError, Reason, RemoteProtocolError, TransportError
from nitroguard.framing import HEADER_SIZE, NEED_DATA, Frame, FrameDecoder, encode_frame
from nitroguard.nsm import codec
from nitroguard.nsm._emulator import EmulatedNsm
from nitroguard.nsm._interface import Nsm
from nitroguard.transport import Address, BlockingClient, recv_exact

__all__ = ["DEFAULT_MAX_CONNECTIONS", "NsmServer", "SocketNsm"]

_log = logging.getLogger("nitroguard.nsm.socket")  # the pre-_-module name users filter on

DEFAULT_MAX_CONNECTIONS: Final = 32
#: Seconds a client may stay silent between requests.
DEFAULT_IDLE_TIMEOUT: Final = 300.0
#: Seconds to receive (or send) one whole frame once it has started.
DEFAULT_FRAME_TIMEOUT: Final = 10.0


def _peer_hung_up(sock: socket.socket) -> bool:
    """Whether an idle connection was closed (or sent something unasked) by the peer."""
    poller = select.poll()  # poll, not select: no FD_SETSIZE limit
    try:
        poller.register(sock, select.POLLIN)
        events = poller.poll(0)
    except (OSError, ValueError):
        return True
    # Between requests the server never speaks: readable means EOF, a reset or garbage.
    return bool(events)


# --------------------------------------------------------------------------- client


class SocketNsm(Nsm):
    """Client for an emulator served by ``nitroguard nsm serve --socket PATH``.

    Built on `nitroguard.transport.BlockingClient` (framing, ``recv_exact``,
    deadlines). Thread-safe (requests are serialized on one connection). After a
    transport failure the connection is dropped and the next request reconnects; a
    request is never retried automatically (ExtendPCR is not idempotent).

    Args:
        path: the server's Unix socket.
        timeout: seconds allowed for one round trip.

    Raises:
        NsmError: `nsm_unavailable` when nothing listens at `path`.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._closed = False
        self._client: BlockingClient | None = self._connect()

    def _connect(self) -> BlockingClient:
        try:
            # Answers are at most MAX_RESPONSE_SIZE; requests are checked against the
            # smaller MAX_REQUEST_SIZE by `Nsm.request` before they get here.
            return BlockingClient(
                Address("unix", path=self.path),
                timeout=self.timeout,
                max_frame_size=codec.MAX_RESPONSE_SIZE,
            )
        except TransportError as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
            why = cause.strerror if isinstance(cause, OSError) and cause.strerror else cause
            raise NsmError(
                f"cannot connect to the NSM emulator at {self.path}: "
                f"{why}; is `nitroguard nsm serve --socket {self.path}` running?",
                Reason.NSM_UNAVAILABLE,
                path=self.path,
            ) from exc

    def _drop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.close()
            self._client = None

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            self._closed = True
            self._drop()

    def _transact(self, request: bytes) -> bytes:
        with self._lock:
            if self._closed:
                raise NsmError(f"SocketNsm({self.path}) is closed", Reason.NSM_UNAVAILABLE)
            if self._client is not None and _peer_hung_up(self._client.socket):
                # The server closes idle connections; nothing was sent yet, so a new
                # connection is safe here (unlike a retry after sending).
                self._drop()
            if self._client is None:
                self._client = self._connect()
            try:
                return self._client.request(request)
            except RemoteProtocolError as exc:
                self._drop()  # the stream cannot be resynchronized
                if exc.reason is Reason.FRAME_TOO_LARGE:
                    raise NsmError(
                        f"emulator sent a {exc.details.get('size')}-byte frame, "
                        f"over {codec.MAX_RESPONSE_SIZE}",
                        Reason.INVALID_RESPONSE,
                    ) from exc
                raise self._io_error(exc) from exc
            except (TransportError, OSError) as exc:
                self._drop()
                raise self._io_error(exc) from exc

    def _io_error(self, exc: Exception) -> NsmError:
        return NsmError(f"NSM emulator connection {self.path} failed: {exc}", Reason.NSM_IO_ERROR)


# --------------------------------------------------------------------------- server


class NsmServer(Resource):
    """Serve an `EmulatedNsm` on a Unix socket (what ``nitroguard nsm serve`` runs).

    Args:
        nsm: the emulator answering requests.
        path: the socket path. A stale socket left by a dead server is replaced; a
            live one, or any other kind of file, is refused.
        max_connections: connections served at once; more are closed on accept.
        idle_timeout: seconds a connection may wait between requests.
        frame_timeout: seconds to receive or send one frame once started.
        mode: permissions of the socket file (owner-only by default: the emulator
            hands out signed documents and lets callers extend PCRs).

    Raises:
        ConfigError: the path is taken by a live server or a non-socket file, or
            cannot be bound.
    """

    def __init__(
        self,
        nsm: EmulatedNsm,
        path: str | os.PathLike[str],
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
        mode: int = 0o600,
    ) -> None:
        self.nsm = nsm
        self.path = os.fspath(path)
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.frame_timeout = frame_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._state_lock = threading.Lock()
        self._stopping = threading.Event()
        self._cleaned = False
        self._wake_r, self._wake_w = os.pipe()
        self._listener = self._bind(mode)
        self._inode = os.stat(self.path).st_ino
        self._accept_thread: threading.Thread | None = None
        self.refused = 0  # connections closed because the cap was reached

    def _bind(self, mode: int) -> socket.socket:
        path = Path(self.path)
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise ConfigError(f"{self.path} exists and is not a socket; refusing to replace it")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(self.path)
            except OSError:
                path.unlink()  # stale socket from a dead server
            else:
                raise ConfigError(f"an NSM emulator is already listening on {self.path}")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            os.chmod(self.path, mode)
            sock.listen(min(self.max_connections, socket.SOMAXCONN))
            # Non-blocking, so a connection reset between poll and accept cannot park
            # the accept loop where shutdown() would not wake it.
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {self.path}: {exc.strerror or exc}") from exc
        return sock

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Serve in a background thread (returns once listening)."""
        thread = threading.Thread(target=self.serve_forever, name="nsm-accept", daemon=True)
        self._accept_thread = thread
        thread.start()

    def serve_forever(self) -> None:
        """Accept connections until `shutdown` is called."""
        try:
            poller = select.poll()  # poll, not select: no FD_SETSIZE limit
            poller.register(self._listener, select.POLLIN)
            poller.register(self._wake_r, select.POLLIN)
            while not self._stopping.is_set():
                ready = {fd for fd, _ in poller.poll()}
                if self._wake_r in ready or self._stopping.is_set():
                    break
                try:
                    conn, _ = self._listener.accept()
                except BlockingIOError:
                    continue  # the peer left between poll and accept
                except OSError as exc:
                    # EMFILE and friends: keep serving the connections we have.
                    _log.warning("accept failed: %s", exc)
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        time.sleep(0.05)
                    continue
                self._dispatch(conn)
        finally:
            self._cleanup()

    def _dispatch(self, conn: socket.socket) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            _log.warning(
                "connection limit (%d) reached: closing a new connection", self.max_connections
            )
            conn.close()
            return
        thread = threading.Thread(target=self._serve_conn, args=(conn,), daemon=True)
        with self._state_lock:
            self._conns.add(conn)
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError as exc:  # out of threads: drop this one, keep serving
            _log.warning("cannot start a connection thread: %s", exc)
            with self._state_lock:
                self._conns.discard(conn)
                self._threads.discard(thread)
            conn.close()
            self._slots.release()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection, remove the socket file."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        with self._state_lock, contextlib.suppress(OSError):
            if not self._cleaned:
                os.write(self._wake_w, b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
        else:
            self._cleanup()
        with self._state_lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def _cleanup(self) -> None:
        with self._state_lock:
            if self._cleaned:
                return
            self._cleaned = True
            self._listener.close()
            conns = list(self._conns)
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
        with contextlib.suppress(OSError):
            # Only remove the file if it is still ours (not replaced by another server).
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """`shutdown` with the default timeout (what ``with`` calls on exit)."""
        self.shutdown()

    def __enter__(self) -> Self:
        # Entering starts serving (the base class only returns self).
        self.start()
        return self

    # ------------------------------------------------------------ per connection

    def _send(self, conn: socket.socket, payload: bytes) -> None:
        conn.settimeout(self.frame_timeout)
        conn.sendall(encode_frame(payload, max_frame_size=codec.MAX_RESPONSE_SIZE))

    def _serve_conn(self, conn: socket.socket) -> None:
        # One frame decoder per connection, bounded at the device's request limit: an
        # oversized length prefix is refused before any body byte is read.
        decoder = FrameDecoder(codec.MAX_REQUEST_SIZE)
        try:
            while not self._stopping.is_set():
                header = recv_exact(
                    conn, HEADER_SIZE, deadline=time.monotonic() + self.idle_timeout
                )
                try:
                    decoder.receive_data(header)  # validates the length prefix
                    event = decoder.next_event()
                except RemoteProtocolError:
                    # Answer as the device would, then hang up: skipping an arbitrary
                    # body would let the peer make us read without bound.
                    self._send(conn, codec.encode_error(codec.ErrorCode.INPUT_TOO_LARGE))
                    break
                if event is NEED_DATA:
                    deadline = time.monotonic() + self.frame_timeout
                    decoder.receive_data(
                        recv_exact(conn, decoder.bytes_wanted(), deadline=deadline)
                    )
                    event = decoder.next_event()
                if not isinstance(event, Frame):  # pragma: no cover - a whole frame was fed
                    break
                self._send(conn, self.nsm.process(event.payload))
        except (TransportError, RemoteProtocolError, OSError) as exc:
            _log.debug("connection ended: %s", exc)
        except Exception:  # noqa: BLE001 - a bug must cost one connection, never the service
            _log.exception("unexpected error serving an NSM connection")
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            with self._state_lock:
                self._conns.discard(conn)
                self._threads.discard(threading.current_thread())
            self._slots.release()
