"""Long mutation campaign against the attestation parser and verifier.

Every real document of ../shared/vectors/attestation (expect=accept) is mutated at
random (bit flips, byte sets, inserts, deletes, truncations, duplicated runs, spliced
CBOR heads) and fed to `AttestationDocument.parse`, `Verifier.verify` (at the
document's verify_at, debug allowed, so mutations reach the deepest steps) and the
CLI's JSON renderer. Only `nitroguard.errors.Error` may escape; anything else is a
bug, printed with the input in hex, and makes the script exit 1.

Usage: python bench/fuzz_attestation.py [--count N] [--seed S] [--vectors DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

from nitroguard._commands.attest import document_json
from nitroguard.attestation import AttestationDocument, Verifier
from nitroguard.errors import Error

# Interesting CBOR heads: huge lengths, indefinite markers, tags, breaks, simple values.
HEADS = [
    b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x9b\x00\x00\x00\x01\x00\x00\x00\x00",
    b"\xbf",
    b"\x9f",
    b"\xff",
    b"\xd2",
    b"\xd8\x18",
    b"\xf7",
    b"\xf9\x7e\x00",
    b"\x7f",
    b"\x5f",
    b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x3b\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\xa0",
    b"\x80",
    b"\xf6",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        if not buf:
            buf = bytearray(rng.randbytes(rng.randint(1, 16)))
            continue
        i = rng.randrange(len(buf))
        kind = rng.randrange(7)
        if kind == 0:
            buf[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            buf[i] = rng.randrange(256)
        elif kind == 2:
            buf[i:i] = rng.randbytes(rng.randint(1, 8))
        elif kind == 3:
            del buf[i : i + rng.randint(1, 16)]
        elif kind == 4:
            del buf[i:]
        elif kind == 5:
            buf[i:i] = buf[i : i + rng.randint(1, 256)]
        else:
            buf[i : i + rng.randint(0, 2)] = rng.choice(HEADS)
    return bytes(buf)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--vectors", default=None)
    args = parser.parse_args()
    shared = os.environ.get("NITROGUARD_SHARED", str(Path.cwd().parent / "shared"))
    vectors = Path(args.vectors or Path(shared) / "vectors" / "attestation")
    entries = json.loads((vectors / "vectors.json").read_text())
    docs = [
        (
            (vectors / e["file"]).read_bytes(),
            dt.datetime.fromisoformat(e["verify_at"].replace("Z", "+00:00")),
        )
        for e in entries
        if e["expect"] == "accept"
    ]
    rng = random.Random(args.seed)
    verifier = Verifier()
    outcomes: Counter[str] = Counter()
    crashes = 0
    start = time.perf_counter()
    for n in range(1, args.count + 1):
        data, at = rng.choice(docs)
        mutated = mutate(rng, data)
        try:
            with contextlib.suppress(Error):
                document_json(AttestationDocument.parse(mutated))
            verifier.verify(mutated, at=at, allow_debug=True)
            if mutated == data:
                outcomes["accepted: mutation was a no-op"] += 1
            else:
                # Accepting a changed document is fine only when the signed parts
                # (protected header, payload, signature) are unchanged: the
                # unprotected header map and the optional tag 18 are not signed.
                before, after = AttestationDocument.parse(data), AttestationDocument.parse(mutated)
                same = (before.protected, before.payload, before.signature) == (
                    after.protected,
                    after.payload,
                    after.signature,
                )
                if same:
                    outcomes["accepted: only unsigned envelope changed"] += 1
                else:
                    crashes += 1
                    outcomes["SIGNED BYTES CHANGED BUT ACCEPTED"] += 1
                    sys.stderr.write(f"accepted a changed signed document: {mutated.hex()}\n")
        except Error as exc:
            outcomes[f"{exc.details.get('step', '?')}:{exc.reason.value}"] += 1
        except Exception:
            crashes += 1
            outcomes["CRASH"] += 1
            sys.stderr.write(f"non-nitroguard exception on input {mutated.hex()}\n")
            traceback.print_exc()
        if n % 10_000 == 0:
            rate = n / (time.perf_counter() - start)
            sys.stderr.write(f"  {n} mutations, {crashes} crashes, {rate:.0f}/s\n")
    elapsed = time.perf_counter() - start
    print(
        f"fuzz_attestation: {args.count} mutations of {len(docs)} real documents "
        f"(seed {args.seed}) in {elapsed:.1f} s: {crashes} failures "
        "(non-nitroguard exceptions, or changed signed bytes accepted)"
    )
    for outcome, count in outcomes.most_common():
        print(f"  {count:7d}  {outcome}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
