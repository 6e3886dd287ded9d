"""Zero-copy relay between two connected sockets (issue 16, section 5).

On Linux each direction moves bytes socket -> pipe -> socket with ``splice(2)``
(`os.splice`), so payload bytes never enter Python. What the copying proxy
guarantees is kept:

* **Backpressure.** A direction reads from its source only while its pipe is
  empty, and waits for the destination to become writable while the pipe holds
  data: at most one pipe (`PIPE_SIZE`) in flight per direction.
* **Half-close.** EOF from the source, once the pipe is drained, becomes
  ``shutdown(SHUT_WR)`` on the destination; the other direction keeps going.
* **Idle timeout.** Both directions stamp `Relay.last` on every move; a watcher
  ends the relay with a ``timeout`` error (kind ``idle``) when neither moved for
  ``idle`` seconds.
* **Counters.** Bytes are counted as they leave the pipe (delivered to the kernel).

Small messages: after a read shorter than 16 KiB (the socket's queue was emptied), the
next read waits for readiness and uses ``recv``/``send`` on at most 16 KiB, which is
cheaper than splice's page handling for a few bytes; a full 16 KiB read switches back
to splice. Bulk transfers therefore stay zero-copy.

Fallback: when ``splice`` is missing or refuses a socket family (``EINVAL``), the
direction copies through a Python buffer with non-blocking ``recv``/``send``, with the
same structure (one chunk in flight). `splice_available` tells which path a process
uses by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import socket
import sys
from collections.abc import Callable
from typing import Final

from nitroguard.errors import BrokenResourceError, DeadlineError, Reason

__all__ = ["PIPE_SIZE", "Relay", "splice_available"]

#: Pipe capacity asked for each direction (F_SETPIPE_SZ; the kernel may give less).
PIPE_SIZE: Final = 1 << 20
_F_SETPIPE_SZ: Final = 1031
_CHUNK: Final = 256 * 1024
#: A read shorter than this probably emptied the socket's receive queue.
_SHORT_READ: Final = 16 * 1024
_SPLICE_FLAGS: Final = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
#: Errors meaning "splice cannot do this socket family": fall back to copying.
_UNSUPPORTED: Final = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})

_probed: bool | None = None


def splice_available() -> bool:
    """Does ``splice(2)`` work between sockets and a pipe here? (probed once)."""
    global _probed  # noqa: PLW0603 - a process-wide, idempotent probe
    if _probed is None:
        _probed = _probe()
    return _probed


def _probe() -> bool:
    if not sys.platform.startswith("linux") or not hasattr(os, "splice"):
        return False
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        a.sendall(b"x")
        return os.splice(b.fileno(), w, 1) == 1 and os.splice(r, a.fileno(), 1) == 1
    except OSError:
        return False
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        b.close()


class Relay:
    """Relay bytes both ways between two connected non-blocking sockets.

    Args:
        client: the accepted socket.
        upstream: the connected upstream socket.
        idle: seconds without a byte moved either way before the relay aborts.
        count_up / count_down: called with each number of bytes delivered.
        on_eof: called for each half-close propagated.
        use_splice: try ``splice(2)`` (falls back per direction when refused).

    Attributes:
        paths: the path each direction ended up using (``splice`` or ``copy``).
    """

    def __init__(
        self,
        client: socket.socket,
        upstream: socket.socket,
        *,
        idle: float,
        count_up: Callable[[int], None],
        count_down: Callable[[int], None],
        on_eof: Callable[[], None],
        use_splice: bool = True,
    ) -> None:
        self._client = client
        self._upstream = upstream
        self._idle = idle
        self._count_up = count_up
        self._count_down = count_down
        self._on_eof = on_eof
        self._use_splice = use_splice and splice_available()
        self._loop = asyncio.get_running_loop()
        self.last = self._loop.time()
        self.paths: dict[str, str] = {}
        self._waiters: dict[tuple[int, bool], asyncio.Future[None]] = {}
        self._registered: set[tuple[int, bool]] = set()

    async def run(self) -> None:
        """Relay until both directions ended (clean) or one failed (raises).

        Raises:
            BrokenResourceError: a side reset or broke the connection.
            DeadlineError: ``timeout`` (kind ``idle``).
        """
        up = asyncio.ensure_future(
            self._direction("up", self._client, self._upstream, self._count_up)
        )
        down = asyncio.ensure_future(
            self._direction("down", self._upstream, self._client, self._count_down)
        )
        pending: set[asyncio.Future[None]] = {up, down}
        try:
            while pending:
                deadline = self.last + self._idle
                timeout = max(0.0, deadline - self._loop.time())
                done, pending = await asyncio.wait(
                    pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for fut in done:
                    fut.result()  # a failed direction ends the relay (the finally cancels)
                if not done and self._loop.time() - self.last >= self._idle - 0.001:
                    raise DeadlineError(
                        f"idle timeout: no traffic either way for {self._idle:g} s",
                        Reason.TIMEOUT,
                        kind="idle",
                    )
        finally:
            for fut in (up, down):
                if not fut.done():
                    fut.cancel()
            for fut in (up, down):
                with contextlib.suppress(BaseException):
                    await fut
            # Nothing stays registered with the loop once the relay is over.
            for key in list(self._registered):
                self._unregister(key)

    async def _wait(self, sock: socket.socket, *, write: bool) -> None:
        """Wait until `sock` is readable (or writable).

        The registration is kept after a wake-up (request/response traffic waits on the
        same descriptor again right away: no epoll_ctl pair per message). A wake-up
        with nobody waiting unregisters, so a level-triggered descriptor never spins.
        """
        key = (sock.fileno(), write)
        fut: asyncio.Future[None] = self._loop.create_future()
        self._waiters[key] = fut
        if key not in self._registered:
            self._registered.add(key)
            if write:
                self._loop.add_writer(key[0], self._wake, key)
            else:
                self._loop.add_reader(key[0], self._wake, key)
        try:
            await fut
        finally:
            self._waiters.pop(key, None)

    def _wake(self, key: tuple[int, bool]) -> None:
        fut = self._waiters.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(None)
            return
        self._unregister(key)

    def _unregister(self, key: tuple[int, bool]) -> None:
        if key in self._registered:
            self._registered.discard(key)
            if key[1]:
                self._loop.remove_writer(key[0])
            else:
                self._loop.remove_reader(key[0])

    async def _direction(
        self, name: str, src: socket.socket, dst: socket.socket, count: Callable[[int], None]
    ) -> None:
        if self._use_splice:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                with contextlib.suppress(OSError):
                    fcntl.fcntl(w, _F_SETPIPE_SZ, PIPE_SIZE)
                if await self._splice(name, src, dst, (r, w), count):
                    return
            finally:
                os.close(r)
                os.close(w)
        await self._copy(name, src, dst, count)

    async def _splice(
        self,
        name: str,
        src: socket.socket,
        dst: socket.socket,
        pipe: tuple[int, int],
        count: Callable[[int], None],
    ) -> bool:
        """Splice until EOF; False (nothing moved yet) when the family is refused."""
        r, w = pipe
        in_pipe = 0
        moved_any = False
        drained = False
        src_fd, dst_fd = src.fileno(), dst.fileno()
        loop = self._loop
        while True:
            if in_pipe == 0:
                if drained:
                    # The last read was short: small messages. Wait for readiness (no
                    # splice that says EAGAIN), and move the next read of at most 16 KiB
                    # with recv/send: for small messages that is cheaper than splice's
                    # page handling. A full 16 KiB read means bulk again: back to splice.
                    await self._wait(src, write=False)
                    try:
                        data = src.recv(_SHORT_READ)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        raise BrokenResourceError(f"{name}: receive failed: {exc}") from exc
                    if not data:
                        self._eof(name, dst)
                        return True
                    self.last = loop.time()
                    await self._send_all(name, dst, data, count)
                    drained = len(data) < _SHORT_READ
                    continue
                try:
                    n = os.splice(src_fd, w, PIPE_SIZE, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    await self._wait(src, write=False)
                    continue
                except OSError as exc:
                    if exc.errno in _UNSUPPORTED and not moved_any:
                        return False
                    raise BrokenResourceError(f"{name}: splice from source failed: {exc}") from exc
                self.paths[name] = "splice"
                moved_any = True
                if n == 0:
                    self._eof(name, dst)
                    return True
                in_pipe = n
                drained = n < _SHORT_READ
                self.last = loop.time()
            try:
                m = os.splice(r, dst_fd, in_pipe, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                await self._wait(dst, write=True)
                continue
            except OSError as exc:
                raise BrokenResourceError(f"{name}: splice to destination failed: {exc}") from exc
            in_pipe -= m
            count(m)
            self.last = loop.time()

    async def _copy(
        self, name: str, src: socket.socket, dst: socket.socket, count: Callable[[int], None]
    ) -> None:
        self.paths.setdefault(name, "copy")
        while True:
            try:
                data = src.recv(_CHUNK)
            except BlockingIOError:
                await self._wait(src, write=False)
                continue
            except OSError as exc:
                raise BrokenResourceError(f"{name}: receive failed: {exc}") from exc
            if not data:
                self._eof(name, dst)
                return
            self.last = self._loop.time()
            await self._send_all(name, dst, data, count)

    async def _send_all(
        self, name: str, dst: socket.socket, data: bytes, count: Callable[[int], None]
    ) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = dst.send(view)
            except BlockingIOError:
                await self._wait(dst, write=True)
                continue
            except OSError as exc:
                raise BrokenResourceError(f"{name}: send failed: {exc}") from exc
            view = view[sent:]
            count(sent)
            self.last = self._loop.time()

    def _eof(self, name: str, dst: socket.socket) -> None:
        self._on_eof()
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise BrokenResourceError(f"{name}: cannot propagate EOF: {exc}") from exc
