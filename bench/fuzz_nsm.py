"""Long fuzz campaign for the NSM codec and the emulator's request handling.

Mutates valid responses and requests (byte flips, truncation, splices, random
garbage) and checks that:

- `codec.decode_response` returns a response or raises `NsmError(invalid_response)`,
  and nothing else escapes;
- `EmulatedNsm.process` never raises and always answers a valid NSM message.

Usage: python bench/fuzz_nsm.py [--seconds S] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from nitroguard.errors import NsmError, Reason
from nitroguard.nsm import EmulatorPki, codec
from nitroguard.testing import ephemeral_nsm

EXPECTED = [
    "DescribePCR",
    "ExtendPCR",
    "LockPCR",
    "LockPCRs",
    "DescribeNSM",
    "Attestation",
    "GetRandom",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if op == 0 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 1 and buf:
            del buf[rng.randrange(len(buf)) :]
        elif op == 2:
            pos = rng.randrange(len(buf) + 1)
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 3 and buf:
            pos = rng.randrange(len(buf))
            buf[pos] = rng.choice(
                [
                    0x00,
                    0x17,
                    0x18,
                    0x19,
                    0x1A,
                    0x1B,
                    0x40,
                    0x58,
                    0x59,
                    0x5F,
                    0x60,
                    0x7F,
                    0x80,
                    0x9F,
                    0xA0,
                    0xA1,
                    0xBF,
                    0xF4,
                    0xF5,
                    0xF6,
                    0xF7,
                    0xF9,
                    0xFF,
                ]
            )
        else:
            buf = bytearray(rng.randbytes(rng.randint(0, 64)))
    return bytes(buf)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    nsm = ephemeral_nsm(pki=EmulatorPki.ephemeral())
    requests = [
        codec.encode_request(r)
        for r in (
            codec.DescribePcr(3),
            codec.ExtendPcr(20, b"abc"),
            codec.LockPcr(30),
            codec.LockPcrs(17),
            codec.DescribeNsm(),
            codec.GetRandom(),
            codec.Attestation(b"u", b"n" * 16, None),
        )
    ]
    responses = [nsm.process(r) for r in requests]
    responses += [codec.encode_error(code) for code in codec.ErrorCode]

    decoded = rejected = processed = 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        for _ in range(200):
            data = mutate(rng, rng.choice(responses))
            try:
                codec.decode_response(data, rng.choice(EXPECTED))
                decoded += 1
            except NsmError as exc:
                if exc.reason is not Reason.INVALID_RESPONSE:
                    print(f"unexpected reason {exc.reason} for {data.hex()}", file=sys.stderr)
                    return 1
                rejected += 1
            request = mutate(rng, rng.choice(requests))
            answer = nsm.process(request)
            parsed = codec.parse_request(request)
            name = "GetRandom" if isinstance(parsed, codec.ErrorCode) else parsed.name
            codec.decode_response(answer, name)  # must be a valid answer
            processed += 1
    total = decoded + rejected
    print(
        f"decode_response: {total} inputs ({decoded} accepted, {rejected} rejected), "
        f"0 unexpected exceptions"
    )
    print(f"EmulatedNsm.process: {processed} mutated requests, every answer valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
