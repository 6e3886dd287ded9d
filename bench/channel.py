"""Benchmark: the attested channel against its baselines, measured in the same run.

1. design: the per-connection cost of the two designs the issue allows, with the real
   `EmulatedNsm` and `Verifier`:
   (A) a fresh document per connection (NSM attestation + client verification with
       a warm chain cache) vs (B) the attested long-lived key signing the transcript
       (Ed25519 sign + verify, document verified once then cached).
2. handshakes/s: complete sans-IO handshakes in memory (both sides' CPU, no sockets),
   with a warm verifier (chain cache) and with the channel's document cache; then
   complete handshakes over loopback TCP through `connect`/`serve`.
3. bulk throughput: 64 KiB writes over loopback TCP, the channel vs the standard
   library's `ssl` (TLS 1.3, certificate generated now), both on asyncio streams, the
   receiver in a child process so both ends run in parallel. Target ratio >= 0.8.

Usage: python bench/channel.py [--mib 256] [--runs 3] [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nitroguard.attestation import Verifier, policy
from nitroguard.channel import (
    ClientConnection,
    DocumentCheck,
    SecureChannel,
    ServerConnection,
    ServerIdentity,
    connect,
    serve,
)
from nitroguard.nsm import EmulatedNsm
from nitroguard.testing import ephemeral_nsm

PCRS = {0: b"\x11" * 48, 1: b"\x22" * 48, 2: b"\x33" * 48}
CHUNK = 64 * 1024
MIB = 1024 * 1024


def rate(func: Callable[[], object], seconds: float) -> float:
    """Calls per second of `func`, over about `seconds` (after one warm-up call)."""
    func()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        func()
        count += 1
    return count / elapsed


def pump(a: ClientConnection | ServerConnection, b: ClientConnection | ServerConnection) -> None:
    for frame in a.data_to_send():
        b.receive_frame(frame)


def handshake_in_memory(check: DocumentCheck, identity: ServerIdentity) -> None:
    client, server = ClientConnection(check), ServerConnection(identity)
    client.start()
    pump(client, server)
    pump(server, client)
    pump(client, server)


# ------------------------------------------------------------------------------ 1


def design(seconds: float) -> dict[str, float]:
    nsm = ephemeral_nsm(pcrs=PCRS)
    root = nsm.pki.root_certificate
    verifier = Verifier([root])
    expected = policy.PCRs(PCRS)
    identity = ServerIdentity.generate()
    identity.refresh(nsm)

    def fresh_document() -> None:  # (A): what every connection would cost
        eph = os.urandom(32)
        doc = nsm.get_attestation(nonce=os.urandom(32), public_key=eph, user_data=None)
        verifier.verify(doc, expected)

    def attest_only() -> None:
        nsm.get_attestation(nonce=os.urandom(32), public_key=os.urandom(32), user_data=None)

    check = DocumentCheck(expected, verifier=verifier)
    assert identity.document is not None
    doc = identity.document
    key = ServerIdentity.generate()
    pub = key._key.public_key()

    def signed_transcript() -> None:  # (B): sign, verify, cached document check
        msg = os.urandom(32)
        pub.verify(key.sign(msg), msg)
        check(doc)

    return {
        "A_fresh_doc_per_s": rate(fresh_document, seconds),
        "A_nsm_attest_only_per_s": rate(attest_only, seconds),
        "B_signed_transcript_per_s": rate(signed_transcript, seconds),
    }


# ------------------------------------------------------------------------------ 2


def handshakes(seconds: float) -> dict[str, float]:
    nsm = ephemeral_nsm(pcrs=PCRS)
    verifier = Verifier([nsm.pki.root_certificate])
    identity = ServerIdentity.generate()
    identity.refresh(nsm)
    warm_verifier = DocumentCheck(policy.PCRs(PCRS), verifier=verifier, cache_size=0)
    doc_cache = DocumentCheck(policy.PCRs(PCRS), verifier=verifier)
    out = {
        "in_memory_warm_verifier_per_s": rate(
            lambda: handshake_in_memory(warm_verifier, identity), seconds
        ),
        "in_memory_doc_cache_per_s": rate(
            lambda: handshake_in_memory(doc_cache, identity), seconds
        ),
    }
    out["tcp_loopback_doc_cache_per_s"] = asyncio.run(_tcp_handshakes(nsm, doc_cache, seconds))
    return out


async def _tcp_handshakes(nsm: EmulatedNsm, check: DocumentCheck, seconds: float) -> float:
    async def handler(channel: SecureChannel) -> None:
        await channel.recv()

    async with await serve(handler, "tcp://127.0.0.1:0", nsm) as server:
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            channel = await connect(server.address, check=check)
            await channel.aclose()
            count += 1
        return count / elapsed


# ------------------------------------------------------------------------------ 3

CHILD = r"""
import asyncio, json, ssl, sys
from pathlib import Path
mode, workdir, total = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])

