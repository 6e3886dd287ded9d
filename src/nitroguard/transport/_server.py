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
import collections
import contextlib
import dataclasses
import errno
import logging
import math
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, final

from nitroguard.errors import (
    BrokenResourceError,
    ClosedResourceError,
    ConfigError,
    DeadlineError,
    Error,
    ProtocolError,
    Reason,
)
from nitroguard.framing import (
    MAX_FRAME_SIZE,
    NEED_DATA,
    ConnectionClosed,
    FrameDecoder,
    encode_frame,
)
from nitroguard.transport._address import Address, parse_address
from nitroguard.transport._stream import (
    DEFAULT_RECEIVE_SIZE,
    SocketListener,
    SocketStream,
    Stream,
    open_listener,
)

__all__ = ["Connection", "Counters", "Handler", "Server", "ServerLimits", "serve"]

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


#: Timeout kinds, as counted in `Counters.timeouts` and reported in `DeadlineError.details["kind"]`.
TIMEOUT_KINDS: Final = ("first_byte", "idle", "frame", "write", "lifetime")


@final
@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Every resource limit of a server. Defaults are safe for an enclave service.

    Attributes:
        max_connections: connections handled at once (default 1024); above it a
            new connection is accepted and closed immediately (counted as refused).
        max_frame_size: largest frame payload accepted or sent (default 1 MiB).
        first_byte_timeout: seconds from accept to the first byte (default 10).
        idle_timeout: seconds allowed between frames (default 60).
        frame_timeout: seconds from a frame's first byte to its last; absolute,
            not extended by progress (default 10).
        write_timeout: seconds a send may wait for a peer that does not read (default 10).
        max_lifetime: optional cap on a connection's total duration (default None: no cap).
        max_concurrent_handlers: handlers processing a request at once (default 256).
            A connection holds a slot from the moment `Connection.recv_frame`
            returns a frame until it calls `recv_frame` again (or returns); idle
            connections hold none, so they cannot starve busy ones.
        shutdown_grace: seconds `Server.close` lets connections drain before
            cancelling them (default 5).
    """

    max_connections: int = 1024
    max_frame_size: int = MAX_FRAME_SIZE
    first_byte_timeout: float = 10.0
    idle_timeout: float = 60.0
    frame_timeout: float = 10.0
    write_timeout: float = 10.0
    max_lifetime: float | None = None
    max_concurrent_handlers: int = 256
    shutdown_grace: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_frame_size", "max_concurrent_handlers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ServerLimits.{name} must be a positive int, got {value!r}")
        if self.max_frame_size > 0xFFFF_FFFF:
            raise ConfigError("ServerLimits.max_frame_size must fit in a u32 length prefix")
        for name in (
            "first_byte_timeout",
            "idle_timeout",
            "frame_timeout",
            "write_timeout",
            "shutdown_grace",
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not value > 0
                or math.isnan(value)
            ):
                raise ConfigError(
                    f"ServerLimits.{name} must be a positive number of seconds, got {value!r}"
                )
        lifetime: object = self.max_lifetime
        if lifetime is not None and not (isinstance(lifetime, int | float) and lifetime > 0):
            raise ConfigError(
                f"ServerLimits.max_lifetime must be None or positive, got {self.max_lifetime!r}"
            )

    def replace(self, **changes: Any) -> ServerLimits:
        """A copy with some limits changed (validated again)."""
        return dataclasses.replace(self, **changes)


@final
@dataclass(slots=True)
class Counters:
    """Live server statistics (read them any time; `snapshot` for a copy).

    Attributes:
        accepted: connections accepted and handled.
        refused: connections closed at once because of ``max_connections`` or shutdown.
        active: connections being handled now.
        timeouts: timeouts by kind (first_byte, idle, frame, write, lifetime).
        protocol_errors: connections closed for a framing violation (oversize, truncated).
        handler_errors: handler exceptions (each closed only its connection).
        disconnects: connections reset or broken by the peer.
        accept_errors: accept(2) failures survived (EMFILE, ECONNABORTED, ...).
        bytes_in: bytes received on all connections.
        bytes_out: bytes sent on all connections.
    """

    accepted: int = 0
    refused: int = 0
    active: int = 0
    timeouts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIMEOUT_KINDS, 0))
    protocol_errors: int = 0
    handler_errors: int = 0
    disconnects: int = 0
    accept_errors: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        out = dataclasses.asdict(self)
        out["timeouts"] = dict(self.timeouts)
        return out


class _Slots:
    """A counting semaphore with a synchronous fast path (no coroutine when a slot is free)."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, n: int) -> None:
        self._free = n
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_acquire(self) -> bool:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # we were handed a slot while being cancelled: pass it on
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # hand the slot over directly
                return
        self._free += 1


