"""`nitroguard scan`: static checks of Python enclave code (see `nitroguard.scan`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nitroguard._commands._common import emit_json
from nitroguard.findings import Status, summarize
from nitroguard.scan import RULES, scan_paths


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `scan` subcommand."""
    parser = sub.add_parser(
        "scan",
        help="static checks of Python enclave code",
        description="Scan Python files for checklist items that live in source: "
        + ", ".join(f"{k} ({v})" for k, v in RULES.items())
        + ". Heuristic: a finding is a place to look; silence is not proof.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    findings = scan_paths(args.paths)
    summary = summarize(findings)
    if args.json:
        emit_json({"findings": [f.to_dict() for f in findings], "summary": summary})
    else:
        for f in findings:
            sys.stdout.write(f"[{f.status.value.upper():4}] {f.id:6} {f.evidence}\n")
            if f.remediation:
                sys.stdout.write(f"              fix: {f.remediation}\n")
        sys.stdout.write(
            f"{len(findings)} finding(s): {summary['fail']} fail, {summary['warn']} warn, "
            f"{summary['skip']} skipped\n"
        )
    failed = any(f.status is Status.FAIL for f in findings)
    warned = any(f.status is Status.WARN for f in findings)
    return 1 if failed or (args.strict and warned) else 0
