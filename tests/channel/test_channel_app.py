"""EnclaveApp: start-up order, fail-closed production, nonce-only attestation, limits."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from channel_helpers import aio, check_for, emulated

from nitroguard._commands._demo.vault import build_vault
from nitroguard._resource import AsyncResource, Resource
from nitroguard.app import (
    AppClient,
    AppConfig,
    AppError,
    AsyncAppClient,
    ClientKey,
    EnclaveApp,
    Mode,
    TrustedKeys,
)
from nitroguard.channel._aio import connect
from nitroguard.channel._blocking import connect_blocking
from nitroguard.errors import ConfigError, DecryptionError, Error, InsecureEnvironment


def dev_config(tmp_path: Path, **kw: object) -> AppConfig:
    (tmp_path / "random").touch()  # stands in for /dev/random (a file: no credit ioctl)
    return AppConfig(
        mode=Mode.DEVELOPMENT,
        listen="tcp://127.0.0.1:0",
        random_device=str(tmp_path / "random"),
        **kw,  # type: ignore[arg-type]
    )


ALICE = ClientKey.generate()
USERS = TrustedKeys({"alice": ALICE.public_key})


def vault() -> EnclaveApp:
    """The vault, trusting alice's key."""
    return build_vault(trusted_keys=USERS)


class TestStartup:
    @aio
    async def test_development_vault_end_to_end(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO)
        nsm = emulated()
        running = await vault().start(dev_config(tmp_path), nsm=nsm)
        try:
            check = check_for(nsm, service="vault")
            client = AsyncAppClient(await connect(running.address, check=check), check)
            assert await client.authenticate(ALICE) == "alice"
            assert await client.call("put", key="k", value=b"secret") is None
            assert await client.call("get", key="k") == b"secret"
            assert await client.call("keys") == ["k"]
            fresh = await client.attest()
            assert fresh.public_key == running.identity.public_key
            await client.aclose()
        finally:
            await running.close()
        text = caplog.text
        # Order: audit (warned, not enforced), seeding, then keys and serving.
        assert text.index("DEVELOPMENT MODE") < text.index("seeded 512 NSM bytes")
        assert text.index("seeded 512 NSM bytes") < text.index("serving on")
        assert "audit (not enforced) " in text  # this host is not an enclave: findings
        for limit in ("max_connections=256", "idle_timeout=60.0", "attest=30.0/min"):
            assert f"limit: {limit}" in text
        assert (tmp_path / "random").stat().st_size == 512

    @aio
    async def test_production_fails_closed_outside_an_enclave(self, tmp_path: Path) -> None:
        (tmp_path / "r").touch()
        config = AppConfig(listen="tcp://127.0.0.1:0", random_device=str(tmp_path / "r"))
        with pytest.raises(InsecureEnvironment, match="ATT-2") as info:
            await build_vault().start(config, nsm=emulated())
        # The emulator's documents do not chain to the AWS root: the self-attestation
        # check fails, whatever else this host looks like.
        assert "ATT-2" in {f.id for f in info.value.findings}
        assert (tmp_path / "r").stat().st_size == 0  # nothing ran after the audit

    def test_blocking_client(self, tmp_path: Path) -> None:
        async def main() -> None:
            nsm = emulated()
            running = await vault().start(dev_config(tmp_path), nsm=nsm)
            try:

                def use() -> object:
                    check = check_for(nsm, service="vault")
                    with connect_blocking(running.address, check=check) as channel:
                        client = AppClient(channel, check)
                        assert client.authenticate(ALICE) == "alice"
                        client.call("put", key="a", value=b"1")
                        doc = client.attest()
                        assert doc.nonce is not None
                        return client.call("get", key="a")

                assert await asyncio.to_thread(use) == b"1"
            finally:
                await running.close()

        asyncio.run(main())


class TestResources:
    """`RunningApp`, the clients and the channels are `AsyncResource`/`Resource`s."""

    @aio
    async def test_async_with_closes_app_client_and_channel(self, tmp_path: Path) -> None:
        nsm = emulated()
        async with await vault().start(dev_config(tmp_path), nsm=nsm) as running:
            assert isinstance(running, AsyncResource)
            check = check_for(nsm, service="vault")
            async with AsyncAppClient(await connect(running.address, check=check), check) as c:
                assert await c.authenticate(ALICE) == "alice"
            # The client's exit sent the authenticated CLOSE: the channel is finished.
            with pytest.raises(Error):
                await c.call("keys")
            address = running.address
        # The app's exit stopped the server: nothing listens any more.
        with pytest.raises(Error):
            await connect(address, check=check, timeout=2)

    def test_with_closes_blocking_client(self, tmp_path: Path) -> None:
        async def main() -> None:
            nsm = emulated()
            async with await vault().start(dev_config(tmp_path), nsm=nsm) as running:

                def use() -> None:
                    check = check_for(nsm, service="vault")
                    with AppClient(connect_blocking(running.address, check=check), check) as c:
                        assert isinstance(c, Resource)
                        assert c.authenticate(ALICE) == "alice"
                    with pytest.raises(Error):
                        c.call("keys")

                await asyncio.to_thread(use)

        asyncio.run(main())


