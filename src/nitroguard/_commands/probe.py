"""`nitroguard probe`: attack a framed service like a hostile parent and report.

Usage::

    nitroguard probe tcp://127.0.0.1:5000
    nitroguard probe unix:///run/app.sock --attacks idle,partial-eof --duration 2 --json

Exit 0 only when every attack passed; 1 when one failed; 2 on usage errors
(including a remote target without ``--allow-remote``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from nitroguard._commands._common import emit_json, parse_hex
from nitroguard.errors import ConfigError, ProbeError, Reason
from nitroguard.probe import ATTACKS, DEFAULT_REQUEST, AttackResult, ProbeConfig, run_probe


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `probe` subcommand."""
    parser = sub.add_parser(
        "probe",
        help="attack a framed service like a hostile parent (VS-1..3, MEM-1)",
        description=(
            "Attack a length-prefixed framed service while a legitimate client measures "
            "latency. Attacks: " + ", ".join(ATTACKS) + "."
        ),
    )
    parser.add_argument("address", help="target: tcp://HOST:PORT, unix:///path or vsock://CID:PORT")
    parser.add_argument(
        "--attacks",
        default="all",
        metavar="LIST",
        help="comma-separated attack names, or 'all' (default)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=50,
        metavar="N",
        help="attack connections per attack (default 50, max 2000)",
    )
    parser.add_argument(
        "--duration", type=float, default=3.0, metavar="S", help="seconds per attack (default 3)"
    )
    parser.add_argument(
        "--request-hex",
        default=DEFAULT_REQUEST.hex(),
        metavar="HEX",
        help="legitimate request payload, hex (framed by the probe)",
    )
    parser.add_argument(
        "--sla",
        type=float,
        default=1.0,
        metavar="S",
        help="legitimate p99 latency bound in seconds (default 1)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for the garbage attack")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a target that is not loopback, unix or vsock",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(func=_run)


def _attack_list(text: str) -> list[str]:
    if text.strip() == "all":
        return list(ATTACKS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ATTACKS]
    if not names or unknown:
        raise ConfigError(
            f"unknown attack(s) {unknown or text!r}; known: {', '.join(ATTACKS)}, all"
        )
    return names


def _progress(result: AttackResult) -> None:
    mark = "PASS" if result.passed else "FAIL"
    sys.stderr.write(
        f"{mark} {result.name:<13} p50 {result.legit_p50_ms:8.1f} ms"
        f"  p99 {result.legit_p99_ms:8.1f} ms  closed {result.closed_by_server:4d}"
        f"  {result.detail}\n"
    )
    sys.stderr.flush()


def _run(args: argparse.Namespace) -> int:
    attacks = _attack_list(args.attacks)
    request = parse_hex(args.request_hex, "--request-hex")
    try:
        config = ProbeConfig(
            connections=args.connections,
            duration=args.duration,
            request=request,
            sla=args.sla,
            allow_remote=args.allow_remote,
            seed=args.seed,
        )
        report = asyncio.run(
            run_probe(args.address, attacks, config, on_result=None if args.json else _progress)
        )
    except ProbeError as exc:
        # Refusing a target or a bad parameter is a usage error, not a failed check.
        raise ConfigError(
            exc.message, exc.reason if exc.reason is Reason.REMOTE_TARGET_REFUSED else None
        ) from exc
    if args.json:
        emit_json(report.to_dict())
    else:
        verdict = "PASSED" if report.passed else "FAILED"
        failed = [a.name for a in report.attacks if not a.passed]
        sys.stdout.write(
            f"{report.target}: {verdict}" + (f" ({', '.join(failed)})" if failed else "") + "\n"
        )
    return 0 if report.passed else 1
