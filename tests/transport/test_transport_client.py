"""Blocking client and recv_exact (VS-3: EOF is an error, EINTR retried, deadline), vsock bind."""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from nitroguard._commands._demo.echo import echo_handler
from nitroguard.errors import (
    BrokenResourceError,
    ClosedResourceError,
    ConfigError,
    DeadlineError,
    Reason,
    RemoteProtocolError,
    TransportError,
)
from nitroguard.transport import (
    BlockingClient,
    ServerLimits,
    connect,
    has_vsock,
    open_listener,
    parse_address,
    recv_exact,
    serve,
)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_recv_exact_reads_across_chunks(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair

    def feed() -> None:
        for part in (b"ab", b"cd", b"ef"):
            time.sleep(0.02)
            b.sendall(part)

    t = threading.Thread(target=feed)
    t.start()
    assert recv_exact(a, 6, deadline=time.monotonic() + 2) == b"abcdef"
    t.join()


def test_recv_exact_eof_is_an_error_not_a_spin(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.sendall(b"abc")
    b.shutdown(socket.SHUT_WR)
    start = time.monotonic()
    with pytest.raises(RemoteProtocolError, match="after 3 of 8 bytes") as info:
        recv_exact(a, 8, deadline=time.monotonic() + 5)
    assert info.value.reason is Reason.TRUNCATED
    assert time.monotonic() - start < 0.5


def test_recv_exact_deadline(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.sendall(b"x")
    start = time.monotonic()
    with pytest.raises(DeadlineError, match="deadline passed after 1 of 4 bytes") as info:
        recv_exact(a, 4, deadline=time.monotonic() + 0.2)
    assert info.value.reason is Reason.TIMEOUT
    assert 0.15 < time.monotonic() - start < 1.0


def test_recv_exact_survives_a_real_signal(pair: tuple[socket.socket, socket.socket]) -> None:
    """A signal arriving mid-recv (EINTR in the kernel) must not drop the connection."""
    a, b = pair
    hits = []
    old = signal.signal(signal.SIGALRM, lambda *_: hits.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        threading.Timer(0.3, lambda: b.sendall(b"late")).start()
        assert recv_exact(a, 4, deadline=time.monotonic() + 3) == b"late"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert len(hits) >= 2


class _InterruptingSocket:
    """Raises InterruptedError (EINTR surfaced) before delegating to a real socket."""

    def __init__(self, sock: socket.socket, interrupts: int) -> None:
        self.sock = sock
        self.interrupts = interrupts

    def recv(self, n: int, /) -> bytes:
        if self.interrupts:
            self.interrupts -= 1
            raise InterruptedError(4, "Interrupted system call")
        return self.sock.recv(n)

    def settimeout(self, value: float | None, /) -> None:
        self.sock.settimeout(value)


def test_recv_exact_retries_surfaced_eintr(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.sendall(b"data")
    wrapped = _InterruptingSocket(a, interrupts=3)
    assert recv_exact(wrapped, 4, deadline=time.monotonic() + 2) == b"data"
    assert wrapped.interrupts == 0


def test_recv_exact_reset_is_broken() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server_side, _ = listener.accept()
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server_side.close()  # RST
    listener.close()
    try:
        with pytest.raises(BrokenResourceError, match="connection broken after 0 of 4"):
            recv_exact(client, 4, deadline=time.monotonic() + 1)
    finally:
        client.close()


def test_recv_exact_injected_clock(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    with pytest.raises(DeadlineError, match="deadline passed"):
        recv_exact(a, 4, deadline=10.0, clock=lambda: 11.0)


class _ServerThread:
    """An echo server on its own event loop thread (for the blocking client)."""

    def __init__(self, address: str, limits: ServerLimits) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.address = ""
        self.thread = threading.Thread(target=self._run, args=(address, limits), daemon=True)
        self.thread.start()
        assert self.ready.wait(5)

    def _run(self, address: str, limits: ServerLimits) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(serve(echo_handler, address, limits))
        self.address = str(self.server.address)
        self.ready.set()
        self.loop.run_until_complete(self.server.wait_closed())
        self.loop.close()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(5)
        self.thread.join(5)


@pytest.fixture
def echo_server() -> Iterator[_ServerThread]:
    srv = _ServerThread("tcp://127.0.0.1:0", ServerLimits(first_byte_timeout=2, idle_timeout=2))
    yield srv
    srv.stop()


def test_blocking_client_roundtrip(echo_server: _ServerThread) -> None:
    with BlockingClient(echo_server.address, timeout=2) as client:
        assert client.request(b"ping") == b"ping"
        client.send_frame(b"two")
        client.send_frame(b"three")
        assert client.recv_frame() == b"two"
        assert client.recv_frame() == b"three"
        client.send_all(b"\x00\x00\x00\x01Z")
        assert client.recv_exact(5) == b"\x00\x00\x00\x01Z"
        client.shutdown_write()
        assert client.recv_frame() is None  # clean EOF after half-close
    with pytest.raises(ClosedResourceError, match="client is closed"):
        client.socket  # noqa: B018


def test_blocking_client_timeout(echo_server: _ServerThread) -> None:
    with BlockingClient(echo_server.address, timeout=2) as client:
        client.send_frame(b"sleep:1")
        with pytest.raises(DeadlineError, match="deadline passed"):
            client.recv_frame(timeout=0.2)


def test_blocking_client_refused() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(TransportError, match="cannot connect") as info:
        BlockingClient(f"tcp://127.0.0.1:{port}", timeout=1)
    assert info.value.reason is Reason.CONNECTION_REFUSED


def test_async_connect_refused_and_bad_host() -> None:
    async def main() -> None:
        with pytest.raises(TransportError, match=r"cannot connect to unix:///nonexistent/x\.sock"):
            await connect("unix:///nonexistent/x.sock", timeout=1)
        with pytest.raises(TransportError, match="cannot resolve"):
            await connect("tcp://no-such-host.invalid:1", timeout=5)

    asyncio.run(main())


def test_stream_contract(echo_server: _ServerThread) -> None:
    async def main() -> None:
        stream = await connect(echo_server.address)
        await stream.send_all(b"\x00\x00\x00\x02hi")
        await stream.send_eof()
        await stream.send_eof()  # second call is a no-op
        with pytest.raises(ClosedResourceError, match="send after send_eof"):
            await stream.send_all(b"x")
        got = b""
        while chunk := await stream.receive_some(3):
            assert len(chunk) <= 3
            got += chunk
        assert got == b"\x00\x00\x00\x02hi"
        await stream.aclose()
        with pytest.raises(ClosedResourceError, match="receive on a closed stream"):
            await stream.receive_some()
        with pytest.raises(ClosedResourceError, match="send on a closed stream"):
            await stream.send_all(b"x")

    asyncio.run(main())


def test_listener_accept_interface(unix_path: str) -> None:
    async def main() -> None:
        listener = open_listener(parse_address(f"unix://{unix_path}"))
        client_task = asyncio.create_task(connect(listener.address))
        server_side = await listener.accept()
        client = await client_task
        await client.send_all(b"raw")
        assert await server_side.receive_some() == b"raw"
        for s in (client, server_side):
            await s.aclose()
        await listener.aclose()
        await listener.aclose()
        with pytest.raises(ClosedResourceError, match="closed listener"):
            await listener.accept()

    asyncio.run(main())


@pytest.mark.skipif(not has_vsock(), reason="AF_VSOCK not available")
def test_vsock_listener_create_and_bind_only() -> None:
    """vsock is only created and bound here: NEVER connect to CID 2 or 3 on these hosts."""
    addr = parse_address(f"vsock://any:{socket.VMADDR_PORT_ANY}")
    try:
        listener = open_listener(addr)
    except ConfigError as exc:  # e.g. no vsock transport loaded in this kernel
        pytest.skip(f"vsock bind unavailable: {exc}")
    assert listener.address.kind == "vsock"
    assert listener.address.port != socket.VMADDR_PORT_ANY  # the kernel picked a port
    sock = socket.socket(fileno=socket.dup(listener.fileno))
    try:
        assert sock.type == socket.SOCK_STREAM  # VS-6
        assert sock.family == socket.AF_VSOCK
    finally:
        sock.close()
    asyncio.run(listener.aclose())
