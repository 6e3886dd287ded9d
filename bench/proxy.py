"""Proxy benchmark (issue 4 section 6 c; issue 16 section 5): `nitroguard proxy` versus `socat`.

Two `nitroguard proxy` processes run side by side: ``--relay copy`` (the asyncio-stream
path, the baseline for small messages) and ``--relay auto`` (zero-copy splice on
Linux; the path in use is read from its start-up line). Issue 16 targets, measured
in the same run: bulk through the splice proxy >= 0.5x direct and >= 3x socat; small
p50 no worse than the copy path; proxy CPU seconds per GiB reported.

Same path for both: client -> proxy (127.0.0.1) -> upstream (127.0.0.1), all in
separate processes. Measures, interleaved over several rounds:

* bulk throughput: the client streams N MiB, half-closes, and waits for the
  upstream's byte count (so every byte was delivered before the close);
  target: ours / socat >= 0.8;
* small-message latency: request/response of 64 bytes on one connection;
  p50 and p99 through each proxy (and direct, for reference).

Needs `socat` (Debian package; `make bench` installs it). Loopback only; every
process is killed at the end.

Usage: python bench/proxy.py [--mib N] [--rounds N] [--messages N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()


# --------------------------------------------------------------------------- upstream role


def _upstream() -> None:
    """Threaded blocking upstream: 'B' = count bytes until EOF, reply the count; 'E' = echo."""
    lsock = socket.create_server(("127.0.0.1", 0), backlog=128)
    print(lsock.getsockname()[1], flush=True)

    def serve(conn: socket.socket) -> None:
        with conn:
            mode = conn.recv(1)
            buf = bytearray(1 << 20)
            if mode == b"B":
                total = 0
                while n := conn.recv_into(buf):
                    total += n
                conn.sendall(struct.pack(">Q", total))
            elif mode == b"E":
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while data := conn.recv(65536):
                    conn.sendall(data)

    deadline = time.monotonic() + 600
    lsock.settimeout(5)
    while time.monotonic() < deadline:
        try:
            conn, _ = lsock.accept()
        except TimeoutError:
            continue
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


# --------------------------------------------------------------------------- client side


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def _bulk(port: int, mib: int) -> float:
    chunk = b"\xab" * (1 << 20)
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"B")
        for _ in range(mib):
            s.sendall(chunk)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while len(got) < 8:
            part = s.recv(8 - len(got))
            if not part:
                raise RuntimeError("closed before the byte count")
            got += part
    elapsed = time.perf_counter() - start
    total = struct.unpack(">Q", got)[0]
    if total != mib << 20:
        raise RuntimeError(f"upstream got {total} bytes, expected {mib << 20}")
    return (mib << 20) / elapsed / 1e6  # MB/s


def _latencies(port: int, n: int) -> list[float]:
    out = []
    msg = b"m" * 64
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"E")
        for _ in range(n):
            t0 = time.perf_counter()
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                part = s.recv(64 - len(got))
                if not part:
                    raise RuntimeError("closed")
                got += part
            out.append(time.perf_counter() - t0)
    return out


def _cpu(pid: int) -> float:
    """utime + stime + reaped children's time (socat forks a child per connection)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(q / 100 * len(ordered)) - 1)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    socat = shutil.which("socat")
    if socat is None:
        sys.exit("socat not found: apt-get install -y socat (or run `make bench`)")

    procs: list[subprocess.Popen[str]] = []
    try:
        up = subprocess.Popen(
            [sys.executable, str(HERE), "upstream"], stdout=subprocess.PIPE, text=True
        )
        procs.append(up)
        assert up.stdout is not None
        up_port = int(up.stdout.readline())

        ours_port = _free_port()
        ours = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nitroguard",
                "proxy",
                "--listen",
                f"tcp://127.0.0.1:{ours_port}",
                "--to",
                f"tcp://127.0.0.1:{up_port}",
                "--allow",
                f"127.0.0.1:{up_port}",
                "--relay",
                "copy",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(ours)
        zc_port = _free_port()
        zc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nitroguard",
                "proxy",
                "--listen",
                f"tcp://127.0.0.1:{zc_port}",
                "--to",
                f"tcp://127.0.0.1:{up_port}",
                "--allow",
                f"127.0.0.1:{up_port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(zc)
        assert zc.stdout is not None
        zc_line = zc.stdout.readline().strip()
        zc_path = zc_line.rsplit("relay: ", 1)[-1].rstrip(")")
        socat_port = _free_port()
        sp = subprocess.Popen(
            [
                socat,
                f"TCP-LISTEN:{socat_port},bind=127.0.0.1,fork,reuseaddr",
                f"TCP:127.0.0.1:{up_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(sp)
        for port in (ours_port, zc_port, socat_port, up_port):
            _wait_port(port)

        names = ("direct", "socat", "nitroguard", "nitroguard_zc")
        bulk: dict[str, list[float]] = {k: [] for k in names}
        cpu: dict[str, list[float]] = {k: [] for k in names[1:]}
        lat: dict[str, list[float]] = {k: [] for k in names}
        ports = {
            "direct": up_port,
            "socat": socat_port,
            "nitroguard": ours_port,
            "nitroguard_zc": zc_port,
        }
        pids = {"socat": sp.pid, "nitroguard": ours.pid, "nitroguard_zc": zc.pid}
        for _ in range(args.rounds):  # interleaved rounds share the machine's noise
            for name, port in ports.items():
                before = _cpu(pids[name]) if name in pids else 0.0
                bulk[name].append(_bulk(port, args.mib))
                if name in pids:
                    time.sleep(0.3)  # let socat reap its per-connection child
                    cpu[name].append((args.mib << 20) / 1e6 / max(_cpu(pids[name]) - before, 0.01))
                lat[name].extend(_latencies(port, args.messages // args.rounds))
        med = {k: statistics.median(v) for k, v in bulk.items()}
        cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
        result = {
            "c_bulk_mib": args.mib,
            "c_bulk_MBps": {k: round(v, 1) for k, v in med.items()},
            "c_bulk_rounds_MBps": {k: [round(x, 1) for x in v] for k, v in bulk.items()},
            "c_bulk_ratio_vs_socat": round(med["nitroguard"] / med["socat"], 3),
            "c_bulk_MB_per_proxy_cpu_s": {k: round(v, 1) for k, v in cpu_med.items()},
            "c_bulk_ratio_cpu_vs_socat": round(cpu_med["nitroguard"] / cpu_med["socat"], 3),
            "c_bulk_target": ">= 0.8",
            "c_small_p50_ms": {k: round(_pct(v, 50), 3) for k, v in lat.items()},
            "c_small_p99_ms": {k: round(_pct(v, 99), 3) for k, v in lat.items()},
            # issue 16 section 5: the zero-copy relay.
            "zc_relay_path": zc_path,
            "zc_bulk_ratio_vs_direct": round(med["nitroguard_zc"] / med["direct"], 3),
            "zc_bulk_ratio_vs_socat": round(med["nitroguard_zc"] / med["socat"], 3),
            "zc_bulk_ratio_vs_copy_path": round(med["nitroguard_zc"] / med["nitroguard"], 3),
            "zc_targets": "vs direct >= 0.5, vs socat >= 3, small p50 <= copy path's",
            "zc_small_p50_ratio_vs_copy_path": round(
                _pct(lat["nitroguard_zc"], 50) / _pct(lat["nitroguard"], 50), 3
            ),
            "proxy_cpu_s_per_GiB": {k: round((1 << 30) / 1e6 / v, 3) for k, v in cpu_med.items()},
        }
        print(json.dumps(result, indent=2))
    finally:
        for p in procs:
            p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "upstream":
        _upstream()
    else:
        main()
