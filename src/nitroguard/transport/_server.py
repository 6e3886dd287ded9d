"""The hardened asyncio server: `ServerLimits`, `Connection`, `Server`, `serve`.

Structure (trio-style on asyncio): one root task owns an `asyncio.TaskGroup`
holding the accept loop and one task per connection. No task outlives the
server; every connection is closed in a ``finally``.

What each rule defends against (threat checklist):

* VS-1: the accept loop only accepts and spawns; it never awaits a client.
* VS-2: over ``max_connections`` a new connection is closed at once; reads have
  a first-byte timeout, an idle timeout between frames and an *absolute*
  per-frame deadline started by the frame's first byte (progress does not
  extend it, so a slowloris trickle cannot hold a connection); writes have a
  timeout (a peer that never reads); optional maximum lifetime.
* VS-3: EOF inside a frame is an error (``truncated``), never a spin.
* MEM-1: the frame length is bounded before anything is buffered.
* Accept errors that mean "out of resources" (EMFILE, ENFILE, ENOBUFS, ENOMEM)
  are counted, logged and backed off; ECONNABORTED/EPROTO are skipped.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Final, final

from nitroguard._resource import AsyncResource
from nitroguard.errors import (
    BrokenResourceError,
    ClosedResourceError,
    ConfigError,
    DeadlineError,
    Error,
    ProtocolError,
)
from nitroguard.transport._address import Address, parse_address
from nitroguard.transport._connection import Connection, _ConnState
from nitroguard.transport._limits import Counters, ServerLimits
from nitroguard.transport._stream import (
    SocketListener,
    SocketStream,
    open_listener,
)

# `Connection` is listed too: the `Handler` type names it, and handler modules import both.
__all__ = ["Connection", "Handler", "Server", "serve"]

log = logging.getLogger("nitroguard.transport")

#: accept(2) errors that mean the process or system ran out of something:
#: back off and retry (as trio's serve_listeners does), never crash.
_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: accept(2) errors about one connection only: skip it.
_TRANSIENT_ERRNOS: Final = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR})
_BACKOFF_MIN: Final = 0.01
_BACKOFF_MAX: Final = 1.0

#: Connections accepted back to back before the accept loop yields to the others.
_ACCEPT_BURST: Final = 32


def _closed_before_speaking(sock: socket.socket) -> bool:
    """True when the peer closed (FIN or RST) before sending anything (non-blocking peek)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False  # the normal case: nothing yet, the connection is live
    except OSError:
        return True  # reset or otherwise broken already


#: The handler type: one call per connection.
Handler = Callable[[Connection], Awaitable[None]]


