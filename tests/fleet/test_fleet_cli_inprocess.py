"""`health`, `proxy --metrics-listen` and `serve --metrics-listen` in-process (real signals)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fleet_helpers import GOOD_PCRS, OTHER_PCR0, free_port, http_get, running_enclave

from nitroguard._cli import main

PCR_ARGS = [arg for i, v in GOOD_PCRS.items() for arg in ("--pcr", f"{i}={v.hex()}")]


def exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert isinstance(info.value.code, int)
    return info.value.code


def poll_then_sigterm(port: int, check: Callable[[], bool], seen: list[bool]) -> threading.Thread:
    """Poll until `check()` holds (the command is up), record it, then SIGTERM this process."""

    def run() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if check():
                    seen.append(True)
                    break
            except OSError:
                pass
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_health_one_shot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with running_enclave(tmp_path) as enc:
        base = [
            "health",
            enc.address,
            "--channel",
            "--service",
            "fleet-test",
            "--root",
            str(enc.root_pem),
        ]
        assert exit_code([*base, *PCR_ARGS]) == 0
        assert capsys.readouterr().out.startswith("ready: attested round trip in ")
        assert exit_code([*base, "--pcr", f"0={OTHER_PCR0.hex()}", "--json"]) == 1
        result = json.loads(capsys.readouterr().out)
        assert result["ready"] is False
        assert result["reason"] == "pcr_mismatch"
        assert exit_code([*base, *PCR_ARGS, "--pcr", f"0={OTHER_PCR0.hex()}"]) == 2  # twice
        assert exit_code([*base, *PCR_ARGS, "--metrics-listen", "tcp://127.0.0.1:0"]) == 2


def test_health_sidecar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port, mport = free_port(), free_port()
    seen: list[bool] = []
    with running_enclave(tmp_path) as enc:

        def ready() -> bool:
            return (
                http_get(port, "/readyz")[0] == 200
                and b"enclave_requests_total" in http_get(mport, "/metrics")[1]
            )

        thread = poll_then_sigterm(port, ready, seen)
        argv = [
            "health",
            enc.address,
            "--channel",
            "--service",
            "fleet-test",
            "--root",
            str(enc.root_pem),
            *PCR_ARGS,
            "--interval",
            "0.3",
            "--serve",
            f"http://127.0.0.1:{port}",
            "--metrics-listen",
            f"tcp://127.0.0.1:{mport}",
        ]
        assert exit_code(argv) == 0
        thread.join(20)
    assert seen == [True]
    out = capsys.readouterr().out
    assert f"serving on tcp://127.0.0.1:{port}" in out
    assert f"metrics on tcp://127.0.0.1:{mport}" in out


def test_health_sidecar_not_ready(tmp_path: Path) -> None:
    port = free_port()
    seen: list[bool] = []
    with running_enclave(tmp_path) as enc:

        def not_ready() -> bool:
            status, body = http_get(port, "/readyz")
            return status == 503 and body == b"not ready: pcr_mismatch\n"

        thread = poll_then_sigterm(port, not_ready, seen)
        argv = [
            "health",
            enc.address,
            "--channel",
            "--service",
            "fleet-test",
            "--root",
            str(enc.root_pem),
            "--pcr",
            f"0={OTHER_PCR0.hex()}",
            "--interval",
            "0.3",
            "--serve",
            f"http://127.0.0.1:{port}",
        ]
        assert exit_code(argv) == 0
        thread.join(20)
    assert seen == [True]


@pytest.mark.parametrize("command", ["proxy", "serve"])
def test_metrics_listen(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    mport = free_port()
    seen: list[bool] = []
    prefix = b"nitroguard_proxy_server" if command == "proxy" else b"nitroguard_server"

    def scraped() -> bool:
        status, body = http_get(mport, "/metrics")
        return status == 200 and prefix + b"_connections_accepted_total" in body

    thread = poll_then_sigterm(mport, scraped, seen)
    if command == "proxy":
        argv = [
            "proxy",
            "--listen",
            "tcp://127.0.0.1:0",
            "--to",
            "tcp://127.0.0.1:9",
            "--metrics-listen",
            f"tcp://127.0.0.1:{mport}",
        ]
    else:
        argv = [
            "serve",
            "echo",
            "--listen",
            "tcp://127.0.0.1:0",
            "--metrics-listen",
            f"tcp://127.0.0.1:{mport}",
        ]
    assert exit_code(argv) == 0
    thread.join(20)
    assert seen == [True]
    out = capsys.readouterr().out
    assert f"metrics on tcp://127.0.0.1:{mport}" in out
    if command == "proxy":
        assert "(relay: " in out


def test_metrics_listen_bad_address() -> None:
    argv = ["serve", "echo", "--listen", "tcp://127.0.0.1:0", "--metrics-listen", "unix:///x"]
    assert exit_code(argv) == 2
