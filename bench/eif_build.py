"""Benchmark: `nitroguard eif build --docker-export` of a 1 GiB image against
`nitroguard eif pcr` on the resulting EIF.

The docker export tar (about 1 GiB: sixteen 60 MiB files plus 4,096 small files in
nested directories, so both the streaming path and the per-entry path are exercised)
is generated in a temporary directory, streamed from a repeated random block, and
deleted afterwards with everything else. Both commands run as child processes,
started by a small wrapper that reports the child's wall time and peak RSS
(``resource.getrusage(RUSAGE_CHILDREN)`` inside the wrapper sees only that child).

Targets (issue 13): build time <= 2x `eif pcr` time, build peak RSS <= 64 MB.

Usage: python bench/eif_build.py [--size-mib 1024] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

WRAPPER = r"""
import json, resource, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.perf_counter() - t
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "rss_kib": usage.ru_maxrss, "rc": proc.returncode,
                  "cpu": usage.ru_utime + usage.ru_stime,
                  "stderr": proc.stderr.decode(errors="replace")[-500:]}))
"""

MIB = 1024 * 1024


class _Repeat:
    """A file-like object yielding `size` bytes of a repeated random block."""

    def __init__(self, block: bytes, size: int) -> None:
        self.block, self.left = block, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        out = (
            (self.block * (n // len(self.block) + 1))[:n] if n > len(self.block) else self.block[:n]
        )
        self.left -= n
        return out


def _measure(cmd: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def _export(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    big = 16
    small = 4096
    big_size = (size - small * 4096) // big
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:

        def add(name: str, kind: bytes, length: int = 0) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = (
                kind,
                0o755 if kind == tarfile.DIRTYPE else 0o644,
                1700000000,
            )
            info.size = length
            tf.addfile(info, _Repeat(block, length) if length else None)  # type: ignore[arg-type]

        add(".dockerenv", tarfile.REGTYPE)
        add("data", tarfile.DIRTYPE)
        for i in range(big):
            add(f"data/blob{i:02d}", tarfile.REGTYPE, big_size)
        for d in range(64):
            add(f"lib{d:02d}", tarfile.DIRTYPE)
            for f in range(small // 64):
                add(f"lib{d:02d}/f{f:03d}.so", tarfile.REGTYPE, 4096)
        for name in ("dev", "etc", "proc", "sys"):
            add(name, tarfile.DIRTYPE)
        add("etc/hosts", tarfile.REGTYPE)
        add("etc/resolv.conf", tarfile.REGTYPE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    nitroguard = [sys.executable, "-m", "nitroguard", "eif"]
    with tempfile.TemporaryDirectory(prefix="nitroguard-bench-build-") as tmp:
        d = Path(tmp)
        blobs = d / "blobs"
        blobs.mkdir()
        (blobs / "init").write_bytes(os.urandom(740_000))
        (blobs / "nsm.ko").write_bytes(os.urandom(20_000))
        (blobs / "bzImage").write_bytes(os.urandom(8 * MIB))
        (blobs / "cmdline").write_text("reboot=k panic=30 pci=off nomodules console=ttyS0\n")
        export = d / "export.tar"
        _export(export, args.size_mib * MIB)
        config = d / "inspect.json"
        config.write_text(json.dumps({"Architecture": "amd64", "Config": {"Cmd": ["/a"]}}))
        out = d / "out.eif"
        build = [*nitroguard, "build", "--docker-export", str(export), "--image-config",
                 str(config), "--blobs", str(blobs), "-o", str(out)]  # fmt: skip
        pcr = [*nitroguard, "pcr", str(out)]
        builds, pcrs = [], []
        for _ in range(args.runs):
            builds.append(_measure(build))
            pcrs.append(_measure(pcr))
        for r in builds + pcrs:
            if r["rc"] != 0:
                print(f"child failed: {r}", file=sys.stderr)
                return 2
        size = out.stat().st_size
    best_build = min(r["wall"] for r in builds)
    best_pcr = min(r["wall"] for r in pcrs)
    rss = max(r["rss_kib"] for r in builds) / 1024
    ratio = best_build / best_pcr
    cpu_ratio = min(r["cpu"] for r in builds) / min(r["cpu"] for r in pcrs)
    print(f"image: {args.size_mib} MiB docker export -> {size / MIB:.0f} MiB EIF")
    print(f"eif pcr:             best {best_pcr:.2f} s")
    print(f"eif build:           best {best_build:.2f} s")
    print(f"wall-time ratio:     {ratio:.2f}  (target <= 2.0)")
    print(f"CPU-time ratio:      {cpu_ratio:.2f}")
    print(f"peak RSS (build):    {rss:.1f} MB  (target <= 64)")
    print(f"peak RSS (pcr):      {max(r['rss_kib'] for r in pcrs) / 1024:.1f} MB")
    return 0 if ratio <= 2.0 and rss <= 64 else 1


if __name__ == "__main__":
    sys.exit(main())
