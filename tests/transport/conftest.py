"""Shared helpers for the transport tests (real sockets only)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture
def unix_path() -> Iterator[str]:
    """A short Unix socket path (sun_path is 108 bytes; pytest's tmp_path can be longer)."""
    d = tempfile.mkdtemp(prefix="ng-")
    path = os.path.join(d, "s.sock")
    yield path
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)


import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402

Spawn = Callable[..., tuple[subprocess.Popen[str], str]]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Run ``python -m nitroguard ARGS``; wait for ``listening on ADDRESS``; kill at teardown."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, **popen: object) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nitroguard", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **popen,  # type: ignore[call-overload]
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), (
            line,
            proc.stderr.read() if proc.poll() is not None else "",
        )
        return proc, line.removeprefix("listening on ").split()[0]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()
