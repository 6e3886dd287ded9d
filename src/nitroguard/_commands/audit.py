"""`nitroguard audit`: check the enclave environment (entropy, clock, CPU, memory, NSM).

Examples::

    nitroguard audit                       # this machine, readable table
    nitroguard audit --json --strict       # machine-readable; warnings fail too
    nitroguard audit --root /tmp/snapshot  # a copied /proc, /sys, /dev tree
    nitroguard audit --only RNG,TIME-1     # some checks
    nitroguard audit --nsm emulator-debug  # NSM-backed checks against the emulator

Exit status: 0 nothing failed, 1 a check failed (or warned, with ``--strict``),
2 usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nitroguard.errors import ConfigError
from nitroguard.findings import Finding, Status, summarize

_NSM_HELP = (
    "NSM to use for DescribeNSM, self-attestation and PCR checks: 'auto' (default: "
    "/dev/nsm when auditing / and it exists), 'none', 'device[:PATH]', 'emulator' or "
    "'emulator-debug' (an ephemeral in-process emulator, trusted via its own test root)"
)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `audit` subcommand."""
    parser = sub.add_parser(
        "audit",
        help="audit the enclave environment (RNG, time, CPU, memory, NSM, debug mode)",
        description=(
            "Check the in-enclave environment against the threat checklist "
            "(RNG-1..5, TIME-1..4, CPU-1, MEM, NSM-1..3, ATT-2, ATT-7). Outside an "
            "enclave the enclave checks are reported as skip."
        ),
    )
    parser.add_argument(
        "--root", default="/", metavar="DIR", help="filesystem root holding proc/, sys/, dev/"
    )
    parser.add_argument("--nsm", default="auto", metavar="SPEC", help=_NSM_HELP)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.add_argument(
        "--only",
        metavar="IDS",
        help="comma-separated check ids or areas (e.g. RNG-1,TIME,NSM-3)",
    )
    parser.set_defaults(func=_run)


@contextlib.contextmanager
def _open_nsm(spec: str, root: str) -> Iterator[tuple[Any, Any]]:
    """Yield ``(nsm or None, trust roots or None)`` for an ``--nsm`` spec."""
    kind, _, arg = spec.partition(":")
    if kind == "none":
        yield None, None
        return
    if kind == "auto":
        if Path(root).resolve() != Path("/") or not Path("/dev/nsm").exists():
            yield None, None
            return
        kind, arg = "device", ""
    if kind == "device":
        nsm = importlib.import_module("nitroguard.nsm").Nsm.open(arg or "/dev/nsm")
        try:
            yield nsm, None
        finally:
            nsm.close()
        return
    if kind in ("emulator", "emulator-debug"):
        ephemeral_nsm = importlib.import_module("nitroguard.testing").ephemeral_nsm
        with ephemeral_nsm(debug_mode=kind == "emulator-debug") as emulated:
            yield emulated.nsm, [emulated.root_certificate]
        return
    raise ConfigError(f"--nsm: unknown spec {spec!r} (auto, none, device[:PATH], emulator)")


def _run(args: argparse.Namespace) -> int:
    from nitroguard.audit import AREAS, SystemProbe, run

    root = args.root
    if not Path(root).is_dir():
        raise ConfigError(f"--root: not a directory: {root}")
    only = args.only.split(",") if args.only else None
    with _open_nsm(args.nsm, root) as (nsm, roots):
        findings = run(SystemProbe(root), nsm, only=only, roots=roots)
    summary = summarize(findings)
    if args.json:
        from nitroguard._commands._common import emit_json

        emit_json({"findings": [f.to_dict() for f in findings], "summary": summary})
    else:
        _print_table(findings, summary, root, AREAS)
    if summary["fail"] or (args.strict and summary["warn"]):
        return 1
    return 0


def _print_table(
    findings: list[Finding], summary: dict[str, int], root: str, areas: dict[str, str]
) -> None:
    out = sys.stdout
    out.write(f"nitroguard audit (root {root})\n")
    by_area: dict[str, list[Finding]] = {}
    for finding in findings:
        by_area.setdefault(finding.id.split("-", 1)[0], []).append(finding)
    order = [a for a in areas if a in by_area] + [a for a in by_area if a not in areas]
    width = max((len(f.id) for f in findings), default=0)
    for area in order:
        out.write(f"\n{areas.get(area, area)}\n")
        for f in by_area[area]:
            out.write(f"  {f.status.value.upper():<4}  {f.id:<{width}}  {f.title}\n")
            pad = " " * (8 + width)
            out.write(f"{pad}evidence: {f.evidence}\n")
            if f.remediation and f.status is not Status.PASS:
                out.write(f"{pad}fix: {f.remediation}\n")
    counts = ", ".join(f"{summary[s.value]} {s.value}" for s in Status)
    out.write(f"\nsummary: {counts}\n")