class TestAttestEndpoint:
    @aio
    async def test_only_a_nonce_is_accepted(self, tmp_path: Path) -> None:
        nsm = emulated()
        running = await vault().start(dev_config(tmp_path, attest_burst=2), nsm=nsm)
        try:
            check = check_for(nsm, service="vault")
            client = AsyncAppClient(await connect(running.address, check=check), check)
            attacker_key = b"\x30" * 44
            with pytest.raises(AppError, match="exactly one argument: nonce") as info:
                await client.call("attest", nonce=b"n" * 32, public_key=attacker_key)
            assert info.value.reason == "invalid_argument"
            with pytest.raises(AppError, match="exactly one argument"):
                await client.call("attest", nonce=b"n" * 32, user_data=b"mine")
            with pytest.raises(AppError, match=r"16\.\.512 bytes"):
                await client.call("attest", nonce=b"short")
            await client.attest()
            await client.attest()
            with pytest.raises(AppError, match="too many attestation requests") as info:
                await client.attest()
            assert info.value.reason == "rate_limited"
            with pytest.raises(AppError, match="unknown operation") as info:
                await client.call("format_disk")
            assert info.value.reason == "unknown_operation"
            await client.aclose()
        finally:
            await running.close()

    @aio
    async def test_oversized_message_drops_connection(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        nsm = emulated()
        running = await vault().start(dev_config(tmp_path, max_message=1024), nsm=nsm)
        try:
            channel = await connect(running.address, check=check_for(nsm, service="vault"))
            await channel.send_message(b"x" * 2000)
            with pytest.raises(DecryptionError, match="peer closed without authenticated close"):
                await channel.recv_message()
            await channel.abort()
        finally:
            await running.close()
        assert "limit enforced: max_message" in caplog.text


class TestLimits:
    @aio
    async def test_idle_timeout_is_enforced_and_logged(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        nsm = emulated()
        running = await vault().start(dev_config(tmp_path, idle_timeout=0.3), nsm=nsm)
        try:
            channel = await connect(running.address, check=check_for(nsm, service="vault"))
            await asyncio.sleep(0.8)  # say nothing for longer than idle_timeout
            with pytest.raises(DecryptionError, match="peer closed without authenticated close"):
                await channel.recv_message()  # dropped without CLOSE
            await channel.abort()
        finally:
            await running.close()
        assert "limit enforced: idle timeout" in caplog.text


class TestConfig:
    def test_from_env(self) -> None:
        env = {
            "NITROGUARD_MODE": "Development",
            "NITROGUARD_LISTEN": "tcp://127.0.0.1:7000",
            "NITROGUARD_MAX_CONNECTIONS": "10",
            "NITROGUARD_IDLE_TIMEOUT": "5",
            "NITROGUARD_AUDIT_WAIVE": "env-1, time-1",
        }
        config = AppConfig.from_env(env, max_message=4096)
        assert config.mode is Mode.DEVELOPMENT
        assert config.listen == "tcp://127.0.0.1:7000"
        assert config.max_connections == 10
        assert config.idle_timeout == 5.0
        assert config.waive == {"ENV-1", "TIME-1"}
        assert config.max_message == 4096
        assert AppConfig.from_env({}).mode is Mode.PRODUCTION

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"NITROGUARD_MODE": "yolo"}, "production or development"),
            ({"NITROGUARD_IDLE_TIMEOUT": "soon"}, "not a number"),
            ({"NITROGUARD_IDLE_TIMEOUT": "-1"}, "must be > 0"),
        ],
    )
    def test_bad_env(self, env: dict[str, str], message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            AppConfig.from_env(env)

    def test_reserved_operation(self) -> None:
        app = EnclaveApp()
        with pytest.raises(ConfigError, match="reserved"):
            app.operation("attest")
        with pytest.raises(ConfigError, match="reserved"):
            app.operation("authenticate")
