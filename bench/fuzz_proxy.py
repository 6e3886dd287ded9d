"""Fuzz the proxy relay: random chunking, stalls, half-closes and resets (issue 16 section 5).

Runs random scenarios (`nitroguard.testing`) through a fresh proxy each, on both
relay paths (splice and copy), checking after each that no byte was lost, duplicated
or altered, and that no file descriptor outlived the proxy. Loopback only; bounded
by --seconds (default 120) and --count.

Usage: python bench/fuzz_proxy.py [--seconds S] [--count N] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

from nitroguard.testing import open_fds, random_scenario, run_scenario
from nitroguard.transport._splice import splice_available


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    paths = ["splice", "copy"] if splice_available() else ["copy"]
    counts = dict.fromkeys(paths, 0)
    resets = half_open = 0
    moved = 0
    failures: list[str] = []
    deadline = time.monotonic() + args.seconds
    n = 0
    while n < args.count and time.monotonic() < deadline:
        scenario = random_scenario(rng)
        relay = paths[n % len(paths)]
        before = open_fds()
        try:
            outcome = asyncio.run(asyncio.wait_for(run_scenario(scenario, relay=relay), 30))
            outcome.check(scenario)
            if open_fds() != before:
                raise AssertionError(f"descriptor leak: {before} -> {open_fds()}")
        except Exception as exc:
            failures.append(f"#{n} {relay}: {type(exc).__name__}: {exc}")
        else:
            moved += len(outcome.upstream_got) + len(outcome.client_got)
        counts[relay] += 1
        resets += (
            scenario.client_reset_after is not None or scenario.upstream_reset_after is not None
        )
        half_open += not scenario.client_half_close
        n += 1
    print(
        json.dumps(
            {
                "scenarios": n,
                "by_path": counts,
                "with_resets": resets,
                "upstream_eof_first": half_open,
                "bytes_checked": moved,
                "failures": len(failures),
                "first_failures": failures[:5],
            },
            indent=2,
        )
    )
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
