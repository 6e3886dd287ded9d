"""`nitroguard serve echo` passes every attack of `nitroguard probe` (TCP and Unix)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from nitroguard.errors import ProbeError, Reason
from nitroguard.probe import ATTACKS, MAX_CONNECTIONS, ProbeConfig, check_target
from nitroguard.probe._probe import percentile

Spawn = Callable[..., tuple[subprocess.Popen[str], str]]

SERVER_LIMITS = [
    "--first-byte-timeout",
    "0.5",
    "--idle-timeout",
    "1",
    "--frame-timeout",
    "0.5",
    "--write-timeout",
    "0.5",
]


def probe_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nitroguard", "probe", *args],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_serve_echo_passes_every_attack(
    spawn_process: Spawn, short_unix_path: str, kind: str
) -> None:
    where = "tcp://127.0.0.1:0" if kind == "tcp" else f"unix://{short_unix_path}"
    server, address = spawn_process(
        "-m", "nitroguard", "serve", "echo", "--listen", where, *SERVER_LIMITS
    )
    result = probe_cli(
        address, "--attacks", "all", "--duration", "1", "--connections", "20", "--json"
    )
    report = json.loads(result.stdout)
    assert set(report) == {
        "target", "legit_client", "measured", "baseline_p50_ms", "baseline_p99_ms", "attacks",
        "passed",
    }  # fmt: skip
    assert 0 <= report["baseline_p50_ms"] <= report["baseline_p99_ms"]
    assert report["legit_client"] == "framed"
    assert report["target"] == address
    by_name = {a["name"]: a for a in report["attacks"]}
    assert list(by_name) == list(ATTACKS)
    for entry in report["attacks"]:
        assert set(entry) == {
            "name",
            "passed",
            "legit_p50_ms",
            "legit_p99_ms",
            "closed_by_server",
            "detail",
        }
    failed = {n: a["detail"] for n, a in by_name.items() if not a["passed"]}
    assert not failed, failed
    assert report["passed"] is True
    assert result.returncode == 0
    # The attack-specific evidence: hostile connections were closed, promptly.
    for name in ("idle", "slowloris", "partial-eof", "oversize", "half-close"):
        assert by_name[name]["closed_by_server"] == 20, by_name[name]
    assert by_name["no-read"]["closed_by_server"] >= 1
    assert server.poll() is None  # still serving


def test_remote_target_refused_without_flag() -> None:
    result = probe_cli("tcp://10.255.255.1:5000", "--duration", "1")
    assert result.returncode == 2
    assert "remote_target_refused" in result.stderr
    with pytest.raises(ProbeError, match="not loopback, unix or vsock") as info:
        check_target("tcp://example.com:443", allow_remote=False)
    assert info.value.reason is Reason.REMOTE_TARGET_REFUSED
    assert check_target("tcp://example.com:443", allow_remote=True).host == "example.com"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attacks", "idle,bogus"], "unknown attack"),
        (["--request-hex", "zz"], "not valid hex"),
        (["--connections", "0"], "connections must be"),
        (["--duration", "0"], "duration must be"),
    ],
)
def test_probe_usage_errors(args: list[str], message: str) -> None:
    result = probe_cli("tcp://127.0.0.1:1", *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_probe_config_bounds() -> None:
    with pytest.raises(ProbeError, match="connections must be"):
        ProbeConfig(connections=MAX_CONNECTIONS + 1)
    with pytest.raises(ProbeError, match="sla must be"):
        ProbeConfig(sla=0)
    with pytest.raises(ProbeError, match="legit_interval must be"):
        ProbeConfig(legit_interval=0)
    assert ProbeConfig(sla=0.2).legit_timeout == 1.0
    assert ProbeConfig(sla=3).legit_timeout == 6.0


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
