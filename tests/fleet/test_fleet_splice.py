"""`Relay` directly: the copy fallback, splice over Unix sockets, idle timeout, resets."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from nitroguard.errors import BrokenResourceError, DeadlineError
from nitroguard.transport._splice import Relay, splice_available


def pairs(family: int = socket.AF_UNIX) -> tuple[socket.socket, ...]:
    if family == socket.AF_UNIX:
        a1, a2 = socket.socketpair()
        b1, b2 = socket.socketpair()
    else:
        socks = []
        for _ in range(2):
            with socket.create_server(("127.0.0.1", 0)) as ls:
                c = socket.create_connection(ls.getsockname())
                s, _ = ls.accept()
                socks += [c, s]
        a1, a2, b1, b2 = socks
    for s in (a1, a2, b1, b2):
        s.setblocking(False)
    return a1, a2, b1, b2


async def relay_once(use_splice: bool, family: int) -> tuple[bytes, bytes, dict[str, str]]:
    """client a1 <-> (a2 | relay | b1) <-> b2 upstream."""
    loop = asyncio.get_running_loop()
    a1, a2, b1, b2 = pairs(family)
    counts = {"up": 0, "down": 0, "eof": 0}
    relay = Relay(
        a2,
        b1,
        idle=5.0,
        count_up=lambda n: counts.__setitem__("up", counts["up"] + n),
        count_down=lambda n: counts.__setitem__("down", counts["down"] + n),
        on_eof=lambda: counts.__setitem__("eof", counts["eof"] + 1),
        use_splice=use_splice,
    )
    task = asyncio.ensure_future(relay.run())
    up, down = os.urandom(700_000), os.urandom(300_000)

    async def read_all(s: socket.socket) -> bytes:
        buf = bytearray()
        while chunk := await loop.sock_recv(s, 65536):
            buf += chunk
        return bytes(buf)

    async def client() -> bytes:
        await loop.sock_sendall(a1, up)
        a1.shutdown(socket.SHUT_WR)
        return await read_all(a1)

    async def upstream() -> bytes:
        got = await read_all(b2)  # the client's EOF arrives after all its bytes
        await loop.sock_sendall(b2, down)
        b2.shutdown(socket.SHUT_WR)
        return got

    got_down, got_up = await asyncio.gather(client(), upstream())
    await task
    for s in (a1, a2, b1, b2):
        s.close()
    assert counts == {"up": len(up), "down": len(down), "eof": 2}
    assert got_up == up
    assert got_down == down
    return got_up, got_down, relay.paths


@pytest.mark.parametrize("family", [socket.AF_UNIX, socket.AF_INET])
def test_copy_fallback_and_splice(family: int) -> None:
    _, _, paths = asyncio.run(relay_once(False, family))
    assert paths == {"up": "copy", "down": "copy"}
    if splice_available():
        _, _, paths = asyncio.run(relay_once(True, family))
        assert paths == {"up": "splice", "down": "splice"}


@pytest.mark.parametrize("use_splice", [False, True])
def test_idle_timeout(use_splice: bool) -> None:
    async def main() -> None:
        a1, a2, b1, b2 = pairs()
        relay = Relay(
            a2,
            b1,
            idle=0.2,
            count_up=lambda n: None,
            count_down=lambda n: None,
            on_eof=lambda: None,
            use_splice=use_splice,
        )
        with pytest.raises(DeadlineError) as info:
            await relay.run()
        assert info.value.details["kind"] == "idle"
        for s in (a1, a2, b1, b2):
            s.close()

    asyncio.run(asyncio.wait_for(main(), 10))


@pytest.mark.parametrize("use_splice", [False, True])
def test_reset_ends_the_relay(use_splice: bool) -> None:
    async def main() -> None:
        a1, a2, b1, b2 = pairs(socket.AF_INET)
        relay = Relay(
            a2,
            b1,
            idle=5,
            count_up=lambda n: None,
            count_down=lambda n: None,
            on_eof=lambda: None,
            use_splice=use_splice,
        )
        task = asyncio.ensure_future(relay.run())
        b2.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        b2.close()  # upstream resets
        await asyncio.sleep(0.05)
        a1.send(b"x" * 100_000)  # the relay writes into the reset upstream
        with pytest.raises(BrokenResourceError):
            await task
        for s in (a1, a2, b1):
            s.close()

    asyncio.run(asyncio.wait_for(main(), 10))
