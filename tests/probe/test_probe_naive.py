"""The probe catches each classic bug of examples/naive_server.py (one fresh server per attack)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from nitroguard.probe import AttackResult, ProbeConfig, run_probe

Spawn = Callable[..., tuple[subprocess.Popen[str], str]]
NAIVE = Path(__file__).resolve().parents[2] / "examples" / "naive_server.py"
CONFIG = ProbeConfig(connections=10, duration=1.0, sla=0.5, seed=1)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def attack(address: str, name: str) -> AttackResult:
    report = asyncio.run(run_probe(address, [name], CONFIG))
    assert report.target == address
    assert not report.passed
    return report.attacks[0]


@pytest.mark.parametrize(
    ("name", "bug"),
    [
        ("idle", "serial accept + no first-byte timeout (VS-1, VS-2)"),
        ("slowloris", "no absolute frame deadline (VS-2)"),
        ("oversize", "unbounded length prefix is trusted (MEM-1)"),
        ("no-read", "no write timeout (VS-2)"),
        ("slow-handler", "serial handling: one slow request blocks all (VS-1)"),
    ],
)
def test_probe_catches_naive_bug(spawn_process: Spawn, name: str, bug: str) -> None:
    _, address = spawn_process(str(NAIVE), "tcp://127.0.0.1:0", "--max-seconds", "30")
    result = attack(address, name)
    assert not result.passed, bug
    assert result.legit_p99_ms > CONFIG.sla * 1000
    assert "legitimate requests failed or timed out" in result.detail
    if name == "oversize":
        assert result.closed_by_server == 0
        assert "still open at the end" in result.detail


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_probe_catches_the_recv_spin(spawn_process: Spawn, short_unix_path: str, kind: str) -> None:
    """partial-eof: half a frame then FIN makes the PR 609 loop spin at 100% CPU."""
    where = "tcp://127.0.0.1:0" if kind == "tcp" else f"unix://{short_unix_path}"
    proc, address = spawn_process(str(NAIVE), where, "--max-seconds", "30")
    before = cpu_seconds(proc.pid)
    result = attack(address, "partial-eof")
    spent = cpu_seconds(proc.pid) - before
    assert result.closed_by_server == 0
    assert "still open at the end" in result.detail
    assert "did not answer a legitimate request after the attack" in result.detail
    assert spent > 0.5, f"naive server used only {spent:.2f} s CPU: expected a busy spin"


def test_probe_cli_exit_1_and_json_on_naive(spawn_process: Spawn) -> None:
    _, address = spawn_process(str(NAIVE), "tcp://127.0.0.1:0", "--max-seconds", "30")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nitroguard",
            "probe",
            address,
            "--attacks",
            "idle",
            "--duration",
            "1",
            "--connections",
            "5",
            "--sla",
            "0.5",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert '"passed": false' in result.stdout
