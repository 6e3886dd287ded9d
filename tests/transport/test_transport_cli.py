"""`nitroguard serve echo` and `nitroguard proxy` as real subprocesses."""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from nitroguard.transport import BlockingClient

Spawn = Callable[..., tuple[subprocess.Popen[str], str]]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_echo_prints_address_and_exits_cleanly(spawn: Spawn, sig: signal.Signals) -> None:
    proc, address = spawn("serve", "echo", "--listen", "tcp://127.0.0.1:0")
    assert address.startswith("tcp://127.0.0.1:")
    assert not address.endswith(":0")
    with BlockingClient(address, timeout=5) as client:
        assert client.request(b"hello") == b"hello"
    proc.send_signal(sig)
    assert proc.wait(10) == 0
    assert proc.stderr is not None
    assert "stopped; counters" in proc.stderr.read()


def test_serve_echo_unix_and_limits(spawn: Spawn, unix_path: str) -> None:
    proc, address = spawn(
        "-v",
        "serve",
        "echo",
        "--stats-interval",
        "0.2",
        "--listen",
        f"unix://{unix_path}",
        "--max-frame-size",
        "16",
        "--first-byte-timeout",
        "0.3",
    )
    assert address == f"unix://{unix_path}"
    with BlockingClient(address, timeout=5) as client:
        assert client.request(b"0123456789abcdef") == b"0123456789abcdef"
        client.send_all(b"\x00\x00\x00\x11" + b"x" * 17)  # one byte over the limit
        assert client.recv_frame() is None  # closed by the server
    with BlockingClient(address, timeout=5) as client:
        start = time.monotonic()
        assert client.recv_frame() is None  # first-byte timeout closes us
        assert time.monotonic() - start < 2
    time.sleep(0.3)
    proc.terminate()
    assert proc.wait(10) == 0
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "counters: {'accepted': 2" in err  # periodic stats log
    assert "'protocol_errors': 1" in err
    assert "'first_byte': 1" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "tcp://127.0.0.1"], "invalid address"),
        (["--listen", "tcp://127.0.0.1:0", "--idle-timeout", "0"], "must be a positive"),
        (["--listen", "tcp://127.0.0.1:0", "--max-connections", "x"], "not an integer"),
    ],
)
def test_serve_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nitroguard", "serve", "echo", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr


def _low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))


def test_accept_loop_survives_emfile(spawn: Spawn) -> None:
    """With 40 fds and a cap of 1000, accept(2) hits EMFILE; the server backs off and lives."""
    proc, address = spawn(
        "-v",
        "serve",
        "echo",
        "--listen",
        "tcp://127.0.0.1:0",
        "--first-byte-timeout",
        "30",
        preexec_fn=_low_nofile,
    )
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    flood = [socket.create_connection((host, int(port)), timeout=5) for _ in range(80)]
    time.sleep(0.5)
    assert proc.poll() is None  # still running despite EMFILE
    for s in flood:
        s.close()
    time.sleep(0.3)
    with BlockingClient(address, timeout=10) as client:  # and serving again
        assert client.request(b"alive") == b"alive"
    proc.terminate()
    assert proc.wait(10) == 0
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "accept failed (EMFILE)" in err
    assert "'accept_errors': 0" not in err
