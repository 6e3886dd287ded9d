"""Long fuzz campaign for the environment audit (the CI suite runs a bounded version).

Three phases, a third of the time each:

1. The kernel-fact parsers (`parse_cmdline`, `kstrtobool`, `parse_kernel_version`)
   on strings built from interesting tokens (quotes, ``--``, ``=``, odd whitespace,
   the parameter names the checks look for). For quote-free inputs the parse must
   equal plain whitespace splitting, as in the kernel.
2. The whole audit over a fake well-configured enclave tree whose sysfs/procfs files
   are overwritten with mutated or random bytes each round (the tree also gets FIFOs
   and directories where files belong). `run` must never raise, must return one
   finding per check, and every warn/fail must carry a remediation.
3. The parent-side parsers (`parse_cpu_list`, `parse_describe_enclaves`,
   `parse_allocator_config`) on token strings and mutated real samples: only
   `ConfigError` with the parser's own reason may escape, and parsed CPU ids stay
   within 0..8191.

Prints the counts and the slowest audit round.

Usage: python bench/fuzz_audit.py [--seconds 120] [--seed 1]
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "audit"))

from audit_trees import Tree, build_well_configured

from nitroguard._kernel import kstrtobool, parse_cmdline, parse_kernel_version
from nitroguard.audit import (
    DEFAULT,
    MAX_CPU_ID,
    parse_allocator_config,
    parse_cpu_list,
    parse_describe_enclaves,
    run,
)
from nitroguard.errors import ConfigError, Reason
from nitroguard.findings import Status

PARENT_TOKENS = [
    *"0123456789-,:/N \t\n",
    "8191",
    "8192",
    "99999",
    "[",
    "]",
    "{",
    "}",
    '"',
    ":",
    "EnclaveCID",
    "EnclaveID",
    "Flags",
    "DEBUG_MODE",
    "State",
    "RUNNING",
    "CPUIDs",
    "true",
    "null",
    "NaN",
    "1e999",
    "memory_mib",
    "cpu_count",
    "cpu_pool",
    "---",
    "#",
    "'",
    "- ",
    "  ",
    "\r\n",
    "\\u0000",
    "\xff",
]
DESCRIBE_SAMPLE = (
    '[{"EnclaveName": "signer", "EnclaveID": "i-0f1e2d3c4b5a69788-enc18c2b3a4d5e6f70", '
    '"ProcessID": 4242, "EnclaveCID": 16, "NumberOfCPUs": 2, "CPUIDs": [1, 3], '
    '"MemoryMiB": 1024, "State": "RUNNING", "Flags": "DEBUG_MODE"}]'
)
ALLOCATOR_SAMPLE = (
    "---\n# Enclave configuration file.\nmemory_mib: 512\ncpu_count: 2\n# cpu_pool: 2,3\n"
)

TOKENS = [
    "random.trust_cpu",
    "random.trust-cpu",
    "random.trust_bootloader",
    "clocksource",
    "no-kvmclock",
    "mitigations",
    "kvm-clock",
    "tsc",
    "off",
    "on",
    "0",
    "1",
    "=",
    '"',
    "--",
    " ",
    "\t",
    "\n",
    "\r",
    "\x00",
    "\u00a0",
    "\u2028",
    "é",
    "6.6.79",
    "4.14.256",
    ".",
    "-",
]

FILES = [
    "/sys/devices/virtual/misc/hw_random/rng_current",
    "/sys/devices/virtual/misc/hw_random/rng_available",
    "/sys/devices/virtual/misc/hw_random/rng_quality",
    "/proc/cmdline",
    "/proc/sys/kernel/osrelease",
    "/sys/devices/system/clocksource/clocksource0/current_clocksource",
    "/sys/devices/system/clocksource/clocksource0/available_clocksource",
    "/sys/devices/system/cpu/vulnerabilities/spectre_v2",
    "/proc/swaps",
    "/proc/meminfo",
    "/proc/sys/vm/panic_on_oom",
    "/proc/sys/vm/overcommit_memory",
    "/sys/class/misc/nsm/dev",
    "/sys/bus/virtio/devices/virtio1/device",
    "/sys/class/ptp/ptp0/clock_name",
]


def token_string(rng: random.Random) -> str:
    return "".join(rng.choice(TOKENS) for _ in range(rng.randrange(0, 40)))


def fuzz_parsers(rng: random.Random, deadline: float) -> int:
    count = 0
    while time.monotonic() < deadline:
        text = token_string(rng)
        cmd = parse_cmdline(text)
        for _, value in cmd.params:
            if kstrtobool(value) not in (True, False, None):
                raise AssertionError(f"kstrtobool({value!r})")
        if '"' not in text:
            words = [n if v is None else f"{n}={v}" for n, v in cmd.params]
            if "--" in text.split():
                words += ["--", *cmd.init_args]
            if words != text.split():
                raise AssertionError(f"split mismatch for {text!r}")
        parse_kernel_version(text)
        count += 1
    return count


def mutate(rng: random.Random, original: bytes) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return rng.randbytes(rng.randrange(0, 300))
    if choice == 1:
        return token_string(rng).encode()
    data = bytearray(original)
    for _ in range(rng.randrange(1, 6)):
        if data and rng.random() < 0.5:
            data[rng.randrange(len(data))] = rng.randrange(256)
        else:
            data.insert(rng.randrange(len(data) + 1), rng.choice(b' \t\n\r\x00=-"0123456789'))
    if choice == 2:
        data += data * rng.randrange(0, 3)
    return bytes(data)


def fuzz_audit(rng: random.Random, deadline: float) -> tuple[int, float, collections.Counter[str]]:
    count = 0
    slowest = 0.0
    statuses: collections.Counter[str] = collections.Counter()
    work = Path(tempfile.mkdtemp(prefix="nitroguard-fuzz-audit-"))
    try:
        pristine = work / "pristine"
        pristine.mkdir()
        build_well_configured(Tree(pristine))
        originals = {p: (pristine / p.lstrip("/")).read_bytes() for p in FILES}
        root = work / "root"
        while time.monotonic() < deadline:
            if root.exists():
                shutil.rmtree(root)
            root.mkdir()
            tree = build_well_configured(Tree(root))  # device nodes cannot be copied
            for path in rng.sample(FILES, rng.randrange(1, len(FILES) + 1)):
                target = tree.path(path)
                kind = rng.randrange(20)
                target.unlink()
                if kind == 0:
                    continue  # missing
                if kind == 1:
                    os.mkfifo(target)  # must not block the probe
                elif kind == 2:
                    target.mkdir()
                else:
                    target.write_bytes(mutate(rng, originals[path]))
            started = time.monotonic()
            findings = run(tree.probe())
            slowest = max(slowest, time.monotonic() - started)
            if [f.id for f in findings] != [c.id for c in DEFAULT]:
                raise AssertionError("wrong finding ids")
            for finding in findings:
                statuses[f"{finding.id}:{finding.status.value}"] += 1
                if finding.status in (Status.WARN, Status.FAIL) and not finding.remediation:
                    raise AssertionError(f"no remediation: {finding}")
            count += 1
    finally:
        shutil.rmtree(work)
    return count, slowest, statuses


def fuzz_parent_parsers(rng: random.Random, deadline: float) -> int:
    count = 0
    parsers = (
        (parse_cpu_list, Reason.MALFORMED_CPU_LIST, "1,3"),
        (parse_describe_enclaves, Reason.MALFORMED_DESCRIBE_ENCLAVES, DESCRIBE_SAMPLE),
        (parse_allocator_config, Reason.MALFORMED_ALLOCATOR_CONFIG, ALLOCATOR_SAMPLE),
    )
    while time.monotonic() < deadline:
        parser, reason, sample = rng.choice(parsers)
        if rng.random() < 0.5:
            text = "".join(rng.choice(PARENT_TOKENS) for _ in range(rng.randrange(0, 40)))
        else:
            text = mutate(rng, sample.encode()).decode("utf-8", errors="replace")
        try:
            result = parser(text)  # type: ignore[operator]
        except ConfigError as exc:
            if exc.reason is not reason or not exc.message:
                raise AssertionError(f"{parser.__name__}({text!r}): {exc!r}") from exc
        else:
            if isinstance(result, frozenset) and any(not 0 <= c <= MAX_CPU_ID for c in result):
                raise AssertionError(f"parse_cpu_list({text!r}) = {sorted(result)[:5]}")
        count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    third = args.seconds / 3
    try:
        parsed = fuzz_parsers(rng, time.monotonic() + third)
        rounds, slowest, statuses = fuzz_audit(rng, time.monotonic() + third)
        parent = fuzz_parent_parsers(rng, time.monotonic() + third)
    except Exception:
        traceback.print_exc()
        return 1
    print(f"parser inputs: {parsed}")
    print(f"parent parser inputs: {parent}")
    print(f"audit rounds: {rounds} (slowest {slowest * 1000:.1f} ms)")
    by_status = collections.Counter(k.split(":")[1] for k in statuses.elements())
    print("finding statuses seen:", dict(sorted(by_status.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
