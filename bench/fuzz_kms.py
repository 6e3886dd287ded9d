"""Mutation campaign against the KMS CiphertextForRecipient reader and opener.

Seeds: the real KMS replies in ../shared/vectors/kms (when present) and envelopes our
writer makes in KMS's shape (one chunk, several chunks, primitive content). Each input
is mutated at random (bit flips, byte sets, inserts, deletes, truncations, duplicated
runs, spliced BER heads such as indefinite lengths, long-form lengths and EOCs) and fed
to `parse_envelope` and, for a quarter of them, to `open_envelope` with a real key.
Only `nitroguard.errors.Error` may escape; anything else is printed with the input in
hex and makes the script exit 1. Reasons are counted.

Usage: python bench/fuzz_kms.py [--count N] [--seed S] [--vectors DIR]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from nitroguard.errors import Error
from nitroguard.hazmat.cms import parse_envelope
from nitroguard.kms import open_envelope, seal_envelope

HEADS = [
    b"\x30\x80",
    b"\x00\x00",
    b"\xa0\x80",
    b"\x04\x80",
    b"\x30\x82\xff\xff",
    b"\x30\x84\xff\xff\xff\xff",
    b"\x31\x82\x01\x6b",
    b"\x81\x00",
    b"\x1f\x81\x00",
    b"\x02\x01\x00",
    b"\x06\x00",
    b"\x04\x00",
]


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1) if buf else 0
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 2:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and buf:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 4:
            del buf[pos:]
        elif op == 5 and buf:
            run = buf[pos : pos + rng.randint(1, 64)]
            buf[pos:pos] = run
        else:
            buf[pos:pos] = rng.choice(HEADS)
    return bytes(buf)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--vectors", default=str(Path(__file__).parent / "../../shared/vectors/kms")
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    key = rsa.generate_private_key(65537, 2048)
    seeds = [
        seal_envelope(key.public_key(), b"k" * 32),
        seal_envelope(key.public_key(), b"s" * 2500),
        seal_envelope(key.public_key(), b"p" * 40, primitive_content=True),
    ]
    vectors = Path(args.vectors)
    if vectors.is_dir():
        seeds += [p.read_bytes() for p in sorted(vectors.glob("*.ber"))]
    reasons: Counter[str] = Counter()
    accepted = opened = 0
    started = time.monotonic()
    for i in range(args.count):
        data = mutate(rng.choice(seeds), rng)
        try:
            env = parse_envelope(data)
            accepted += 1
            if i % 4 == 0:
                open_envelope(key, env)
                opened += 1
        except Error as exc:
            reasons[exc.reason.value] += 1
        except Exception:
            traceback.print_exc()
            sys.stderr.write(f"input: {data.hex()}\n")
            return 1
        if (i + 1) % 25_000 == 0:
            sys.stderr.write(f"{i + 1} inputs, {time.monotonic() - started:.0f} s\n")
    elapsed = time.monotonic() - started
    print(
        f"fuzz_kms: {args.count} mutations in {elapsed:.1f} s, {len(seeds)} seeds; "
        f"parsed {accepted}, opened {opened}; only nitroguard errors escaped"
    )
    for reason, n in reasons.most_common():
        print(f"  {reason}: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
