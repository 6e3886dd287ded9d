"""`EnclaveApp.run()` explains itself (issue 14, section 2).

`run()` is an application's `main`, so these run it as one: in a real subprocess,
checking its exit status and what a person reads on stderr.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from channel_helpers import emulated

from nitroguard import nsm as nsm_pkg
from nitroguard.app import AppConfig, EnclaveApp, Mode
from nitroguard.findings import Status
from nitroguard.nsm import NsmServer

_APP = textwrap.dedent(
    """
    import os, sys
    from nitroguard.app import AppConfig, EnclaveApp
    from nitroguard.testing import ephemeral_nsm

    app = EnclaveApp("demoapp")

    @app.operation("ping")
    async def ping(args):
        return "pong"

    nsm = ephemeral_nsm() if os.environ.get("USE_EPHEMERAL") else None
    config = AppConfig.from_env(random_device=sys.argv[1]) if len(sys.argv) > 1 else None
    app.run(config, nsm=nsm)
    """
)


def _run_app(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "app.py"
    script.write_text(_APP)
    full = {k: v for k, v in os.environ.items() if not k.startswith("NITROGUARD_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full,
        check=False,
    )


def test_bad_setting_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    out = _run_app(tmp_path, {"NITROGUARD_IDLE_TIMEOUT": "soon"})
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert (
        out.stderr.strip().splitlines()[-1]
        == "error: $NITROGUARD_IDLE_TIMEOUT: not a number: 'soon'"
    )


def test_missing_nsm_is_explained(tmp_path: Path) -> None:
    out = _run_app(tmp_path, {"NITROGUARD_NSM": f"device:{tmp_path / 'no-nsm'}"})
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "error: " in out.stderr
    assert "demoapp: cannot start" in out.stderr


def test_failing_audit_lists_evidence_and_fix_then_refuses(tmp_path: Path) -> None:
    random_file = tmp_path / "random"
    random_file.write_bytes(b"")
    env = {"USE_EPHEMERAL": "1", "NITROGUARD_LISTEN": "tcp://127.0.0.1:0"}
    out = _run_app(tmp_path, env, str(random_file))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    # Production mode outside an enclave: an emulator handle is no evidence (ENV-1).
    assert "audit ENV-1 fail: Running inside a Nitro Enclave" in out.stderr
    assert "  evidence: not a Nitro Enclave" in out.stderr
    assert "an emulator NSM handle (not evidence of an enclave)" in out.stderr
    assert out.stderr.rstrip().endswith("demoapp: refusing to start")


def test_port_in_use_is_explained(tmp_path: Path) -> None:
    random_file = tmp_path / "random"
    random_file.write_bytes(b"")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            "USE_EPHEMERAL": "1",
            "NITROGUARD_MODE": "development",
            "NITROGUARD_LISTEN": f"tcp://127.0.0.1:{port}",
        }
        out = _run_app(tmp_path, env, str(random_file))
    assert out.returncode == 2  # the transport reports it as a configuration error
    assert "Traceback" not in out.stderr
    assert f"error: cannot listen on tcp://127.0.0.1:{port}" in out.stderr
    # INFO logging was configured: the start-up steps are visible.
    assert "INFO nitroguard.app: demoapp: starting in development mode" in out.stderr


def test_serving_on_is_printed_and_sigterm_stops(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(_APP)
    random_file = tmp_path / "random"
    random_file.write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NITROGUARD_")}
    env.update(
        USE_EPHEMERAL="1", NITROGUARD_MODE="development", NITROGUARD_LISTEN="tcp://127.0.0.1:0"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), str(random_file)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("serving on tcp://127.0.0.1:"):
                break
        proc.terminate()
        rest, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    text = "".join(lines) + (rest or "")
    assert any(line.startswith("serving on tcp://127.0.0.1:") for line in lines), text
    assert "limit: max_connections=" in text
    assert "Traceback" not in text


async def _start_dev(tmp_path: Path, nsm: object, **overrides: object) -> list[object]:
    random_file = tmp_path / "random"
    random_file.write_bytes(b"")
    config = AppConfig(
        mode=Mode.DEVELOPMENT,
        listen="tcp://127.0.0.1:0",
        random_device=str(random_file),
        **overrides,  # type: ignore[arg-type]
    )
    running = await EnclaveApp("t").start(config, nsm=nsm)
    await running.close()
    return list(running.findings)


def test_emulator_root_skip_or_verify(tmp_path: Path) -> None:
    """Against a served emulator (no in-process PKI): without $NITROGUARD_NSM_ROOT the
    self-attestation checks skip, never fail; with it they verify."""
    emulator = emulated()
    short_unix_path = tempfile.mkdtemp(prefix="ngr-", dir="/tmp") + "/n.sock"
    server = NsmServer(emulator, short_unix_path)
    server.start()
    try:
        with nsm_pkg.open(f"emulator:{short_unix_path}") as nsm:
            findings = asyncio.run(_start_dev(tmp_path, nsm))
            att2 = next(f for f in findings if f.id == "ATT-2")  # type: ignore[attr-defined]
            assert att2.status is Status.SKIP  # type: ignore[attr-defined]
            assert att2.evidence.startswith("emulator root not given")  # type: ignore[attr-defined]
            root = tmp_path / "root.pem"
            root.write_bytes(emulator.pki.root_pem)
            findings = asyncio.run(_start_dev(tmp_path, nsm, nsm_root=str(root)))
            att2 = next(f for f in findings if f.id == "ATT-2")  # type: ignore[attr-defined]
            assert att2.status is not Status.SKIP  # type: ignore[attr-defined]
            assert "untrusted_root" not in att2.evidence  # type: ignore[attr-defined]
    finally:
        server.shutdown()


def test_nsm_root_from_env() -> None:
    assert AppConfig.from_env({"NITROGUARD_NSM_ROOT": "/x.pem"}).nsm_root == "/x.pem"


def test_bad_nsm_root_names_the_variable(tmp_path: Path) -> None:
    from nitroguard.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\$NITROGUARD_NSM_ROOT: cannot read"):
        asyncio.run(_start_dev(tmp_path, emulated(), nsm_root=str(tmp_path / "missing.pem")))


def test_application_error_in_client_sends_close_not_truncation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception of the application inside `with connect_blocking(...)` ends the
    channel with the authenticated CLOSE; only a real truncation is logged as one."""
    import logging
    import threading

    from channel_helpers import check_for

    from nitroguard._commands._demo.vault import build_vault
    from nitroguard.channel import connect_blocking

    caplog.set_level(logging.DEBUG)
    nsm = emulated()
    random_file = tmp_path / "random"
    random_file.write_bytes(b"")
    config = AppConfig(
        mode=Mode.DEVELOPMENT, listen="tcp://127.0.0.1:0", random_device=str(random_file)
    )
    loop = asyncio.new_event_loop()
    running = loop.run_until_complete(build_vault().start(config, nsm=nsm))
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        address = str(running.address)

        class AppBug(Exception):
            pass

        with (
            pytest.raises(AppBug),
            connect_blocking(address, check=check_for(nsm, service="vault")),
        ):
            raise AppBug
        # And a peer that really goes away without CLOSE:
        channel = connect_blocking(address, check=check_for(nsm, service="vault"))
        channel.abort()
        time.sleep(0.5)  # let the server notice
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(running.close())
        loop.close()
    messages = [r.getMessage() for r in caplog.records]
    assert not any("record authentication failed" in m for m in messages), messages
    assert sum("peer closed without authenticated close" in m for m in messages) == 1, messages
