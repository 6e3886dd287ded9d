"""Benchmark: `EnclaveApp`'s denial-of-service limits (issue 10), ratios in one run.

1. handshake: the enclave's CPU per anonymous handshake (sans-IO server side only:
   ClientHello -> ServerHello, then ClientFinished), and the same plus a client-key
   authentication (Ed25519 and P-384 verification) for comparison.
2. requests: server CPU to receive and decode one request of the maximum size
   (64 KiB, one record: open the record, reassemble, strict walk, cbor2), for a
   benign ``put`` of a 64 KiB value against the worst shapes we know (the nested-array
   bomb, many small strings, many map pairs, maximum nesting). Target: worst <= 5x.
   For context, the pre-issue-10 bomb (1 MiB of empty arrays, no item limit).
3. parking: a real `EnclaveApp` on loopback TCP with N anonymous connections, each
   parking a partial request of max_request - 1 bytes; reports the buffer budget's
   accounting, the evictions and the process's RSS growth (server and clients share
   the process, so RSS is an upper bound for the server).

Usage: python bench/app_limits.py [--seconds 1] [--connections 256]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from nitroguard.app import AppConfig, EnclaveApp, Mode
from nitroguard.app._protocol import DEFAULT_MAX_ITEMS, decode_request, encode_request
from nitroguard.attestation import policy
from nitroguard.channel import (
    ClientConnection,
    ClientKey,
    DocumentCheck,
    KeyAlgorithm,
    RecordReceiver,
    RecordSender,
    ServerConnection,
    ServerIdentity,
    Suite,
    TrustedKeys,
    connect,
)
from nitroguard.channel._messages import MessageBuffer, encode_message
from nitroguard.errors import Error
from nitroguard.hazmat import cbor
from nitroguard.testing import ephemeral_nsm

PCRS = {0: b"\x11" * 48, 1: b"\x22" * 48, 2: b"\x33" * 48}
MAX_REQUEST = 64 * 1024


def per_call(func: Callable[[], object], seconds: float) -> float:
    """CPU seconds per call of `func` (process time), over about `seconds`."""
    func()
    count, start = 0, time.process_time()
    while (elapsed := time.process_time() - start) < seconds:
        func()
        count += 1
    return elapsed / count


def bench_handshake(seconds: float) -> dict[str, float]:
    nsm = ephemeral_nsm(pcrs=PCRS)
    identity = ServerIdentity.generate(service="bench")
    identity.refresh(nsm)
    check = DocumentCheck(policy.PCRs(PCRS), roots=[nsm.pki.root_certificate], service="bench")
    keys = {alg: ClientKey.generate(alg) for alg in KeyAlgorithm}
    trusted = TrustedKeys({alg.name.lower(): k.public_key for alg, k in keys.items()})
    out: dict[str, float] = {}

    def server_cpu(auth: KeyAlgorithm | None) -> float:
        total, runs, deadline = 0.0, 0, time.perf_counter() + seconds
        while time.perf_counter() < deadline or runs < 3:
            client, server = ClientConnection(check), ServerConnection(identity)
            client.start()
            (hello,) = client.data_to_send()
            t0 = time.process_time()
            server.receive_frame(hello)
            (server_hello,) = server.data_to_send()
            total += time.process_time() - t0
            client.receive_frame(server_hello)
            (finished,) = client.data_to_send()
            message = b""
            if auth is not None and client.handshake is not None:
                message = keys[auth].auth_message(client.handshake.channel_binding)
            t0 = time.process_time()
            server.receive_frame(finished)
            if auth is not None and server.handshake is not None:
                trusted.verify(message, server.handshake.channel_binding)
            total += time.process_time() - t0
            runs += 1
        return total / runs

    out["anonymous handshake"] = server_cpu(None)
    out["handshake + Ed25519 client auth"] = server_cpu(KeyAlgorithm.ED25519)
    out["handshake + P-384 client auth"] = server_cpu(KeyAlgorithm.ECDSA_P384_SHA384)
    return out


def shapes(size: int) -> dict[str, bytes]:
    """Requests of exactly `size` bytes (or just under), benign and hostile."""
    head = b"\xa2bop" + b"cput" + b"dargs" + b"\xa1evalue"
    out: dict[str, bytes] = {}
    value = b"v" * (size - len(head) - 3 - 20)
    out["benign put (one 64 KiB value)"] = encode_request("put", {"key": "k", "value": value})
    n = size - len(head) - 3
    out["bomb: empty arrays"] = head + b"\x99" + struct.pack(">H", n) + b"\x80" * n
    # Just under the item limit, every item as large as possible: strings of equal size.
    items = DEFAULT_MAX_ITEMS - 8
    each = (size - len(head) - 3) // items - 3
    out[f"{items} byte strings"] = cbor.dumps(
        {"op": "put", "args": {"value": [b"s" * each] * items}}
    )
    pairs = (DEFAULT_MAX_ITEMS - 8) // 2
    kv = {f"{i:08d}" + "k" * 50: b"x" * ((size // pairs) - 70) for i in range(pairs)}
    out[f"{pairs} map pairs"] = cbor.dumps({"op": "put", "args": {"value": kv}})
    text = "\u00e9\u4e2d" * ((size - 40) // 5)  # multibyte UTF-8: decoded and checked
    out["one multibyte text value"] = cbor.dumps({"op": "put", "args": {"value": text}})
    nested: object = b"z" * (size - 200)
    for _ in range(13):
        nested = [nested]
    out["maximum nesting"] = cbor.dumps({"op": "put", "args": {"value": nested}})
    return out


def bench_requests(seconds: float) -> tuple[dict[str, tuple[int, float, str]], float]:
    secret = b"k" * 32
    results: dict[str, tuple[int, float, str]] = {}
    for name, message in shapes(MAX_REQUEST).items():
        # A fresh sender per shape: each `handle` opens with a fresh receiver (seq 0).
        sender = RecordSender(Suite.AES_256_GCM, secret)
        records = [bytes(r) for r in sender.seal_data(encode_message(message))]

        def handle(records: list[bytes] = records) -> str:
            receiver = RecordReceiver(Suite.AES_256_GCM, secret)
            buffer = MessageBuffer(MAX_REQUEST)
            for record in records:
                buffer.feed(receiver.open(bytearray(record))[1])
            received = buffer.next_message()
            assert received is not None
            try:
                decode_request(received, max_size=MAX_REQUEST)
            except Error as exc:
                return exc.reason.value
            return "decoded"

        outcome = handle()
        results[name] = (len(message), per_call(handle, seconds), outcome)
    old_bomb = b"\x9a" + struct.pack(">I", (1 << 20) - 5) + b"\x80" * ((1 << 20) - 5)
    t0 = time.process_time()
    cbor.loads(old_bomb, max_size=1 << 21, max_depth=16)
    old = time.process_time() - t0
    return results, old


async def bench_parking(connections: int, budget: int) -> dict[str, float]:
    nsm = ephemeral_nsm(pcrs=PCRS)
    logging.getLogger("nitroguard").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "random").touch()
        config = AppConfig(
            mode=Mode.DEVELOPMENT,
            listen="tcp://127.0.0.1:0",
            random_device=str(Path(tmp) / "random"),
            max_connections=connections + 8,
            buffer_budget=budget,
        )
        app = EnclaveApp("bench")
        running = await app.start(config, nsm=nsm)
        check = DocumentCheck(policy.PCRs(PCRS), roots=[nsm.pki.root_certificate], service="bench")
        gc.collect()
        before = _rss()
        channels = []
        try:
            for _ in range(connections):
                channel = await connect(running.address, check=check)
                await channel.send(struct.pack(">I", MAX_REQUEST) + b"p" * (MAX_REQUEST - 1))
                channels.append(channel)
            await asyncio.sleep(0.5)
            gc.collect()
            after = _rss()
            assert running.buffer_budget is not None
            used = running.buffer_budget.used
            evictions = running.buffer_budget.evictions
        finally:
            for channel in channels:
                await channel.abort()
            await running.close()
    return {
        "connections": connections,
        "budget": budget,
        "parked bytes accounted": used,
        "evictions": evictions,
        "RSS growth": after - before,
        "worst case without a budget": connections * MAX_REQUEST,
    }


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=256)
    args = parser.parse_args()

    print("1. enclave CPU per handshake (server side, sans-IO)")
    for name, cpu in bench_handshake(args.seconds).items():
        print(f"   {name:36s} {cpu * 1e3:7.3f} ms")

    print(f"2. server CPU per request of {MAX_REQUEST} bytes (record open + decode)")
    results, old = bench_requests(args.seconds)
    benign = results["benign put (one 64 KiB value)"][1]
    for name, (size, cpu, outcome) in results.items():
        print(f"   {name:32s} {size:6d} B {cpu * 1e6:9.1f} us  x{cpu / benign:5.2f}  ({outcome})")
    worst = max(cpu for _, cpu, _ in results.values())
    print(f"   worst / benign = {worst / benign:.2f} (target <= 5)")
    print(f"   before issue 10: 1 MiB bomb, no item limit: {old * 1e3:.0f} ms")

    print("3. parked memory, every connection parking max_request - 1 bytes")
    for budget in (16 << 20, 4 << 20):
        report = asyncio.run(bench_parking(args.connections, budget))
        print(
            "   budget {budget} B: {connections} connections, accounted {parked} B, "
            "evictions {evictions}, RSS +{rss:.1f} MiB (no budget: {worst:.1f} MiB)".format(
                budget=report["budget"],
                connections=report["connections"],
                parked=report["parked bytes accounted"],
                evictions=report["evictions"],
                rss=report["RSS growth"] / (1 << 20),
                worst=report["worst case without a budget"] / (1 << 20),
            )
        )


if __name__ == "__main__":
    main()
