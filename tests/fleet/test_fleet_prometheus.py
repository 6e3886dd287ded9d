"""A real Prometheus server scrapes the health sidecar and the proxy; values read back via its API.

Prometheus (Debian's ``prometheus`` package, installed by ``make test``) runs on loopback
with a generated config (1 s scrape interval, TSDB in tmp); the test queries
``/api/v1/query`` until the expected values arrive (bounded), and always kills it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_helpers import GOOD_PCRS, free_port, running_enclave

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PCR_ARGS = [arg for i, v in GOOD_PCRS.items() for arg in ("--pcr", f"{i}={v.hex()}")]


def _prometheus() -> str:
    path = shutil.which("prometheus")
    if path is None:
        if IN_CI:
            pytest.fail("prometheus is missing: `make test` installs it (Makefile target tools)")
        pytest.skip("prometheus not installed (make test installs it)")
    return path


def _spawn(args: list[str], first_line: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith(first_line), (
        line,
        proc.stderr.read() if proc.poll() is not None else "",
    )
    return proc, line


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for f in (proc.stdout, proc.stderr):
        if f is not None:
            f.close()


def query(port: int, expr: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def wait_value(port: int, expr: str, deadline: float) -> float:
    while True:
        try:
            result = query(port, expr)
        except OSError:
            result = []
        if result:
            value = result[0]["value"]
            assert isinstance(value, list)
            return float(value[1])
        assert time.monotonic() < deadline, f"prometheus never returned {expr}"
        time.sleep(0.3)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in reversed(started):
        _stop(proc)


@pytest.mark.slow
def test_prometheus_scrapes_sidecar_and_proxy(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    prometheus = _prometheus()
    with running_enclave(tmp_path) as enc:
        health, line = _spawn(
            [
                sys.executable,
                "-m",
                "nitroguard",
                "health",
                enc.address,
                "--channel",
                "--service",
                "fleet-test",
                "--root",
                str(enc.root_pem),
                *PCR_ARGS,
                "--interval",
                "0.5",
                "--serve",
                "http://127.0.0.1:0",
            ],
            "serving on ",
        )
        procs.append(health)
        health_port = int(line.rsplit(":", 1)[1])
        # A proxy in front of the enclave, with its own metrics endpoint.
        proxy, _ = _spawn(
            [
                sys.executable,
                "-m",
                "nitroguard",
                "proxy",
                "--listen",
                "tcp://127.0.0.1:0",
                "--to",
                enc.address,
                "--metrics-listen",
                "tcp://127.0.0.1:0",
            ],
            "listening on ",
        )
        procs.append(proxy)
        assert proxy.stdout is not None
        metrics_line = proxy.stdout.readline()
        assert metrics_line.startswith("metrics on "), metrics_line
        proxy_port = int(metrics_line.rsplit(":", 1)[1])
        listen_port = int(_.split()[2].rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", listen_port), timeout=10) as s:
            s.sendall(b"\x00" * 1000)  # junk for the channel server: it drops the connection
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        prom_port = free_port()
        config = tmp_path / "prometheus.yml"
        jobs = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            for job, port in (("health", health_port), ("proxy", proxy_port))
        )
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n" + jobs
        )
        prom = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(prom)
        deadline = time.monotonic() + 45
        ok = wait_value(
            prom_port, 'nitroguard_health_checks_total{job="health",result="ok"}', deadline
        )
        assert ok >= 1
        assert wait_value(prom_port, 'nitroguard_health_ready{job="health"}', deadline) == 1
        assert wait_value(prom_port, 'enclave_requests_total{job="health"}', deadline) >= 1
        assert wait_value(prom_port, 'up{job="proxy"}', deadline) == 1
        assert (
            wait_value(prom_port, 'nitroguard_proxy_bytes_total{direction="up"}', deadline) == 1000
        )
        accepted = "nitroguard_proxy_server_connections_accepted_total"
        assert wait_value(prom_port, accepted, deadline) == 1
        # Only bounded label values ever appear: every series' labels are from closed sets.
        for series in query(prom_port, '{__name__=~"nitroguard_.*|enclave_.*"}'):
            labels = series["metric"]
            assert isinstance(labels, dict)
            assert set(labels) <= {
                "__name__",
                "job",
                "instance",
                "kind",
                "direction",
                "result",
                "reason",
                "path",
                "le",
            }
