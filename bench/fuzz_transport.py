"""Long fuzz campaign for the frame decoder (the CI test runs a bounded hypothesis version).

Invariants, for random valid streams cut at random points and for random garbage:
* valid streams decode to exactly the frames encoded, whatever the chunking;
* only nitroguard errors escape (frame_too_large, truncated, buffer_overflow);
* the buffer never holds more than one maximal frame + header + one chunk.

Usage: python bench/fuzz_transport.py [--seconds S] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import time

from nitroguard.errors import Error, Reason
from nitroguard.framing import NEED_DATA, ConnectionClosed, Frame, FrameDecoder, encode_frame

ALLOWED = {Reason.FRAME_TOO_LARGE, Reason.TRUNCATED, Reason.BUFFER_OVERFLOW}


def roundtrip(rng: random.Random) -> None:
    limit = rng.choice([1, 7, 64, 4096, 1 << 16])
    payloads = [rng.randbytes(rng.randint(0, limit)) for _ in range(rng.randint(0, 12))]
    data = b"".join(encode_frame(p, max_frame_size=limit) for p in payloads)
    dec = FrameDecoder(limit)
    got: list[bytes] = []
    pos = 0
    while pos < len(data):
        # An adapter reads at most 64 KiB at a time (the decoder's read slack).
        step = rng.randint(1, rng.choice([1, 4, 64, 65536]))
        dec.receive_data(data[pos : pos + step])
        pos += step
        while (ev := dec.next_event()) is not NEED_DATA:
            assert isinstance(ev, Frame)
            got.append(ev.payload)
    dec.receive_data(b"")
    assert isinstance(dec.next_event(), ConnectionClosed)
    assert got == payloads


def garbage(rng: random.Random) -> None:
    limit = rng.choice([1, 16, 1024, 1 << 20])
    dec = FrameDecoder(limit)
    try:
        for _ in range(rng.randint(1, 30)):
            chunk = rng.randbytes(rng.randint(1, 2048))
            if rng.random() < 0.3:  # plausible small headers
                chunk = rng.randint(0, limit + 2).to_bytes(4, "big") + chunk
            dec.receive_data(chunk)
            while (ev := dec.next_event()) is not NEED_DATA:
                assert isinstance(ev, Frame)
                assert len(ev.payload) <= limit
            assert dec.buffered <= limit + 4 + 2048 + 4
        dec.receive_data(b"")
        dec.next_event()
    except Error as exc:
        if exc.reason not in ALLOWED:
            raise


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    end = time.monotonic() + args.seconds
    counts = {"roundtrip": 0, "garbage": 0}
    while time.monotonic() < end:
        roundtrip(rng)
        garbage(rng)
        counts["roundtrip"] += 1
        counts["garbage"] += 1
    print(
        f"fuzz_transport: seed {seed}: {counts['roundtrip']} round-trip cases, "
        f"{counts['garbage']} garbage cases, 0 failures in {args.seconds:g} s"
    )


if __name__ == "__main__":
    main()
