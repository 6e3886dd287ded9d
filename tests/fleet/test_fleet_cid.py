"""``--allow-cid``: the proxy serves only the pinned enclave (tested over TCP via the seam).

There is no vsock loopback here, so the peer-id seam maps a TCP peer's source address
127.0.0.N to the fake CID N: the proxy's own check (refuse, count, forward nothing) is
what runs.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest

from nitroguard.errors import ConfigError
from nitroguard.fleet import new_registry, register_proxy, register_server, render
from nitroguard.transport import parse_address
from nitroguard.transport.proxy import ProxyConfig, start_proxy, vsock_peer_cid


def fake_cid(peer: object) -> int | None:
    """127.0.0.N -> CID N (the test's stand-in for the AF_VSOCK peer CID)."""
    if isinstance(peer, tuple) and isinstance(peer[0], str) and peer[0].startswith("127.0.0."):
        return int(peer[0].rsplit(".", 1)[1])
    return None


def connect_from(source: str, port: int, payload: bytes) -> bytes:
    data = b""
    try:  # a refused peer may be reset before it even finished sending
        with socket.create_connection(
            ("127.0.0.1", port), timeout=10, source_address=(source, 0)
        ) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        pass
    return data


def test_other_cids_are_refused_before_a_byte_is_forwarded() -> None:
    async def main() -> None:
        seen: list[bytes] = []

        async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.read()
            seen.append(data)
            writer.write(data.upper())
            await writer.drain()
            writer.close()

        up = await asyncio.start_server(upstream, "127.0.0.1", 0)
        up_port = up.sockets[0].getsockname()[1]
        config = ProxyConfig(
            listen=parse_address("tcp://127.0.0.1:0"),
            to=parse_address(f"tcp://127.0.0.1:{up_port}"),
            allow_cids=frozenset({16}),
        )
        server, counters = await start_proxy(config, peer_id=fake_cid)
        port = server.address.port
        try:
            ok = await asyncio.to_thread(connect_from, "127.0.0.16", port, b"from sixteen")
            assert ok == b"FROM SIXTEEN"
            refused = await asyncio.to_thread(connect_from, "127.0.0.17", port, b"from seventeen")
            assert refused == b""
            assert await asyncio.to_thread(connect_from, "127.0.0.1", port, b"x") == b""
            assert seen == [b"from sixteen"]  # nothing of the refused peers went upstream
            assert counters.peer_refused == 2
            assert counters.bytes_up == len(b"from sixteen")
            registry = new_registry()
            register_server(registry, server.counters, "nitroguard_proxy_server")
            register_proxy(registry, counters, "copy")
            text = render(registry).decode()
            assert "nitroguard_proxy_peer_refused_total 2.0" in text
            assert 'nitroguard_proxy_bytes_total{direction="up"} 12.0' in text
            assert 'nitroguard_proxy_relay_path{path="copy"} 1.0' in text
            assert "nitroguard_proxy_server_connections_accepted_total 3.0" in text
        finally:
            await server.close()
            up.close()
            await up.wait_closed()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_default_peer_id_never_takes_a_tcp_peer_for_a_cid() -> None:
    assert vsock_peer_cid((16, 5000)) == 16
    assert vsock_peer_cid(("127.0.0.16", 5000)) is None
    assert vsock_peer_cid("/run/sock") is None
    assert vsock_peer_cid(None) is None
    assert vsock_peer_cid((True, 1)) is None


def test_tcp_listener_with_allow_cid_refuses_everyone_by_default() -> None:
    async def main() -> None:
        config = ProxyConfig(
            listen=parse_address("tcp://127.0.0.1:0"),
            to=parse_address("tcp://127.0.0.1:9"),
            allow_cids=frozenset({16}),
        )
        server, counters = await start_proxy(config)  # the real vsock_peer_cid
        try:
            got = await asyncio.to_thread(connect_from, "127.0.0.16", server.address.port, b"x")
            assert got == b""
            assert counters.peer_refused == 1
            assert counters.upstream_failures == 0  # refused before dialling
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 60))


@pytest.mark.parametrize("cids", [frozenset(), frozenset({2}), frozenset({1 << 32})])
def test_bad_cid_sets(cids: frozenset[int]) -> None:
    with pytest.raises(ConfigError):
        ProxyConfig(
            listen=parse_address("tcp://127.0.0.1:0"),
            to=parse_address("tcp://127.0.0.1:9"),
            allow_cids=cids,
        )


def test_cli_allow_cid_needs_vsock() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nitroguard",
            "proxy",
            "--listen",
            "tcp://127.0.0.1:0",
            "--to",
            "tcp://127.0.0.1:9",
            "--allow-cid",
            "16",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "vsock" in proc.stderr