class _ConnState:
    """Per-server shared state a Connection needs (kept small and private)."""

    __slots__ = ("closing", "slots")

    def __init__(self, max_handlers: int) -> None:
        self.closing = False
        self.slots = _Slots(max_handlers)


class _Expired(Exception):
    """Internal: the watchdog deadline passed during a read."""


class _Watchdog:
    """One lazily re-armed timer per connection instead of one timer per read.

    The hot path (a request arriving well before its deadline) only stores a
    float: the timer is re-armed when it fires early, and moved only when a
    deadline gets *earlier*. When it fires while the connection task is reading,
    it cancels that task; `_read_until` turns the cancellation into `_Expired`
    (the same technique as `asyncio.timeout`, with `Task.uncancel`).
    """

    __slots__ = ("_deadline", "_handle", "_loop", "_task", "fired")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._deadline = math.inf
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self.fired = False

    def arm(self, deadline: float) -> None:
        self._deadline = deadline
        self._task = asyncio.current_task()
        handle = self._handle
        if handle is None or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(deadline, self._fire)

    def disarm(self) -> None:
        self._deadline = math.inf
        self._task = None

    def expire_now(self) -> None:
        if self._task is not None:
            self._deadline = -math.inf
            self._fire()

    def close(self) -> None:
        self._task = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        task = self._task
        if task is None or self._deadline == math.inf:
            return
        if self._loop.time() + 0.001 >= self._deadline:
            self.fired = True
            self._task = None
            task.cancel()
        else:  # the deadline moved later since we were scheduled: re-arm once
            self._handle = self._loop.call_at(self._deadline, self._fire)


