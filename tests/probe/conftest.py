"""Probe test helpers: real servers as subprocesses (the naive example and `nitroguard serve`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator

import pytest

Spawn = Callable[..., tuple[subprocess.Popen[str], str]]


@pytest.fixture
def short_unix_path() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="ngp-")
    yield os.path.join(d, "s.sock")
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)


@pytest.fixture
def spawn_process() -> Iterator[Spawn]:
    """Start a server process (argv), wait for ``listening on ADDRESS``; SIGKILL at teardown.

    The naive server spins at 100% CPU after some attacks: it is always killed here,
    and it also kills itself after ``--max-seconds``.
    """
    procs: list[subprocess.Popen[str]] = []

    def start(*argv: str) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            proc.kill()
            pytest.fail(f"no 'listening on' line: {line!r} {proc.communicate(timeout=10)[1]}")
        return proc, line.removeprefix("listening on ").strip()

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()