@final
class Server(AsyncResource):
    """A running server (returned by `serve`).

    Attributes:
        address: the address actually bound (TCP port 0 resolved).
        counters: live `Counters`.
        limits: the `ServerLimits` in force.
    """

    def __init__(self, handler: Handler, listener: SocketListener, limits: ServerLimits) -> None:
        """Internal: use `serve`."""
        self._handler = handler
        self._listener = listener
        self.limits = limits
        self.address: Address = listener.address
        self.counters = Counters()
        self._state = _ConnState(limits.max_concurrent_handlers)
        self._conns: dict[asyncio.Task[None], Connection | None] = {}
        self._accept_task: asyncio.Task[None] | None = None
        self._stats_task: asyncio.Task[None] | None = None
        self.stats_interval: float | None = None
        # Framed services have nothing to say to a peer that closed before its first
        # byte; raw-stream users that may speak first (the proxy) turn this off.
        self._drop_early_eof = True
        # Hook (issue 16): a handler that takes the raw accepted socket instead of a
        # `Connection` (the zero-copy proxy splices between file descriptors). The
        # server still owns the socket: it is closed here when the handler returns.
        self._raw_handler: Callable[[socket.socket], Awaitable[None]] | None = None
        self._root: asyncio.Task[None] | None = None
        self._closed_event = asyncio.Event()
        self._close_lock = asyncio.Lock()

    def _start(self) -> None:
        self._root = asyncio.get_running_loop().create_task(
            self._run(), name=f"nitroguard-server {self.address}"
        )

    async def _run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._accept_task = tg.create_task(self._accept_loop(tg), name="accept")
                if self.stats_interval is not None:
                    self._stats_task = tg.create_task(self._log_stats(self.stats_interval))
        finally:
            await self._listener.aclose()
            self._closed_event.set()
            log.info("server %s stopped: %s", self.address, self.counters.snapshot())

    async def _log_stats(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            log.info("server %s counters: %s", self.address, self.counters.snapshot())

    async def _accept_loop(self, tg: asyncio.TaskGroup) -> None:
        listener = self._listener
        counters = self.counters
        limits = self.limits
        backoff = 0.0
        burst = 0
        while not self._state.closing:
            try:
                sock = await listener.accept_socket()
            except ClosedResourceError:
                return  # close() won the race with our first accept
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRNOS:
                    counters.accept_errors += 1
                    backoff = min(max(backoff * 2, _BACKOFF_MIN), _BACKOFF_MAX)
                    if counters.accept_errors == 1 or counters.accept_errors % 100 == 0:
                        log.warning(
                            "accept failed (%s), backing off %.2f s (%d accept errors so far)",
                            errno.errorcode.get(exc.errno or 0, exc.errno),
                            backoff,
                            counters.accept_errors,
                        )
                    await asyncio.sleep(backoff)
                    continue
                if exc.errno in _TRANSIENT_ERRNOS:
                    counters.accept_errors += 1
                    continue
                raise
            backoff = 0.0
            if counters.active >= limits.max_connections or self._state.closing:
                # Refuse at once: never queue, never let the kernel backlog fill.
                sock.close()
                counters.refused += 1
                if counters.refused == 1 or counters.refused % 1000 == 0:
                    log.warning(
                        "connection limit %d reached: refused %d so far",
                        limits.max_connections,
                        counters.refused,
                    )
                continue
            counters.accepted += 1
            if self._drop_early_eof and _closed_before_speaking(sock):
                # Churn: the peer already closed (FIN or RST queued) without sending a
                # byte. Drop it without building a transport and a task for it.
                sock.close()
                counters.disconnects += 1
                continue
            counters.active += 1
            task = tg.create_task(self._handle(sock))
            self._conns[task] = None
            burst += 1
            if burst >= _ACCEPT_BURST:
                # Fairness: let established connections run between accept bursts.
                burst = 0
                await asyncio.sleep(0)

    async def _handle(self, sock: socket.socket) -> None:
        counters = self.counters
        stream: SocketStream | None = None
        clean = False
        lifetime: asyncio.Timeout | None = None
        task = asyncio.current_task()
        try:
            if self._raw_handler is not None:
                async with asyncio.timeout(self.limits.max_lifetime) as lifetime:
                    await self._raw_handler(sock)
                clean = True
                return
            stream = await SocketStream.from_socket(sock, counter=counters)
            conn = Connection(stream, self.limits, _state=self._state)
            if task is not None:
                self._conns[task] = conn
            async with asyncio.timeout(self.limits.max_lifetime) as lifetime:
                await self._handler(conn)
            clean = True
        except DeadlineError as exc:
            kind = str(exc.details.get("kind", "idle"))
            counters.timeouts[kind] = counters.timeouts.get(kind, 0) + 1
            log.debug("connection closed: %s", exc.diagnostics())
        except TimeoutError:
            if lifetime is not None and lifetime.expired():
                counters.timeouts["lifetime"] += 1
                log.debug("connection closed: lifetime of %s s reached", self.limits.max_lifetime)
            else:
                counters.handler_errors += 1
                log.exception("handler raised TimeoutError")
        except ProtocolError as exc:
            counters.protocol_errors += 1
            log.debug("connection closed: %s", exc.diagnostics())
        except (BrokenResourceError, ClosedResourceError, ConnectionError) as exc:
            counters.disconnects += 1
            log.debug("connection closed by peer: %s", exc)
        except Error as exc:
            counters.handler_errors += 1
            log.warning("handler failed: %s", exc.diagnostics())
        except Exception:
            # A handler bug closes only its own connection (and is logged).
            counters.handler_errors += 1
            log.exception("handler raised")
        finally:
            counters.active -= 1
            if task is not None:
                conn_ = self._conns.pop(task, None)
                if conn_ is not None:
                    conn_._close()
            if stream is None:
                sock.close()
            elif clean:
                await stream.aclose(flush_timeout=self.limits.write_timeout)
            else:
                stream.abort()

    async def close(self, grace: float | None = None) -> None:
        """Graceful shutdown: stop accepting, drain, then cancel after ``grace``.

        Connections waiting between frames get ``None`` from `recv_frame`;
        handlers still running after ``grace`` seconds (default
        ``limits.shutdown_grace``) are cancelled. Idempotent.
        """
        async with self._close_lock:
            if self._root is None or self._root.done():
                await self.wait_closed()
                return
            grace = self.limits.shutdown_grace if grace is None else grace
            self._state.closing = True
            if self._accept_task is not None:
                self._accept_task.cancel()
            if self._stats_task is not None:
                self._stats_task.cancel()
            await self._listener.aclose()
            for conn in list(self._conns.values()):
                if conn is not None:
                    conn._interrupt_idle()
            pending = [t for t in self._conns if not t.done()]
            if pending:
                _, still = await asyncio.wait(pending, timeout=grace)
                for t in still:
                    t.cancel()
            await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the server has fully stopped (all connections closed)."""
        await self._closed_event.wait()
        if self._root is not None and self._root.done() and not self._root.cancelled():
            exc = self._root.exception()
            if exc is not None:
                raise exc

    async def serve_forever(self) -> None:
        """Wait until closed; if this task is cancelled, close gracefully first."""
        try:
            await self.wait_closed()
        except asyncio.CancelledError:
            await asyncio.shield(self.close())
            raise

    async def aclose(self) -> None:
        """`close` with the default grace (what ``async with`` calls on exit)."""
        await self.close()


async def serve(
    handler: Handler,
    address: str | Address,
    limits: ServerLimits | None = None,
    *,
    ready: Callable[[Address], None] | None = None,
    stats_interval: float | None = None,
) -> Server:
    """Bind ``address`` and start serving ``handler`` on every connection.

    Args:
        handler: ``async def handler(conn: Connection) -> None``, called once per
            connection; the connection is closed when it returns or raises.
        address: a string (parsed with `parse_address`) or an `Address`.
        limits: `ServerLimits` (defaults if omitted).
        ready: called once with the bound address, before the first accept.
        stats_interval: if set, log the counters at INFO every this many seconds
            (they are always logged when the server stops).

    Returns:
        The running `Server`; ``await server.wait_closed()`` or use
        ``async with await serve(...) as server:``.

    Raises:
        ConfigError: ``invalid_address`` when the address is malformed or cannot be bound.
    """
    addr = parse_address(address) if isinstance(address, str) else address
    limits = limits if limits is not None else ServerLimits()
    listener = open_listener(addr)
    server = Server(handler, listener, limits)
    if stats_interval is not None:
        if not stats_interval > 0:
            await listener.aclose()
            raise ConfigError(f"stats_interval must be positive, got {stats_interval!r}")
        server.stats_interval = stats_interval
    if ready is not None:
        try:
            ready(server.address)
        except BaseException:
            await listener.aclose()
            raise
    server._start()
    log.info("listening on %s (limits %s)", server.address, limits)
    return server