@final
class Connection:
    """A framed connection: what a `serve` handler receives.

    `recv_frame` enforces the deadlines of `ServerLimits`; `send_frame` enforces
    the write timeout. ``.stream`` gives raw access (the proxy uses it); raw
    reads bypass the frame deadlines.
    """

    __slots__ = (
        "_decoder",
        "_first",
        "_frame_deadline",
        "_holding_slot",
        "_idle_waiting",
        "_limits",
        "_loop",
        "_state",
        "_stream",
        "_watchdog",
    )

    def __init__(
        self,
        stream: Stream,
        limits: ServerLimits | None = None,
        *,
        _state: _ConnState | None = None,
    ) -> None:
        """Wrap a stream. Clients may build one too, with their own limits.

        Args:
            stream: the underlying byte stream.
            limits: deadlines and frame size (default `ServerLimits()`).
        """
        self._stream = stream
        self._limits = limits if limits is not None else ServerLimits()
        self._decoder = FrameDecoder(self._limits.max_frame_size)
        self._loop = asyncio.get_running_loop()
        self._first = True
        self._frame_deadline = 0.0
        self._idle_waiting = False
        self._state = _state
        self._holding_slot = False
        self._watchdog = _Watchdog(self._loop)

    @property
    def stream(self) -> Stream:
        """The raw stream (reads through it bypass framing and frame deadlines)."""
        return self._stream

    @property
    def limits(self) -> ServerLimits:
        """The limits this connection enforces."""
        return self._limits

    def _release_slot(self) -> None:
        if self._holding_slot and self._state is not None:
            self._holding_slot = False
            self._state.slots.release()

    def _close(self) -> None:
        self._release_slot()
        self._watchdog.close()

    async def recv_frame(self) -> bytes | None:
        """Receive one frame's payload; ``None`` on a clean EOF between frames.

        Returns ``None`` as well when the server is shutting down and no frame
        has started, so handlers finish naturally during a graceful close.

        Raises:
            DeadlineError: reason ``timeout``; ``details["kind"]`` is
                ``first_byte``, ``idle`` or ``frame``.
            RemoteProtocolError: ``frame_too_large`` or ``truncated``.
            BrokenResourceError: the peer reset the connection.
        """
        self._release_slot()
        dec = self._decoder
        limits = self._limits
        loop = self._loop
        state = self._state
        while True:
            event = dec.next_event()
            if event is NEED_DATA:
                if dec.in_frame:
                    try:
                        data = await self._read_until(self._frame_deadline)
                    except _Expired:
                        raise DeadlineError(
                            f"frame timeout: no complete frame within {limits.frame_timeout:g} s "
                            "of its first byte",
                            Reason.TIMEOUT,
                            kind="frame",
                        ) from None
                else:
                    if state is not None and state.closing:
                        return None
                    if self._first:
                        kind, budget = "first_byte", limits.first_byte_timeout
                    else:
                        kind, budget = "idle", limits.idle_timeout
                    self._idle_waiting = True
                    try:
                        data = await self._read_until(loop.time() + budget)
                    except _Expired:
                        if state is not None and state.closing:
                            return None
                        what = "first byte" if kind == "first_byte" else "next frame"
                        raise DeadlineError(
                            f"{kind} timeout: no {what} within {budget:g} s",
                            Reason.TIMEOUT,
                            kind=kind,
                        ) from None
                    finally:
                        self._idle_waiting = False
                    # The frame deadline is absolute from the arrival of its first byte.
                    self._frame_deadline = loop.time() + limits.frame_timeout
                    self._first = False
                dec.receive_data(data)
                continue
            if isinstance(event, ConnectionClosed):
                return None
            if dec.in_frame:
                # The next frame's first bytes came with this one: its clock starts now.
                self._frame_deadline = loop.time() + limits.frame_timeout
            if state is not None:
                if not state.slots.try_acquire():
                    await state.slots.acquire()
                self._holding_slot = True
            return event.payload  # type: ignore[union-attr]

    async def _read_until(self, deadline: float) -> bytes:
        watchdog = self._watchdog
        watchdog.arm(deadline)
        stream = self._stream
        try:
            if type(stream) is SocketStream:
                # Hot path: `SocketStream.receive_some` inlined (one coroutine frame less).
                if stream._closed:
                    raise ClosedResourceError("receive on a closed stream")
                try:
                    data = await stream._reader.read(DEFAULT_RECEIVE_SIZE)
                except OSError as exc:
                    raise BrokenResourceError(f"connection broken while receiving: {exc}") from exc
                if stream._counter is not None:
                    stream._counter.bytes_in += len(data)
                return data
            return await stream.receive_some(DEFAULT_RECEIVE_SIZE)
        except asyncio.CancelledError:
            if watchdog.fired:
                watchdog.fired = False
                task = asyncio.current_task()
                if task is not None and task.uncancel() == 0:
                    raise _Expired from None
            raise
        finally:
            watchdog.disarm()

    def _interrupt_idle(self) -> None:
        """Graceful shutdown: wake a connection waiting between frames."""
        if self._idle_waiting and not self._decoder.in_frame:
            self._watchdog.expire_now()

    async def send_frame(self, payload: bytes | bytearray | memoryview) -> None:
        """Send one frame, waiting at most ``write_timeout`` for a slow reader.

        Raises:
            LocalProtocolError: ``frame_too_large`` when the payload exceeds the limit.
            DeadlineError: reason ``timeout``, ``details["kind"] == "write"``.
            BrokenResourceError / ClosedResourceError: the stream is gone.
        """
        data = encode_frame(payload, max_frame_size=self._limits.max_frame_size)
        stream = self._stream
        if type(stream) is SocketStream:
            # Fast path: the kernel took everything, nothing to wait for (no timer).
            if stream.write_nowait(data):
                return
            waiter = stream.drain()
        else:
            waiter = stream.send_all(data)
        try:
            async with asyncio.timeout(self._limits.write_timeout):
                await waiter
        except TimeoutError:
            raise DeadlineError(
                f"write timeout: peer did not read for {self._limits.write_timeout:g} s",
                Reason.TIMEOUT,
                kind="write",
            ) from None


#: The handler type: one call per connection.
Handler = Callable[[Connection], Awaitable[None]]


@final
class Server:
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

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
