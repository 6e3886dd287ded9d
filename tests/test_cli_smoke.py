from __future__ import annotations

import subprocess
import sys

import nitroguard


def test_version_via_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nitroguard", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == f"nitroguard {nitroguard.__version__}"


def test_usage_error_exits_2() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nitroguard", "no-such-command"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 2
    assert "invalid choice" in out.stderr
