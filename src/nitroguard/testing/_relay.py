"""Adversarial scenarios for the proxy relay: random chunking, stalls, half-closes, resets.

One `Scenario` drives a real proxy on loopback between a raw client socket and an
upstream server, both misbehaving as told. `run_scenario` returns what each end
received, and the invariants checked by the test suite and ``bench/fuzz_proxy.py``:
bytes arrive in order, never duplicated or altered (a prefix of what was sent;
all of it when nobody reset), and no file descriptor outlives the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nitroguard.transport import parse_address
from nitroguard.transport.proxy import ProxyConfig, start_proxy

__all__ = ["Outcome", "Scenario", "open_fds", "random_scenario", "run_scenario"]

#: Stalls happen between the first chunks only (bounds a scenario's duration).
_STALLS = 20


@dataclass(frozen=True)
class Scenario:
    """What each side sends and how it misbehaves.

    Attributes:
        up: bytes the client sends; down: bytes the upstream sends.
        client_chunks / upstream_chunks: sizes the payloads are cut into.
        stall: seconds slept between each of the first 20 chunks (0 for none).
        client_reset_after: reset (RST) the client after sending this many chunks.
        upstream_reset_after: reset the upstream after sending this many chunks.
        client_half_close: send FIN after the payload (else keep the write side open
            until the upstream's data has all arrived).
    """

    up: bytes
    down: bytes
    client_chunks: tuple[int, ...]
    upstream_chunks: tuple[int, ...]
    stall: float = 0.0
    client_reset_after: int | None = None
    upstream_reset_after: int | None = None
    client_half_close: bool = True


@dataclass(frozen=True)
class Outcome:
    """What arrived: ``upstream_got`` (client to upstream) and ``client_got``."""

    upstream_got: bytes
    client_got: bytes

    def check(self, scenario: Scenario) -> None:
        """Raise AssertionError unless the relay kept its invariants."""
        reset = scenario.client_reset_after is not None or scenario.upstream_reset_after is not None
        for name, got, sent in (
            ("up", self.upstream_got, scenario.up),
            ("down", self.client_got, scenario.down),
        ):
            if not sent.startswith(got):
                raise AssertionError(f"{name}: received bytes are not a prefix of those sent")
            if not reset and got != sent:
                raise AssertionError(f"{name}: {len(got)} of {len(sent)} bytes without a reset")


def _cut(data: bytes, sizes: tuple[int, ...]) -> list[bytes]:
    out, pos, i = [], 0, 0
    while pos < len(data):
        size = max(1, sizes[i % len(sizes)]) if sizes else len(data)
        out.append(data[pos : pos + size])
        pos += size
        i += 1
    return out


def _rst(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _read_all(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    buf = bytearray()
    with contextlib.suppress(OSError):
        while chunk := await loop.sock_recv(sock, 65536):
            buf += chunk
    return bytes(buf)


async def _send(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    chunks: list[bytes],
    stall: float,
    reset_after: int | None,
) -> bool:
    """Send chunks; True when it reset the socket."""
    for i, chunk in enumerate(chunks):
        if reset_after is not None and i >= reset_after:
            _rst(sock)
            return True
        try:
            await loop.sock_sendall(sock, chunk)
        except OSError:
            return False
        if stall and i < _STALLS:
            await asyncio.sleep(stall)
    if reset_after is not None:
        _rst(sock)
        return True
    return False


def _upstream(
    scenario: Scenario, got_up: bytearray, up_done: asyncio.Event
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """The scenario's upstream server: it records what arrives in `got_up`, sends its
    side as the scenario says, and sets `up_done` when it is finished."""

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")

        async def drain_in() -> None:
            with contextlib.suppress(OSError):
                while chunk := await reader.read(65536):
                    got_up.extend(chunk)

        reading = asyncio.ensure_future(drain_in())
        reset = False
        for i, chunk in enumerate(_cut(scenario.down, scenario.upstream_chunks)):
            if scenario.upstream_reset_after is not None and i >= scenario.upstream_reset_after:
                reset = True
                break
            try:
                writer.write(chunk)
                await writer.drain()
            except OSError:
                break
            if scenario.stall and i < _STALLS:
                await asyncio.sleep(scenario.stall)
        if reset or scenario.upstream_reset_after is not None:
            reading.cancel()
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            with contextlib.suppress(OSError):
                writer.write_eof()
            await reading
            writer.close()
        with contextlib.suppress(BaseException):
            await reading
        up_done.set()

    return upstream


async def run_scenario(scenario: Scenario, *, relay: str = "auto", budget: float = 20.0) -> Outcome:
    """Run one scenario through a fresh proxy (relay ``auto``, ``splice`` or ``copy``)."""
    loop = asyncio.get_running_loop()
    got_up = bytearray()
    up_done = asyncio.Event()

    upstream = _upstream(scenario, got_up, up_done)
    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy, _ = await start_proxy(
        ProxyConfig(
            listen=parse_address("tcp://127.0.0.1:0"),
            to=parse_address(f"tcp://127.0.0.1:{port}"),
            idle_timeout=5.0,
            relay=relay,
        )
    )
    client = socket.socket()
    client.setblocking(False)
    try:
        async with asyncio.timeout(budget):
            await loop.sock_connect(client, ("127.0.0.1", proxy.address.port))
            reader = asyncio.ensure_future(_read_all(loop, client))
            reset = await _send(
                loop,
                client,
                _cut(scenario.up, scenario.client_chunks),
                scenario.stall,
                scenario.client_reset_after,
            )
            if not reset:
                if scenario.client_half_close:
                    with contextlib.suppress(OSError):
                        client.shutdown(socket.SHUT_WR)
                    got_down = await reader
                else:
                    # The other order: all of the upstream's data (up to its EOF) first,
                    # then the client's half-close.
                    got_down = await reader
                    with contextlib.suppress(OSError):
                        client.shutdown(socket.SHUT_WR)
            else:
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader
                got_down = b""
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await up_done.wait()
    finally:
        if client.fileno() >= 0:
            client.close()
        await proxy.close()
        server.close()
        await server.wait_closed()
    return Outcome(bytes(got_up), bytes(got_down))


def random_scenario(rng: random.Random, *, max_size: int = 256 * 1024) -> Scenario:
    """A random scenario (sizes, chunking, stalls, half-closes, resets)."""

    def payload() -> bytes:
        return rng.randbytes(rng.choice([0, 1, rng.randrange(1, 4096), rng.randrange(1, max_size)]))

    def chunks() -> tuple[int, ...]:
        return tuple(rng.choice([1, 7, 1024, 65536, rng.randrange(1, 200_000)]) for _ in range(3))

    return Scenario(
        up=payload(),
        down=payload(),
        client_chunks=chunks(),
        upstream_chunks=chunks(),
        stall=rng.choice([0.0, 0.0, 0.001]),
        client_reset_after=rng.choice([None, None, None, 0, 1, 3]),
        upstream_reset_after=rng.choice([None, None, None, 0, 1, 3]),
        client_half_close=rng.random() < 0.8,
    )


def open_fds() -> int:
    """Descriptors open in this process now (Linux ``/proc/self/fd``)."""
    return len(os.listdir("/proc/self/fd")) - 1
