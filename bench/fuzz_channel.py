"""Long fuzz campaign for the channel: parsers, handshake and record layer.

Mutates real handshake messages (made with the real emulator and verifier), random
records, client authentication messages (Ed25519 and P-384) and app requests (strict
CBOR walk with the item limit), and checks two properties for every case:

1. only `nitroguard.errors.Error` escapes (no crash, no foreign exception);
2. nothing mutated is ever accepted: a changed ServerHello never completes the
   client's handshake, a changed ClientFinished never completes the server's, a
   changed record never decrypts, a changed client authentication never verifies.

Usage: python bench/fuzz_channel.py [--seconds 60] [--seed N]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
import warnings
from collections.abc import Callable

from nitroguard.app._protocol import decode_request, encode_request
from nitroguard.attestation import Verifier, policy
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
    _wire,  # the wire decoders are the fuzz targets
)
from nitroguard.errors import Error
from nitroguard.testing import ephemeral_nsm

PCRS = {0: b"\x11" * 48, 1: b"\x22" * 48, 2: b"\x33" * 48}


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        kind = rng.random()
        if kind < 0.6 and out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif kind < 0.75 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif kind < 0.85 and out:
            cut = rng.randrange(len(out))
            del out[cut : cut + rng.randrange(1, 64)]
        else:
            pos = rng.randrange(len(out) + 1)
            out[pos:pos] = rng.randbytes(rng.randrange(1, 16))
    return bytes(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    # As in the test suite (filterwarnings = error): a warning escaping is a finding too.
    warnings.simplefilter("error")
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)

    nsm = ephemeral_nsm(pcrs=PCRS)
    check = DocumentCheck(policy.PCRs(PCRS), verifier=Verifier([nsm.pki.root_certificate]))
    identity = ServerIdentity.generate()
    identity.refresh(nsm)

    def fixed(seed_value: int) -> Callable[[int], bytes]:
        gen = random.Random(seed_value)
        return gen.randbytes

    # One reference handshake with a deterministic client.
    client = ClientConnection(check, rng=fixed(1))
    server = ServerConnection(identity)
    client.start()
    (ch,) = client.data_to_send()
    server.receive_frame(ch)
    (sh,) = server.data_to_send()
    client.receive_frame(sh)
    (cf,) = client.data_to_send()
    server.receive_frame(cf)
    sender = RecordSender(Suite.AES_256_GCM, bytes(32))
    record = sender.seal_data(b"fuzz me " * 64)[0]

    binding = bytes(range(32))
    client_keys = [ClientKey.generate(alg) for alg in KeyAlgorithm]
    trusted = TrustedKeys({f"k{i}": key.public_key for i, key in enumerate(client_keys)})
    auths = [key.auth_message(binding) for key in client_keys]
    requests = [
        encode_request("put", {"key": "k", "value": b"v" * 100}),
        encode_request("put", {"key": "k", "value": [[], {"a": 1}, [b"x", "y"]] * 10}),
    ]

    counts = dict.fromkeys(
        ("decoders", "server_hello", "client_hello+finished", "records", "client_auth", "requests"),
        0,
    )
    failures: list[str] = []
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline and len(failures) < 20:
        target = rng.randrange(6)
        try:
            if target == 0:
                blob = mutate(rng, rng.choice((ch, sh, cf, record, b"\x15\x01")))
                for decode in (
                    _wire.decode_client_hello,
                    _wire.decode_server_hello,
                    _wire.decode_client_finished,
                    _wire.decode_alert,
                    _wire.message_type,
                ):
                    with contextlib.suppress(Error):
                        decode(blob)
                counts["decoders"] += 1
            elif target == 1:
                mutated = mutate(rng, sh)
                fresh = ClientConnection(check, rng=fixed(1))
                fresh.start()
                try:
                    fresh.receive_frame(mutated)
                except Error:
                    pass
                else:
                    if mutated != sh:
                        failures.append(f"mutated ServerHello accepted: {mutated.hex()}")
                counts["server_hello"] += 1
            elif target == 2:
                srv = ServerConnection(identity)
                try:
                    srv.receive_frame(mutate(rng, ch) if rng.random() < 0.5 else ch)
                    srv.receive_frame(mutate(rng, cf))
                except Error:
                    pass
                else:
                    failures.append("a ClientFinished from another session was accepted")
                counts["client_hello+finished"] += 1
            elif target == 4:
                original = rng.choice(auths)
                mutated = mutate(rng, original)
                try:
                    trusted.verify(mutated, binding)
                except Error:
                    pass
                else:
                    if mutated != original:
                        failures.append(f"mutated client auth verified: {mutated.hex()}")
                counts["client_auth"] += 1
            elif target == 5:
                with contextlib.suppress(Error):
                    decode_request(mutate(rng, rng.choice(requests)), max_size=1 << 16)
                counts["requests"] += 1
            else:
                mutated = mutate(rng, record)
                receiver = RecordReceiver(Suite.AES_256_GCM, bytes(32))
                try:
                    receiver.open(mutated)
                except Error:
                    pass
                else:
                    if mutated != record:
                        failures.append(f"mutated record decrypted: {mutated.hex()[:80]}")
                counts["records"] += 1
        except Exception as exc:
            failures.append(f"{type(exc).__name__} escaped (target {target}): {exc!r}")
    total = sum(counts.values())
    print(f"seed {seed}: {total} cases in {args.seconds:.0f} s: {counts}")
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
