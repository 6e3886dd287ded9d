"""Transport benchmarks (issue 4 section 6 a, b). Ratios against baselines measured in this run.

(a) Small-frame request/response rate of the hardened server (`nitroguard.transport.serve`,
    all limits on) versus a minimal unprotected asyncio echo server speaking the same
    framing (readexactly + write). Each server runs alone in its own process; the same
    client process drives both, rounds interleaved. Two ratios: requests per wall second
    (noisy on a shared 2-core box, the client competes for CPU) and requests per second
    of *server* CPU time (robust to the noise). Target: ratio >= 0.85.
(b) 10,000 concurrent idle connections held by the hardened server (RLIMIT_NOFILE raised;
    the clients live in a separate process because the hard limit is 20,000). Reports the
    server's RSS growth (target <= 150 MB) and a legitimate client's p99 latency meanwhile
    (target <= 50 ms).

Usage: python bench/transport.py [--seconds S] [--rounds N] [--idle N]
Traffic goes to 127.0.0.1 only; every process is bounded in time and killed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
FRAME = 32  # payload bytes


# --------------------------------------------------------------------------- server roles


async def _baseline_server() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(4)
                payload = await reader.readexactly(struct.unpack(">I", header)[0])
                writer.write(header + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(600)


async def _ours_server(max_connections: int, first_byte: float) -> None:
    from nitroguard.transport import Connection, ServerLimits, serve

    async def echo(conn: Connection) -> None:
        while (payload := await conn.recv_frame()) is not None:
            await conn.send_frame(payload)

    limits = ServerLimits(max_connections=max_connections, first_byte_timeout=first_byte)
    server = await serve(echo, "tcp://127.0.0.1:0", limits)
    print(server.address.port, flush=True)
    await asyncio.sleep(600)


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _spawn(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, int(line)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# --------------------------------------------------------------------------- (a) rate


async def _client_rate(port: int, conns: int, seconds: float) -> int:
    request = struct.pack(">I", FRAME) + b"q" * FRAME
    stop = time.monotonic() + seconds
    count = 0

    async def one() -> None:
        nonlocal count
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while time.monotonic() < stop:
            writer.write(request)
            await reader.readexactly(len(request))
            count += 1
        writer.close()

    await asyncio.gather(*(one() for _ in range(conns)))
    return count


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure_rate(role: str, seconds: float, conns: int) -> tuple[float, float]:
    """(requests per wall second, requests per server CPU second)."""
    proc, port = _spawn(role)
    try:
        time.sleep(0.2)
        cpu0 = _cpu_seconds(proc.pid)
        # The client runs in its own process too, so neither side steals the other's loop.
        out = subprocess.run(
            [sys.executable, str(HERE), "client-rate", str(port), str(conns), str(seconds)],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
        cpu = _cpu_seconds(proc.pid) - cpu0
        count = int(out.stdout)
        return count / seconds, count / max(cpu, 0.01)
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- (b) idle


def _hold_idle(port: int, n: int, seconds: float) -> None:
    _raise_nofile()
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        socks.append(s)
    print(len(socks), flush=True)
    time.sleep(seconds)
    for s in socks:
        s.close()


def _legit_latencies(port: int, n: int) -> list[float]:
    out = []
    request = struct.pack(">I", FRAME) + b"L" * FRAME
    for _ in range(n):
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(request)
            got = b""
            while len(got) < len(request):
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError("closed")
                got += chunk
        out.append(time.perf_counter() - start)
        time.sleep(0.01)
    return out


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(q / 100 * len(ordered)) - 1)]


def bench_idle(n: int) -> dict[str, float]:
    proc, port = _spawn("server-ours", str(n + 1000), "600")
    holder = None
    try:
        time.sleep(0.5)
        base_lat = _legit_latencies(port, 100)
        rss0 = _rss_kib(proc.pid)
        holder = subprocess.Popen(
            [sys.executable, str(HERE), "hold-idle", str(port), str(n), "120"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None
        held = int(holder.stdout.readline())
        time.sleep(1.0)
        lat = _legit_latencies(port, 300)
        rss1 = _rss_kib(proc.pid)
        return {
            "idle_connections": held,
            "rss_before_mb": rss0 / 1024,
            "rss_after_mb": rss1 / 1024,
            "rss_growth_mb": (rss1 - rss0) / 1024,
            "legit_p50_ms_idle": _p(lat, 50) * 1000,
            "legit_p99_ms_idle": _p(lat, 99) * 1000,
            "legit_p99_ms_baseline_no_idle": _p(base_lat, 99) * 1000,
        }
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--idle", type=int, default=10_000)
    args = parser.parse_args()

    base_rates, our_rates, base_cpu, our_cpu = [], [], [], []
    for _ in range(args.rounds):  # interleaved, to share the machine's noise fairly
        rate, per_cpu = _measure_rate("server-baseline", args.seconds, args.conns)
        base_rates.append(rate)
        base_cpu.append(per_cpu)
        rate, per_cpu = _measure_rate("server-ours", args.seconds, args.conns)
        our_rates.append(rate)
        our_cpu.append(per_cpu)
    base, ours = statistics.median(base_rates), statistics.median(our_rates)
    bcpu, ocpu = statistics.median(base_cpu), statistics.median(our_cpu)
    result: dict[str, object] = {
        "a_baseline_req_per_s": round(base),
        "a_ours_req_per_s": round(ours),
        "a_ratio_wall": round(ours / base, 3),
        "a_baseline_req_per_server_cpu_s": round(bcpu),
        "a_ours_req_per_server_cpu_s": round(ocpu),
        "a_ratio_cpu": round(ocpu / bcpu, 3),
        "a_target": ">= 0.85",
        "a_rounds_wall": {
            "baseline": [round(r) for r in base_rates],
            "ours": [round(r) for r in our_rates],
        },
    }
    if args.idle > 0:  # --idle 0 skips (b)
        idle = bench_idle(args.idle)
        result.update({f"b_{k}": round(v, 2) for k, v in idle.items()})
        result["b_targets"] = "rss_growth <= 150 MB, legit p99 <= 50 ms"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "server-baseline":
        asyncio.run(_baseline_server())
    elif role == "server-ours":
        _raise_nofile()
        maxc = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
        first = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
        asyncio.run(_ours_server(maxc, first))
    elif role == "client-rate":
        print(asyncio.run(_client_rate(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))))
    elif role == "hold-idle":
        _hold_idle(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    else:
        main()
