"""The serve/proxy/probe commands run in-process (real sockets, real signals)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

import pytest

from nitroguard._cli import main
from nitroguard.transport import BlockingClient


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert isinstance(info.value.code, int)
    return info.value.code


def _drive_then_sigterm(
    address: str, payloads: list[bytes], replies: list[bytes]
) -> threading.Thread:
    """Wait for the service, make requests, then SIGTERM this process (the CLI handles it)."""

    def run() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with BlockingClient(address, timeout=5) as client:
                    replies.extend(client.request(p) for p in payloads)
            except Exception:
                time.sleep(0.05)
                continue
            # Only once the service answered (so its SIGTERM handler is installed).
            os.kill(os.getpid(), signal.SIGTERM)
            return

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_serve_in_process_until_sigterm(
    short_unix_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"unix://{short_unix_path}"
    replies: list[bytes] = []
    thread = _drive_then_sigterm(address, [b"a", b"bb"], replies)
    assert _exit_code(["serve", "echo", "--listen", address, "--idle-timeout", "2"]) == 0
    thread.join(10)
    assert replies == [b"a", b"bb"]
    out = capsys.readouterr()
    assert out.out == f"listening on {address}\n"
    assert "'accepted': 1" in out.err


def test_proxy_in_process_until_sigterm(
    spawn_process: object, short_unix_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, echo = spawn_process("-m", "nitroguard", "serve", "echo", "--listen", "tcp://127.0.0.1:0")  # type: ignore[operator]
    port = echo.rsplit(":", 1)[1]
    address = f"unix://{short_unix_path}"
    replies: list[bytes] = []
    thread = _drive_then_sigterm(address, [b"through"], replies)
    code = _exit_code(["proxy", "--listen", address, "--to", echo, "--allow", f"127.0.0.1:{port}"])
    thread.join(10)
    assert code == 0
    assert replies == [b"through"]
    assert "'half_closes'" in capsys.readouterr().err


def test_probe_in_process_json(spawn_process: object, capsys: pytest.CaptureFixture[str]) -> None:
    _, address = spawn_process(  # type: ignore[operator]
        "-m", "nitroguard", "serve", "echo", "--listen", "tcp://127.0.0.1:0"
    )
    code = _exit_code(
        [
            "probe",
            address,
            "--attacks",
            "oversize,partial-eof",
            "--duration",
            "0.5",
            "--connections",
            "5",
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [a["name"] for a in report["attacks"]] == ["oversize", "partial-eof"]
    assert all(a["closed_by_server"] == 5 for a in report["attacks"])


def test_probe_in_process_text_and_refusal(
    spawn_process: object, capsys: pytest.CaptureFixture[str]
) -> None:
    _, address = spawn_process(  # type: ignore[operator]
        "-m", "nitroguard", "serve", "echo", "--listen", "tcp://127.0.0.1:0"
    )
    assert (
        _exit_code(
            [
                "probe",
                address,
                "--attacks",
                "garbage",
                "--duration",
                "0.5",
                "--connections",
                "3",
                "--seed",
                "7",
            ]
        )
        == 0
    )
    out = capsys.readouterr()
    # Per-attack results are results: stdout, then the verdict (issue 14).
    lines = out.out.strip().splitlines()
    assert lines[0].startswith("PASS garbage")
    assert lines[-1] == f"{address}: PASSED"
    assert "PASS garbage" not in out.err
    assert _exit_code(["probe", "tcp://192.0.2.1:80", "--duration", "1"]) == 2
    assert "refusing to attack" in capsys.readouterr().err


def test_unreachable_target_is_a_usage_error_not_a_vulnerable_service(
    run_cli: Any, unused_tcp_address: str
) -> None:
    # Issue 14: a mistyped port used to be reported as a vulnerable service (exit 1).
    for argv in (
        ["probe", unused_tcp_address, "--attacks", "idle", "--duration", "0.5"],
        ["probe", "leak", unused_tcp_address, "--class-a", "00", "--class-b", "01"],
    ):
        res = run_cli(*argv)
        assert res.code == 2, res.err
        assert f"cannot reach {unused_tcp_address}" in res.err
        assert "[target_unreachable]" in res.err
        assert "PASS" not in res.out
        assert "FAIL" not in res.out
        js = run_cli(*argv, "--json").json()
        assert js["error"]["reason"] == "target_unreachable"
        assert js["error"]["exit_code"] == 2
