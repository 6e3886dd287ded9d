"""The channel over real sockets, with the real emulator and verifier."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from channel_helpers import OTHER_PCRS, aio, check_for, emulated

from nitroguard.channel import _wire
from nitroguard.channel._aio import SecureChannel, connect, serve
from nitroguard.channel._blocking import connect_blocking
from nitroguard.errors import (
    ChannelError,
    ConfigError,
    DeadlineError,
    DecryptionError,
    PolicyError,
    RemoteProtocolError,
)
from nitroguard.nsm import EmulatedNsm
from nitroguard.testing.channel import HostileRelay
from nitroguard.transport import BlockingClient, ServerLimits, parse_address
from nitroguard.transport.proxy import ProxyConfig, start_proxy

LOCAL = "tcp://127.0.0.1:0"


async def echo(channel: SecureChannel) -> None:
    while (message := await channel.recv_message()) is not None:
        await channel.send_message(b"echo:" + message)


class TestOverSockets:
    @aio
    async def test_round_trip_tcp(self) -> None:
        nsm = emulated()
        async with await serve(echo, LOCAL, nsm) as server:
            check = check_for(nsm)
            async with await connect(server.address, check=check) as channel:
                assert channel.handshake.server_public_key == server.identity.public_key
                assert channel.handshake.document.pcrs[0] == b"\x11" * 48
                for size in (0, 10, 70_000, 300_000):
                    await channel.send_message(b"m" * size)
                    assert await channel.recv_message() == b"echo:" + b"m" * size

    @aio
    async def test_unix_socket_and_second_connection_hits_cache(self, tmp_path: object) -> None:
        nsm = emulated()
        address = f"unix://{tmp_path}/ch.sock"
        async with await serve(echo, address, nsm):
            check = check_for(nsm)
            for _ in range(2):
                async with await connect(address, check=check) as channel:
                    await channel.send_message(b"hi")
                    assert await channel.recv_message() == b"echo:hi"
            assert check.hits == 1

    @aio
    async def test_through_the_parent_proxy(self) -> None:
        """Full handshake over real sockets through nitroguard's parent proxy."""
        nsm = emulated()
        async with await serve(echo, LOCAL, nsm) as server:
            proxy, counters = await start_proxy(
                ProxyConfig(listen=parse_address(LOCAL), to=server.address)
            )
            try:
                async with await connect(proxy.address, check=check_for(nsm)) as channel:
                    assert channel.handshake.server_public_key == server.identity.public_key
                    await channel.send_message(b"through the parent")
                    assert await channel.recv_message() == b"echo:through the parent"
                # Everything, the attestation document included, went through the parent.
                assert counters.bytes_down > 1000
            finally:
                await proxy.close()

    @aio
    async def test_through_relay(self) -> None:
        nsm = emulated()
        async with await serve(echo, LOCAL, nsm) as server:
            relay = HostileRelay(server.address)
            address = await relay.start()
            try:
                async with await connect(address, check=check_for(nsm)) as channel:
                    await channel.send_message(b"via parent")
                    assert await channel.recv_message() == b"echo:via parent"
                # What the parent saw: no plaintext.
                seen = b"".join(f for _, f in relay.transcripts[0])
                assert b"via parent" not in seen
            finally:
                await relay.close()

    def test_blocking_client(self) -> None:
        async def main() -> None:
            nsm = emulated()
            async with await serve(echo, LOCAL, nsm) as server:

                def use() -> bytes:
                    with connect_blocking(server.address, check=check_for(nsm)) as channel:
                        return channel.request(b"sync")

                assert await asyncio.to_thread(use) == b"echo:sync"

        asyncio.run(main())


class TestBlockingEdges:
    def test_close_truncation_and_crash(self) -> None:
        async def once(channel: SecureChannel) -> None:
            message = await channel.recv_message()
            if message == b"half":
                await channel.send(b"\x00\x00\x00\x10abc")  # 16 announced, 3 sent, CLOSE
            elif message == b"crash":
                await channel.send(b"partial")
                raise RuntimeError("handler bug")

        async def main() -> None:
            nsm = emulated()
            async with await serve(once, LOCAL, nsm) as server:

                def use() -> None:
                    check = check_for(nsm)
                    with connect_blocking(server.address, check=check) as ch:
                        with pytest.raises(ChannelError, match="server closed") as info:
                            ch.request(b"nothing back")
                        assert info.value.reason == "connection_closed"
                        assert ch.recv() is None
                    with connect_blocking(server.address, check=check) as ch:
                        ch.send_message(b"half")
                        with pytest.raises(ChannelError, match="inside a message") as info:
                            ch.recv_message()
                        assert info.value.reason == "truncated"
                    ch = connect_blocking(server.address, check=check)
                    ch.send_message(b"crash")
                    assert ch.recv() == b"partial"
                    with pytest.raises(DecryptionError, match="authentication failed"):
                        ch.recv()
                    ch.abort()

                await asyncio.to_thread(use)

        asyncio.run(main())

    def test_blocking_needs_a_policy(self) -> None:
        with pytest.raises(ConfigError, match="needs a policy"):
            connect_blocking("tcp://127.0.0.1:9")


