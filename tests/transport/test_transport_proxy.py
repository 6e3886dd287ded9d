"""The parent-side proxy over real sockets: byte-exact copy, half-close, allowlist, failures."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable

import pytest

from nitroguard._commands._demo.echo import echo_handler
from nitroguard.errors import BrokenResourceError, ConfigError, Reason, TransportError
from nitroguard.transport import Address, BlockingClient, connect, parse_address, serve
from nitroguard.transport.proxy import (
    AllowEntry,
    Allowlist,
    ProxyConfig,
    resolve_upstream,
    start_proxy,
)

Spawn = Callable[..., tuple[subprocess.Popen[str], str]]
UpstreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_all(stream: object, budget: float = 10.0) -> bytes:
    """Read until the peer closes (a reset also ends it: close with unread data sends RST)."""
    chunks = []
    async with asyncio.timeout(budget):
        try:
            while chunk := await stream.receive_some():  # type: ignore[attr-defined]
                chunks.append(chunk)
        except BrokenResourceError:
            pass
    return b"".join(chunks)


async def upstream_server(handler: UpstreamHandler) -> tuple[asyncio.Server, Address]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, parse_address(f"tcp://127.0.0.1:{port}")


def test_byte_exact_both_ways_with_half_close() -> None:
    up_data = os.urandom(3 * 1024 * 1024 + 17)
    down_data = os.urandom(2 * 1024 * 1024 + 5)
    received: list[bytes] = []

    async def sink_then_send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read())  # until EOF: the client's FIN was propagated
        writer.write(down_data)  # the other direction still works after the half-close
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main() -> None:
        up, up_addr = await upstream_server(sink_then_send)
        proxy, counters = await start_proxy(
            ProxyConfig(listen=parse_address("tcp://127.0.0.1:0"), to=up_addr, idle_timeout=5)
        )
        client = await connect(proxy.address)
        await client.send_all(up_data)
        await client.send_eof()
        got = await read_all(client)
        await client.aclose()
        await proxy.close()
        up.close()
        await up.wait_closed()
        assert hashlib.sha256(received[0]).digest() == hashlib.sha256(up_data).digest()
        assert got == down_data
        assert counters.bytes_up == len(up_data)
        assert counters.bytes_down == len(down_data)
        assert counters.half_closes == 2
        assert proxy.counters.handler_errors == 0

    asyncio.run(main())


def test_upstream_half_close_keeps_client_direction_open(unix_path: str) -> None:
    """Upstream sends its answer and FIN first; the client can still send afterwards."""
    got: list[bytes] = []
    done = asyncio.Event()

    async def speak_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"banner")
        writer.write_eof()
        got.append(await reader.read())
        done.set()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_unix_server(speak_first, unix_path)
        proxy, _ = await start_proxy(
            ProxyConfig(
                listen=parse_address("tcp://127.0.0.1:0"),
                to=parse_address(f"unix://{unix_path}"),
                idle_timeout=5,
            )
        )
        client = await connect(proxy.address)
        assert await read_all(client) == b"banner"  # EOF from upstream propagated
        await client.send_all(b"late data")
        await client.send_eof()
        await asyncio.wait_for(done.wait(), 3)
        assert got == [b"late data"]
        await client.aclose()
        await proxy.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def test_upstream_failure_never_kills_the_proxy() -> None:
    async def main() -> None:
        # Reserve a port, then stop listening on it: connects are refused.
        up, up_addr = await upstream_server(lambda r, w: asyncio.sleep(0))
        up.close()
        await up.wait_closed()
        proxy, counters = await start_proxy(
            ProxyConfig(listen=parse_address("tcp://127.0.0.1:0"), to=up_addr, connect_timeout=1)
        )
        for _ in range(3):
            client = await connect(proxy.address)
            assert await read_all(client, 3) == b""  # closed, nothing else happens
            await client.aclose()
        assert counters.upstream_failures == 3
        # The upstream comes back: the same proxy now works.
        echo = await serve(echo_handler, up_addr)
        client = await connect(proxy.address)
        await client.send_all(b"\x00\x00\x00\x02ok")
        await client.send_eof()
        assert await read_all(client) == b"\x00\x00\x00\x02ok"
        await client.aclose()
        await echo.close()
        await proxy.close()

    asyncio.run(main())


def test_idle_timeout_closes_silent_connections() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()
        except ConnectionError:
            pass  # the proxy aborts its upstream side on timeout
        finally:
            writer.close()

    async def main() -> None:
        up, up_addr = await upstream_server(silent)
        proxy, _ = await start_proxy(
            ProxyConfig(listen=parse_address("tcp://127.0.0.1:0"), to=up_addr, idle_timeout=0.3)
        )
        client = await connect(proxy.address)
        start = time.monotonic()
        assert await read_all(client, 3) == b""
        assert 0.25 < time.monotonic() - start < 1.5
        client.abort()
        await proxy.close()
        assert proxy.counters.timeouts["idle"] == 1
        up.close()
        await up.wait_closed()

    asyncio.run(main())


def test_connection_cap() -> None:
    async def main() -> None:
        echo = await serve(echo_handler, "tcp://127.0.0.1:0")
        proxy, _ = await start_proxy(
            ProxyConfig(
                listen=parse_address("tcp://127.0.0.1:0"), to=echo.address, max_connections=1
            )
        )
        first = await connect(proxy.address)
        await first.send_all(b"\x00\x00\x00\x01a")
        assert await first.receive_some() == b"\x00\x00\x00\x01a"  # being handled
        second = await connect(proxy.address)
        assert await read_all(second, 2) == b""
        assert proxy.counters.refused == 1
        for s in (first, second):
            await s.aclose()
        await proxy.close()
        await echo.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- allowlist


def test_allowlist_live_connections() -> None:
    async def main() -> None:
        echo = await serve(echo_handler, "tcp://127.0.0.1:0")
        port = echo.address.port
        cases = [
            ([f"localhost:{port}"], f"tcp://localhost:{port}", False),  # resolves to loopback
            ([f"127.0.0.1:{port}"], f"tcp://localhost:{port}", False),  # name not listed
            ([f"127.0.0.1:{port}"], f"tcp://127.0.0.1:{port}", True),
            ([f"localhost:{port}", f"127.0.0.0/8:{port}"], f"tcp://localhost:{port}", True),
            ([f"127.0.0.1:{port % 65535 + 1}"], f"tcp://127.0.0.1:{port}", False),  # wrong port
        ]
        for allow, to, ok in cases:
            proxy, counters = await start_proxy(
                ProxyConfig(
                    listen=parse_address("tcp://127.0.0.1:0"),
                    to=parse_address(to),
                    allow=Allowlist.parse(allow),
                )
            )
            client = await connect(proxy.address)
            await client.send_all(b"\x00\x00\x00\x01!")
            await client.send_eof()
            got = await read_all(client, 3)
            await client.aclose()
            await proxy.close()
            assert (got == b"\x00\x00\x00\x01!") is ok, (allow, to)
            assert counters.denied == (0 if ok else 1)
        await echo.close()

    asyncio.run(main())


def _resolver(answers: dict[str, list[str]]) -> Callable[[str, int], Awaitable[list[str]]]:
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in answers:
            raise OSError("no such host")
        return answers[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def test_resolved_address_must_pass_too() -> None:
    allow = Allowlist.parse(["api.example.com:443", "10.1.0.0/16:443"])
    to = parse_address("tcp://api.example.com:443")

    async def main() -> None:
        # A public answer is admitted and returned as the literal to dial.
        good = _resolver({"api.example.com": ["93.184.216.34"]})
        target = await resolve_upstream(to, allow, resolver=good)
        assert target == Address("tcp", host="93.184.216.34", port=443)
        # DNS rebinding to the metadata service or loopback is refused.
        for evil in ("169.254.169.254", "127.0.0.1", "192.168.1.10", "::1"):
            with pytest.raises(TransportError, match="does not admit") as info:
                await resolve_upstream(to, allow, resolver=_resolver({"api.example.com": [evil]}))
            assert info.value.reason is Reason.NOT_ALLOWED
        # A private answer covered by an explicit CIDR entry is fine; others are skipped.
        mixed = _resolver({"api.example.com": ["127.0.0.1", "10.1.2.3"]})
        assert (await resolve_upstream(to, allow, resolver=mixed)).host == "10.1.2.3"
        # Resolution happens on every call (re-resolved per connection).
        again = _resolver({"api.example.com": ["93.184.216.34"]})
        for _ in range(3):
            await resolve_upstream(to, allow, resolver=again)
        assert again.calls == ["api.example.com"] * 3  # type: ignore[attr-defined]
        with pytest.raises(TransportError, match="not in the allowlist"):
            await resolve_upstream(
                parse_address("tcp://evil.example.com:443"), allow, resolver=good
            )
        with pytest.raises(TransportError, match="cannot resolve") as info:
            await resolve_upstream(to, allow, resolver=_resolver({}))
        assert info.value.reason is Reason.CONNECTION_REFUSED
        # Non-TCP targets (ingress to vsock/unix) are passed through.
        vs = parse_address("vsock://16:5000")
        assert await resolve_upstream(vs, allow) == vs

    asyncio.run(main())


@pytest.mark.parametrize(
    ("text", "host", "network", "port"),
    [
        ("api.example.com:443", "api.example.com", None, 443),
        ("API.Example.com:443", "api.example.com", None, 443),
        ("10.0.0.0/8:80", "", ipaddress.ip_network("10.0.0.0/8"), 80),
        ("1.2.3.4:80", "", ipaddress.ip_network("1.2.3.4/32"), 80),
        ("[::1]:80", "", ipaddress.ip_network("::1/128"), 80),
    ],
)
def test_allow_entry_parse(text: str, host: str, network: object, port: int) -> None:
    entry = AllowEntry.parse(text)
    assert (entry.host, entry.network, entry.port) == (host, network, port)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("example.com", "expected HOST:PORT"),
        ("example.com:0", "port must be 1..65535"),
        ("example.com:x", "port must be 1..65535"),
        ("[::1:80", "expected \\[IPV6\\]:PORT"),
        ("bad host:80", "not a valid host name"),
    ],
)
def test_allow_entry_errors(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as info:
        AllowEntry.parse(text)
    assert info.value.reason is Reason.INVALID_ADDRESS


def test_proxy_cli_ingress(spawn: Spawn, unix_path: str) -> None:
    echo, echo_addr = spawn("serve", "echo", "--listen", f"unix://{unix_path}")
    proxy, proxy_addr = spawn(
        "proxy", "--listen", "tcp://127.0.0.1:0", "--to", echo_addr, "--idle-timeout", "5"
    )
    with BlockingClient(proxy_addr, timeout=5) as client:
        for i in range(5):
            assert client.request(b"via proxy %d" % i) == b"via proxy %d" % i
    proxy.terminate()
    assert proxy.wait(10) == 0
    assert proxy.stderr is not None
    assert "'bytes_up': " in proxy.stderr.read()
    echo.terminate()
    assert echo.wait(10) == 0


def test_proxy_cli_bad_allow_exits_2() -> None:
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nitroguard",
            "proxy",
            "--listen",
            "tcp://127.0.0.1:0",
            "--to",
            "tcp://127.0.0.1:1",
            "--allow",
            "nohostport",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "expected HOST:PORT" in result.stderr


def test_proxy_keeps_a_client_that_half_closed_before_speaking(unix_path: str) -> None:
    """Unlike a framed server, the proxy must not drop a silent half-closed client."""

    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello from upstream")
        writer.write_eof()
        await reader.read()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_unix_server(banner, unix_path)
        proxy, _ = await start_proxy(
            ProxyConfig(
                listen=parse_address("tcp://127.0.0.1:0"),
                to=parse_address(f"unix://{unix_path}"),
                idle_timeout=5,
            )
        )
        # Half-close before the proxy even accepts (no await since start_proxy returned).
        raw = socket.create_connection(("127.0.0.1", proxy.address.port))
        raw.shutdown(socket.SHUT_WR)
        raw.setblocking(False)
        loop = asyncio.get_running_loop()
        got = b""
        async with asyncio.timeout(5):
            while chunk := await loop.sock_recv(raw, 4096):
                got += chunk
        raw.close()
        assert got == b"hello from upstream"
        await proxy.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
