"""`Connection`: one framed connection under the deadlines of `ServerLimits`.

Reads have a first-byte timeout, an idle timeout between frames and an *absolute*
per-frame deadline started by the frame's first byte (VS-2: progress does not
extend it, so a slowloris trickle cannot hold a connection); writes have a timeout
(a peer that never reads). EOF inside a frame is an error (VS-3), and the frame
length is bounded before anything is buffered (MEM-1). One lazily re-armed
`_Watchdog` per connection keeps the hot path to a float store.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
from typing import Any, final

from nitroguard.errors import (
    BrokenResourceError,
    ClosedResourceError,
    DeadlineError,
    Reason,
)
from nitroguard.framing import (
    NEED_DATA,
    ConnectionClosed,
    FrameDecoder,
    encode_frame,
)
from nitroguard.transport._limits import ServerLimits
from nitroguard.transport._stream import (
    DEFAULT_RECEIVE_SIZE,
    SocketStream,
    Stream,
)

__all__ = ["Connection"]


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
