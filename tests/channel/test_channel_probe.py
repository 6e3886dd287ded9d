"""`nitroguard probe --channel`: probing an `EnclaveApp` (issue 14, section 1)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from channel_helpers import emulated

from nitroguard._commands._demo.vault import build_vault
from nitroguard.app import AppConfig, Mode


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A development vault on loopback, served from a thread; (address, root PEM)."""
    nsm = emulated()
    random_file = tmp_path / "random"
    random_file.write_bytes(b"")
    root = tmp_path / "root.pem"
    root.write_bytes(nsm.pki.root_pem)
    config = AppConfig(
        mode=Mode.DEVELOPMENT, listen="tcp://127.0.0.1:0", random_device=str(random_file)
    )
    loop = asyncio.new_event_loop()
    running = loop.run_until_complete(build_vault().start(config, nsm=nsm))
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        yield str(running.address), root
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(running.close())
        loop.close()


def test_channel_probe_passes_a_sound_enclave_app(vault: tuple[str, Path], run_cli: Any) -> None:
    address, root = vault
    argv = ["probe", address, "--attacks", "idle,garbage", "--duration", "0.5"]
    res = run_cli(
        *argv,
        "--connections",
        "3",
        "--channel",
        "--root",
        str(root),
        "--service",
        "vault",
        "--json",
    )
    assert res.code == 0, res.out + res.err
    report = res.json()
    assert report["legit_client"] == "attested-channel"
    assert "against the SLA" in report["measured"]
    assert [a["name"] for a in report["attacks"]] == ["idle", "garbage"]


def test_without_channel_a_channel_service_is_not_called_vulnerable(
    vault: tuple[str, Path], run_cli: Any
) -> None:
    address, _ = vault
    res = run_cli("probe", address, "--attacks", "idle", "--duration", "0.5")
    assert res.code == 2
    assert "use --channel" in res.err


def test_channel_probe_with_the_wrong_root_cannot_reach(
    vault: tuple[str, Path], run_cli: Any, tmp_path: Path
) -> None:
    address, _ = vault
    other = tmp_path / "other.pem"
    other.write_bytes(emulated().pki.root_pem)
    res = run_cli(
        "probe",
        address,
        "--attacks",
        "idle",
        "--channel",
        "--root",
        str(other),
        "--service",
        "vault",
    )
    assert res.code == 2
    assert "[target_unreachable]" in res.err


def test_channel_options_need_channel(run_cli: Any) -> None:
    res = run_cli("probe", "tcp://127.0.0.1:9", "--pcr", f"0={'00' * 48}")
    assert res.code == 2
    assert "only with --channel" in res.err
