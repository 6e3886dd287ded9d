"""Long fuzz campaign for the image readers behind `nitroguard eif build --docker-export/--oci`.

Each input is a tar stream built from random members (path escapes such as ``../up``
and ``a/../../x``, absolute and ``./`` names, whiteouts and opaque markers, symlinks
and hard links to random names, so loops included, device nodes, setuid modes, huge
uids and mtimes) then, seven times in ten, mutated (byte flips, cuts, insertions,
huge declared sizes, odd type flags). Every input goes through the docker-export
pipeline (tar reader -> linuxkit filters -> cpio writer) and, as 1-3 layers, through
the dockerd-style flattening + export walk. Only `nitroguard.errors.Error` may
escape; peak RSS is reported (memory must stay bounded).

Usage: python bench/fuzz_oci.py [--count 100000] [--seed 1] [--seconds 170]
"""

from __future__ import annotations

import argparse
import collections
import random
import resource
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "eif"))

from oci_fuzz import check_export, check_flatten, sample


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=170.0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    export: collections.Counter[str] = collections.Counter()
    flatten: collections.Counter[str] = collections.Counter()
    start = time.perf_counter()
    slowest = 0.0
    done = 0
    for done in range(1, args.count + 1):
        t = time.perf_counter()
        data = sample(rng)
        try:
            export[check_export(data)] += 1
            # flattening spools to a temp dir: every second input, to fit the time budget
            if done % 2 == 0:
                flatten[
                    check_flatten([data] + [sample(rng) for _ in range(rng.randrange(0, 3))])
                ] += 1
        except Exception:
            traceback.print_exc()
            print(f"FAIL: a non-nitroguard exception escaped (input #{done})")
            return 1
        slowest = max(slowest, time.perf_counter() - t)
        if time.perf_counter() - start > args.seconds:
            break
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"inputs: {done} in {time.perf_counter() - start:.1f} s; slowest {slowest * 1000:.1f} ms")
    print(f"export pipeline: {dict(export.most_common())}")
    print(f"flatten pipeline: {sum(flatten.values())} inputs, {dict(flatten.most_common())}")
    print(f"peak RSS: {rss:.1f} MiB; non-nitroguard exceptions: 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