class TestParentAttacks:
    @aio
    async def test_redirect_to_other_enclave_rejected(self) -> None:
        """The parent's proxy points at a second enclave (same NSM root, other PCRs)."""
        good = emulated()
        other = EmulatedNsm(good.pki, pcrs=OTHER_PCRS)  # genuine NSM, another image
        async with await serve(echo, LOCAL, good), await serve(echo, LOCAL, other) as wrong:
            proxy, _ = await start_proxy(ProxyConfig(listen=parse_address(LOCAL), to=wrong.address))
            try:
                with pytest.raises(PolicyError, match="PCR0") as info:
                    await connect(proxy.address, check=check_for(good))
                assert info.value.reason == "pcr_mismatch"
            finally:
                await proxy.close()

    @aio
    async def test_key_swapping_relay_rejected(self) -> None:
        swap = HostileRelay.swap_handshake_key(bytes(range(1, 33)))
        hello = bytes([_wire.MessageType.SERVER_HELLO]) + bytes(100)
        assert swap(0, hello)[37:69] == bytes(range(1, 33))
        assert swap(1, hello) == hello
        with pytest.raises(ConfigError):
            HostileRelay.swap_handshake_key(b"short")
        nsm = emulated()
        async with await serve(echo, LOCAL, nsm) as server:
            relay = HostileRelay(server.address, to_client=swap)
            address = await relay.start()
            try:
                with pytest.raises(ChannelError, match="did not sign this handshake"):
                    await connect(address, check=check_for(nsm))
            finally:
                await relay.close()

    @aio
    async def test_replayed_server_hello_rejected(self) -> None:
        nsm = emulated()
        async with await serve(echo, LOCAL, nsm) as server:
            recorder = HostileRelay(server.address)
            address = await recorder.start()
            async with await connect(address, check=check_for(nsm)) as channel:
                await channel.send_message(b"x")
                await channel.recv_message()
            await recorder.close()
            old = recorder.recorded("s2c")
            assert old == next(f for d, f in recorder.transcripts[0] if d == "s2c")
            replayer = HostileRelay(server.address, to_client=HostileRelay.replay(old))
            address = await replayer.start()
            try:
                with pytest.raises(ChannelError, match="did not sign this handshake"):
                    await connect(address, check=check_for(nsm))
            finally:
                await replayer.close()

    @aio
    async def test_debug_enclave_rejected(self) -> None:
        nsm = emulated(debug_mode=True)
        async with await serve(echo, LOCAL, nsm) as server:
            with pytest.raises(PolicyError, match="debug") as info:
                await connect(server.address, check=check_for(nsm))
            assert info.value.reason == "debug_mode"

    @aio
    async def test_stale_document_rejected(self) -> None:
        """An enclave whose document is older than MaxAge (a replayed old document)."""
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
        nsm = emulated(clock=lambda: long_ago)
        async with await serve(echo, LOCAL, nsm) as server:
            with pytest.raises(PolicyError, match="old") as info:
                await connect(server.address, check=check_for(nsm))
            assert info.value.reason == "stale_document"


class TestServerLimits:
    @aio
    async def test_handshake_timeout(self, caplog: pytest.LogCaptureFixture) -> None:
        nsm = emulated()
        limits = ServerLimits(first_byte_timeout=5)
        async with await serve(echo, LOCAL, nsm, handshake_timeout=0.3, limits=limits) as s:
            # A client that sends its ClientHello and then nothing.
            hello = _wire.encode_client_hello(
                _wire.ClientHello((1,), (1,), bytes(32), bytes(range(32)))
            )

            def stall() -> bytes | None:
                with BlockingClient(s.address, timeout=5) as client:
                    client.send_frame(hello)
                    client.recv_frame()  # the ServerHello
                    return client.recv_frame()  # EOF when the server gives up

            assert await asyncio.to_thread(stall) is None
            assert s.server.counters.timeouts["handshake"] == 1
        assert "limit enforced: handshake not done within 0.3 s" in caplog.text

    @aio
    async def test_truncation_detected_over_sockets(self) -> None:
        async def crash(channel: SecureChannel) -> None:
            await channel.send(b"partial answer")
            raise RuntimeError("handler died")  # no CLOSE: the transport drops it

        nsm = emulated()
        async with await serve(crash, LOCAL, nsm) as server:
            channel = await connect(server.address, check=check_for(nsm))
            assert await channel.recv() == b"partial answer"
            with pytest.raises(DecryptionError, match="peer closed without authenticated close"):
                await channel.recv()
            await channel.abort()

    @aio
    async def test_connect_needs_a_policy(self) -> None:
        with pytest.raises(ConfigError, match="needs a policy"):
            await connect("tcp://127.0.0.1:9")

    @aio
    async def test_garbage_instead_of_server(self) -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"\x00\x00\x00\x02\x7f\x7f")
            await writer.drain()
            writer.close()

        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        try:
            with pytest.raises(RemoteProtocolError, match="unknown channel message type"):
                await connect(f"tcp://127.0.0.1:{port}", check=check_for(emulated()))
        finally:
            srv.close()
            await srv.wait_closed()

    @aio
    async def test_client_handshake_timeout(self) -> None:
        finished = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while await reader.read(100_000):
                    pass
            finally:
                writer.close()
                await writer.wait_closed()
                finished.set()

        srv = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        try:
            with pytest.raises(DeadlineError, match="handshake not done"):
                await connect(f"tcp://127.0.0.1:{port}", check=check_for(emulated()), timeout=0.3)
            await finished.wait()
        finally:
            srv.close()
            await srv.wait_closed()


def test_decryption_error_is_the_same_everywhere() -> None:
    assert DecryptionError().reason == "decryption_failed"