async def tls():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(workdir / "cert.pem", workdir / "key.pem")
    done = asyncio.Event()
    async def handle(reader, writer):
        got = 0
        while got < total:
            data = await reader.read(1 << 20)
            if not data:
                break
            got += len(data)
        writer.write(b"done")
        await writer.drain()
        writer.close()
        done.set()
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    report()
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await done.wait()
    server.close()
    report()

def report():
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"cpu": r.ru_utime + r.ru_stime}), flush=True)

async def channel():
    from nitroguard.channel import serve
    from nitroguard.testing import ephemeral_nsm
    nsm = ephemeral_nsm(pcrs={0: b"\x11" * 48, 1: b"\x22" * 48, 2: b"\x33" * 48})
    (workdir / "root.der").write_bytes(nsm.pki.root_der)
    done = asyncio.Event()
    async def handle(ch):
        got = 0
        while got < total:
            data = await ch.recv()
            if data is None:
                break
            got += len(data)
        await ch.send(b"done")
        done.set()
    server = await serve(handle, "tcp://127.0.0.1:0", nsm)
    report()
    print(json.dumps({"port": server.address.port}), flush=True)
    await done.wait()
    await server.close()
    report()

asyncio.run(tls() if mode == "tls" else channel())
"""


def make_cert(workdir: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (workdir / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (workdir / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


async def _send_tls(port: int, workdir: Path, total: int) -> float:
    ctx = ssl.create_default_context(cafile=str(workdir / "cert.pem"))
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
    )
    payload = os.urandom(CHUNK)
    start = time.perf_counter()
    for _ in range(total // CHUNK):
        writer.write(payload)
        await writer.drain()
    assert await reader.readexactly(4) == b"done"
    elapsed = time.perf_counter() - start
    writer.close()
    await writer.wait_closed()
    return elapsed


async def _send_channel(port: int, workdir: Path, total: int) -> float:
    root = x509.load_der_x509_certificate((workdir / "root.der").read_bytes())
    check = DocumentCheck(policy.PCRs(PCRS), roots=[root])
    channel = await connect(f"tcp://127.0.0.1:{port}", check=check)
    payload = os.urandom(CHUNK)
    start = time.perf_counter()
    for _ in range(total // CHUNK):
        await channel.send(payload)
    assert await channel.recv() == b"done"
    elapsed = time.perf_counter() - start
    await channel.aclose()
    return elapsed


@dataclasses.dataclass
class Transfer:
    """One bulk transfer: throughput and each side's CPU seconds per GiB."""

    mib_s: float
    sender_cpu_s_per_gib: float
    receiver_cpu_s_per_gib: float


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bulk(mode: str, total: int, workdir: Path) -> Transfer:
    """One transfer of `total` bytes in 64 KiB writes."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(workdir), str(total)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        child_cpu_start = json.loads(child.stdout.readline())["cpu"]
        port = json.loads(child.stdout.readline())["port"]
        send = _send_tls if mode == "tls" else _send_channel
        cpu_start = _cpu()
        elapsed = asyncio.run(send(port, workdir, total))
        cpu = _cpu() - cpu_start
        child_cpu = json.loads(child.stdout.readline())["cpu"] - child_cpu_start
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    gib = total / (1024 * MIB)
    return Transfer(total / MIB / elapsed, cpu / gib, child_cpu / gib)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="bytes per bulk transfer (MiB)")
    parser.add_argument("--runs", type=int, default=3, help="bulk transfers per contender")
    parser.add_argument("--seconds", type=float, default=2.0, help="per rate measurement")
    args = parser.parse_args()

    print("== design: per-connection proof of identity (calls/s, higher is better)")
    d = design(args.seconds)
    for name, value in d.items():
        print(f"  {name:32s} {value:10.1f}")
    print(f"  ratio B/A {d['B_signed_transcript_per_s'] / d['A_fresh_doc_per_s']:.1f}x")

    print("== handshakes/s (complete handshakes, both sides on this machine)")
    h = handshakes(args.seconds)
    for name, value in h.items():
        print(f"  {name:32s} {value:10.1f}")

    print(f"== bulk: {args.mib} MiB in 64 KiB writes over loopback TCP, best of {args.runs}")
    total = args.mib * MIB
    results: dict[str, list[Transfer]] = {"tls": [], "channel": []}
    with tempfile.TemporaryDirectory(prefix="nitroguard-bench-") as tmp:
        workdir = Path(tmp)
        make_cert(workdir)
        for _ in range(args.runs):
            for mode in ("tls", "channel"):  # interleaved: both see the same machine load
                results[mode].append(bulk(mode, total, workdir))
    for mode, runs in results.items():
        speeds = [r.mib_s for r in runs]
        send_cpu = statistics.median(r.sender_cpu_s_per_gib for r in runs)
        recv_cpu = statistics.median(r.receiver_cpu_s_per_gib for r in runs)
        print(
            f"  {mode:8s} best {max(speeds):7.1f} MiB/s  median {statistics.median(speeds):7.1f}"
            f"  CPU s/GiB sender {send_cpu:5.2f} receiver {recv_cpu:5.2f}"
            f"  runs {', '.join(f'{v:.0f}' for v in speeds)}"
        )
    best = max(r.mib_s for r in results["channel"]) / max(r.mib_s for r in results["tls"])
    median = statistics.median(r.mib_s for r in results["channel"]) / statistics.median(
        r.mib_s for r in results["tls"]
    )

    def busiest(mode: str) -> float:
        # Throughput is bounded by the busier end (each end is one Python process).
        return statistics.median(
            max(r.sender_cpu_s_per_gib, r.receiver_cpu_s_per_gib) for r in results[mode]
        )

    cpu_ratio = busiest("tls") / busiest("channel")
    # Each channel run directly follows a TLS run: the pair saw about the same load.
    pairs = [c.mib_s / t.mib_s for t, c in zip(results["tls"], results["channel"], strict=True)]
    print(f"  ratio channel/TLS 1.3 throughput: best {best:.2f}, median {median:.2f}")
    print(
        f"  ratio channel/TLS 1.3 per interleaved pair: median {statistics.median(pairs):.2f}"
        f"  ({', '.join(f'{p:.2f}' for p in pairs)})"
    )
    print(f"  ratio channel/TLS 1.3 by CPU of the busier end: {cpu_ratio:.2f}")
    print("  (target >= 0.8)")
    print(
        json.dumps(
            {
                "design": d,
                "handshakes": h,
                "bulk": {m: [dataclasses.asdict(r) for r in rs] for m, rs in results.items()},
                "ratio_best": best,
                "ratio_median": median,
                "ratio_cpu": cpu_ratio,
                "ratio_pairs": pairs,
            }
        )
    )


if __name__ == "__main__":
    main()
