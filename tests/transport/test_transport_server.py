"""The hardened server over real TCP (127.0.0.1) and Unix sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable

import pytest

from nitroguard._commands._demo.echo import echo_handler, parse_sleep
from nitroguard.errors import ConfigError, DeadlineError, Reason
from nitroguard.framing import encode_frame
from nitroguard.transport import (
    Connection,
    Server,
    ServerLimits,
    SocketStream,
    connect,
    parse_address,
    serve,
)

FAST = ServerLimits(
    first_byte_timeout=0.4,
    idle_timeout=0.4,
    frame_timeout=0.5,
    write_timeout=0.4,
    shutdown_grace=1.0,
)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


async def read_frame(stream: SocketStream, budget: float = 2.0) -> bytes | None:
    """Read one frame (None on EOF) with a deadline."""
    buf = b""
    async with asyncio.timeout(budget):
        while True:
            if len(buf) >= 4:
                n = int.from_bytes(buf[:4], "big")
                if len(buf) >= 4 + n:
                    return buf[4 : 4 + n]
            chunk = await stream.receive_some()
            if not chunk:
                return None
            buf += chunk


async def wait_eof(stream: SocketStream, budget: float = 3.0) -> float:
    """Seconds until the server closes the stream (reading and discarding)."""
    start = time.monotonic()
    async with asyncio.timeout(budget):
        while True:
            try:
                if not await stream.receive_some():
                    break
            except Exception:
                break
    return time.monotonic() - start


async def with_server(
    body: Callable[[Server], Awaitable[None]],
    *,
    address: str = "tcp://127.0.0.1:0",
    limits: ServerLimits = FAST,
    handler: Callable[[Connection], Awaitable[None]] = echo_handler,
) -> Server:
    server = await serve(handler, address, limits)
    try:
        await body(server)
    finally:
        await server.close()
    return server


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_echo_and_counters(kind: str, unix_path: str) -> None:
    address = "tcp://127.0.0.1:0" if kind == "tcp" else f"unix://{unix_path}"
    seen: list[object] = []

    async def body(server: Server) -> None:
        assert server.address.kind == kind
        if kind == "tcp":
            assert server.address.port != 0
        stream = await connect(server.address)
        for payload in (b"one", b"", b"x" * 100_000):
            await stream.send_all(encode_frame(payload))
            assert await read_frame(stream) == payload
        await stream.send_eof()
        assert await read_frame(stream) is None
        await stream.aclose()
        await stream.aclose()  # idempotent
        seen.append(server.counters.snapshot())

    server = asyncio.run(with_server(body, address=address))
    snap = server.counters.snapshot()
    assert snap["accepted"] == 1
    assert snap["active"] == 0
    assert snap["bytes_in"] == snap["bytes_out"] == 3 * 4 + 3 + 100_000
    assert sum(snap["timeouts"].values()) == 0


def test_ready_callback_gets_bound_address() -> None:
    got = []

    async def main() -> None:
        server = await serve(echo_handler, "tcp://127.0.0.1:0", FAST, ready=got.append)
        assert got == [server.address]
        async with server:
            pass

    run(main())


def test_first_byte_timeout() -> None:
    async def body(server: Server) -> None:
        stream = await connect(server.address)
        elapsed = await wait_eof(stream)
        assert 0.3 < elapsed < 1.5
        await stream.aclose()

    server = asyncio.run(with_server(body))
    assert server.counters.timeouts["first_byte"] == 1


def test_idle_timeout_between_frames() -> None:
    async def body(server: Server) -> None:
        stream = await connect(server.address)
        await stream.send_all(encode_frame(b"a"))
        assert await read_frame(stream) == b"a"
        elapsed = await wait_eof(stream)
        assert 0.3 < elapsed < 1.5
        await stream.aclose()

    server = asyncio.run(with_server(body))
    assert server.counters.timeouts["idle"] == 1


def test_frame_deadline_is_absolute_despite_progress() -> None:
    """Slowloris: one byte every 0.1 s is progress, but the 0.5 s frame deadline still fires."""

    async def body(server: Server) -> None:
        stream = await connect(server.address)
        frame = encode_frame(b"z" * 40)  # 44 bytes would take 4.4 s to trickle
        start = time.monotonic()
        closed_at = None
        for i in range(len(frame)):
            try:
                await stream.send_all(frame[i : i + 1])
            except Exception:
                closed_at = time.monotonic() - start
                break
            await asyncio.sleep(0.1)
            if stream._writer.transport.is_closing():  # reset seen by the transport
                closed_at = time.monotonic() - start
                break
        if closed_at is None:
            closed_at = time.monotonic() - start + await wait_eof(stream)
        assert closed_at < 1.5, closed_at
        stream.abort()

    server = asyncio.run(with_server(body))
    assert server.counters.timeouts["frame"] == 1


@pytest.mark.parametrize(
    ("data", "eof"),
    [(b"\xff\xff\xff\xff", False), (encode_frame(b"abcdefgh")[:6], True)],
    ids=["oversize-4GiB", "truncated"],
)
def test_protocol_errors_close_immediately(data: bytes, eof: bool) -> None:
    async def body(server: Server) -> None:
        stream = await connect(server.address)
        await stream.send_all(data)
        if eof:
            await stream.send_eof()
        assert await wait_eof(stream) < 0.3
        await stream.aclose()

    server = asyncio.run(with_server(body))
    assert server.counters.protocol_errors == 1


def test_write_timeout_for_a_peer_that_never_reads() -> None:
    async def big_replies(conn: Connection) -> None:
        while await conn.recv_frame() is not None:
            for _ in range(200):
                await conn.send_frame(b"y" * 500_000)

    async def body(server: Server) -> None:
        stream = await connect(server.address)
        await stream.send_all(encode_frame(b"go"))
        await asyncio.sleep(1.5)  # never read; the server must give up on us
        assert server.counters.timeouts["write"] == 1
        assert server.counters.active == 0
        stream.abort()

    asyncio.run(with_server(body, handler=big_replies, limits=FAST.replace(max_frame_size=1 << 20)))


def test_max_lifetime() -> None:
    async def body(server: Server) -> None:
        stream = await connect(server.address)
        start = time.monotonic()
        ended = False
        while not ended and time.monotonic() - start < 3:
            try:
                await stream.send_all(encode_frame(b"k"))
                ended = await read_frame(stream, 1.0) is None
            except Exception:
                ended = True
        assert ended
        assert time.monotonic() - start < 1.5
        stream.abort()

    server = asyncio.run(with_server(body, limits=FAST.replace(max_lifetime=0.5)))
    assert server.counters.timeouts["lifetime"] == 1


def test_connection_cap_refuses_immediately() -> None:
    async def body(server: Server) -> None:
        held = [await connect(server.address) for _ in range(2)]
        await asyncio.sleep(0.05)
        extra = await connect(server.address)
        assert await wait_eof(extra, 1.0) < 0.3
        assert server.counters.refused == 1
        await held[0].aclose()
        await asyncio.sleep(0.05)
        again = await connect(server.address)
        await again.send_all(encode_frame(b"ok"))
        assert await read_frame(again) == b"ok"
        for s in (held[1], extra, again):
            await s.aclose()

    limits = FAST.replace(max_connections=2, first_byte_timeout=5.0)
    asyncio.run(with_server(body, limits=limits))


def test_handler_exception_closes_only_its_connection() -> None:
    async def fragile(conn: Connection) -> None:
        while (p := await conn.recv_frame()) is not None:
            if p == b"boom":
                raise ValueError("handler bug")
            await conn.send_frame(p)

    async def body(server: Server) -> None:
        good = await connect(server.address)
        bad = await connect(server.address)
        await bad.send_all(encode_frame(b"boom"))
        assert await wait_eof(bad) < 0.5
        await good.send_all(encode_frame(b"still here"))
        assert await read_frame(good) == b"still here"
        await good.aclose()
        await bad.aclose()

    server = asyncio.run(with_server(body, handler=fragile, limits=FAST.replace(idle_timeout=5.0)))
    assert server.counters.handler_errors == 1


def test_slow_handler_does_not_delay_other_connections() -> None:
    async def body(server: Server) -> None:
        slow = await connect(server.address)
        await slow.send_all(encode_frame(b"sleep:1.0"))
        await asyncio.sleep(0.05)
        fast = await connect(server.address)
        start = time.monotonic()
        await fast.send_all(encode_frame(b"quick"))
        assert await read_frame(fast) == b"quick"
        assert time.monotonic() - start < 0.3
        assert await read_frame(slow) == b"sleep:1.0"
        await fast.aclose()
        await slow.aclose()

    asyncio.run(with_server(body, limits=FAST.replace(idle_timeout=5.0)))


def test_max_concurrent_handlers_queues_requests_not_idle_connections() -> None:
    async def body(server: Server) -> None:
        idle = await connect(server.address)  # holds no slot
        a = await connect(server.address)
        b = await connect(server.address)
        start = time.monotonic()
        await a.send_all(encode_frame(b"sleep:0.3"))
        await b.send_all(encode_frame(b"sleep:0.3"))
        ra, rb = await asyncio.gather(read_frame(a), read_frame(b))
        assert ra == rb == b"sleep:0.3"
        assert time.monotonic() - start > 0.55  # one slot: served one after the other
        for s in (idle, a, b):
            await s.aclose()

    limits = FAST.replace(max_concurrent_handlers=1, first_byte_timeout=5.0, idle_timeout=5.0)
    asyncio.run(with_server(body, limits=limits))


def test_graceful_shutdown_drains_then_cancels() -> None:
    async def body() -> None:
        server = await serve(echo_handler, "tcp://127.0.0.1:0", FAST.replace(idle_timeout=10.0))
        idle = await connect(server.address)
        await idle.send_all(encode_frame(b"warm"))
        assert await read_frame(idle) == b"warm"
        busy = await connect(server.address)
        await busy.send_all(encode_frame(b"sleep:0.3"))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        await server.close(grace=2.0)
        assert time.monotonic() - start < 1.0
        # In-flight request completed; the idle connection got a clean EOF.
        assert await read_frame(busy) == b"sleep:0.3"
        assert await read_frame(idle) is None
        with pytest.raises(Exception):  # noqa: PT011,B017 - refused: nothing listens any more
            await connect(server.address, timeout=1.0)
        await server.close()  # idempotent
        await idle.aclose()
        await busy.aclose()

    run(body())


def test_shutdown_cancels_stuck_handlers_after_grace() -> None:
    async def stuck(conn: Connection) -> None:
        await conn.recv_frame()
        await asyncio.sleep(60)

    async def body() -> None:
        server = await serve(stuck, "tcp://127.0.0.1:0", FAST)
        s = await connect(server.address)
        await s.send_all(encode_frame(b"x"))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        await server.close(grace=0.2)
        assert 0.15 < time.monotonic() - start < 1.0
        assert await wait_eof(s) < 0.5
        await s.aclose()

    run(body())


def test_serve_forever_closes_on_cancel() -> None:
    async def body() -> None:
        server = await serve(echo_handler, "tcp://127.0.0.1:0", FAST)
        task = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.wait_closed(), 2)

    run(body())


def test_bind_errors_are_config_errors() -> None:
    async def body() -> None:
        server = await serve(echo_handler, "tcp://127.0.0.1:0", FAST)
        with pytest.raises(ConfigError, match="address already in use") as info:
            await serve(echo_handler, server.address, FAST)
        assert info.value.reason is Reason.INVALID_ADDRESS
        await server.close()
        with pytest.raises(ConfigError, match="cannot resolve"):
            await serve(echo_handler, "tcp://no-such-host.invalid:0", FAST)

    run(body())


def test_unix_listener_replaces_stale_socket_but_not_files(unix_path: str) -> None:
    async def listen_once() -> None:
        server = await serve(echo_handler, f"unix://{unix_path}", FAST)
        await server.close()

    crashed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    crashed.bind(unix_path)  # a crashed server leaves its socket file behind
    crashed.close()
    assert os.path.exists(unix_path)
    run(listen_once())
    assert not os.path.exists(unix_path)  # removed on close
    with open(unix_path, "w") as fh:
        fh.write("not a socket")
    with pytest.raises(ConfigError, match="cannot listen"):
        run(listen_once())
    assert os.path.exists(unix_path)  # a regular file is never unlinked


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_connections", 0),
        ("max_frame_size", 1 << 32),
        ("idle_timeout", 0),
        ("frame_timeout", float("nan")),
        ("write_timeout", -1.0),
        ("max_lifetime", 0),
        ("max_concurrent_handlers", True),
    ],
)
def test_limits_validation(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"ServerLimits.{field}"):
        ServerLimits(**{field: value})  # type: ignore[arg-type]


def test_limits_defaults_are_documented() -> None:
    d = ServerLimits()
    assert (d.max_connections, d.max_frame_size) == (1024, 1 << 20)
    assert (d.first_byte_timeout, d.idle_timeout, d.frame_timeout, d.write_timeout) == (
        10.0,
        60.0,
        10.0,
        10.0,
    )
    assert d.max_lifetime is None
    assert d.max_concurrent_handlers == 256


def test_client_side_connection_and_timeouts() -> None:
    async def body(server: Server) -> None:
        stream = await connect(server.address)
        conn = Connection(stream, ServerLimits(first_byte_timeout=0.2))
        await conn.send_frame(b"sleep:0.5")
        with pytest.raises(DeadlineError, match="first_byte timeout") as info:
            await conn.recv_frame()
        assert info.value.details["kind"] == "first_byte"
        await stream.aclose()

    asyncio.run(with_server(body, limits=FAST.replace(idle_timeout=5.0)))


def test_parse_sleep() -> None:
    assert parse_sleep(b"sleep:1.5") == 1.5
    assert parse_sleep(b"sleep:2:pad") == 2.0
    assert parse_sleep(b"sleep:9999") == 30.0
    assert parse_sleep(b"sleep:x") == 0.0
    assert parse_sleep(b"hello") == 0.0


def test_address_object_accepted() -> None:
    async def main() -> None:
        server = await serve(echo_handler, parse_address("tcp://127.0.0.1:0"))
        await server.close()

    run(main())


def test_peer_closed_before_speaking_is_dropped_without_a_handler() -> None:
    calls: list[int] = []

    async def counting(conn: Connection) -> None:
        calls.append(1)
        await echo_handler(conn)

    async def main() -> None:
        server = await serve(counting, "tcp://127.0.0.1:0", FAST)
        # No await since serve() returned: the accept loop has not run yet, so this
        # connection's FIN is already queued when it is accepted (churn).
        s = socket.create_connection(("127.0.0.1", server.address.port))
        s.close()
        live = await connect(server.address)
        await live.send_all(encode_frame(b"x"))
        assert await read_frame(live) == b"x"
        await live.aclose()
        await server.close()
        assert server.counters.accepted == 2
        assert server.counters.disconnects == 1
        assert calls == [1]

    run(main())
