"""`nitroguard probe`: attack a framed service like a hostile parent and report.

Usage::

    nitroguard probe tcp://127.0.0.1:5000
    nitroguard probe unix:///run/app.sock --attacks idle,partial-eof --duration 2 --json
    nitroguard probe leak tcp://127.0.0.1:5000 --class-a 00112233 --class-b ff112233

The ``leak`` form is the side-channel probe (SC-1 timing, SC-3 reply length;
`nitroguard.probe.run_leak`). An address always has a scheme, so the word
``leak`` in the address position cannot be mistaken for one.

Exit 0 only when every attack (or both leak checks) passed; 1 when one failed;
2 on usage errors (including a remote target without ``--allow-remote``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from nitroguard._commands._common import emit_json, parse_hex
from nitroguard.errors import ConfigError, ProbeError, Reason
from nitroguard.probe import (
    ATTACKS,
    DEFAULT_REQUEST,
    AttackResult,
    LeakConfig,
    LeakReport,
    ProbeConfig,
    run_leak,
    run_probe,
)
from nitroguard.probe.stats import DEFAULT_THRESHOLD

_USAGE = """nitroguard probe ADDRESS [--attacks LIST|all] [--connections N] [--duration S]
           [--request-hex HEX] [--sla S] [--seed N] [--allow-remote] [--json]
           [--channel [--root PEM]... [--pcr N=HEX]... [--service NAME] [--allow-debug]]
       nitroguard probe leak ADDRESS --class-a HEX --class-b HEX [--samples N]
           [--threshold T] [--duration S] [--timeout S] [--warmup N] [--seed N]
           [--allow-remote] [--json]"""
_LEAK_DEFAULTS = LeakConfig(b"a", b"b")
_ATTACK_ONLY = ("attacks", "connections", "request_hex", "sla")
_LEAK_ONLY = ("class_a", "class_b", "samples", "threshold", "timeout", "warmup")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `probe` subcommand."""
    parser = sub.add_parser(
        "probe",
        help="attack a framed service like a hostile parent (VS-1..3, MEM-1; leak: SC-1, SC-3)",
        usage=_USAGE,
        description=(
            "Attack a length-prefixed framed service while a legitimate client measures "
            "latency. Attacks: " + ", ".join(ATTACKS) + ". The 'leak' form sends two "
            "classes of requests in random order and tests whether their latency (Welch's "
            "t, dudect-style) or reply lengths differ."
        ),
    )
    parser.add_argument(
        "address",
        help="target: tcp://HOST:PORT, unix:///path or vsock://CID:PORT (or the word 'leak')",
    )
    parser.add_argument("leak_target", nargs="?", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--attacks",
        default=None,
        metavar="LIST",
        help="comma-separated attack names, or 'all' (default)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=None,
        metavar="N",
        help="attack connections per attack (default 50, max 2000)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help=(
            "seconds per attack (default 3); leak: most seconds of sampling "
            f"(default {_LEAK_DEFAULTS.duration:g})"
        ),
    )
    parser.add_argument(
        "--request-hex",
        default=None,
        metavar="HEX",
        help="legitimate request payload, hex (framed by the probe)",
    )
    parser.add_argument(
        "--sla",
        type=float,
        default=None,
        metavar="S",
        help="legitimate p99 latency bound in seconds (default 1)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed for the garbage attack / the leak class order"
    )
    leak = parser.add_argument_group("leak (side channels: SC-1 timing, SC-3 reply length)")
    leak.add_argument("--class-a", metavar="HEX", help="class A request payload (e.g. right MAC)")
    leak.add_argument("--class-b", metavar="HEX", help="class B request payload (e.g. wrong MAC)")
    leak.add_argument(
        "--samples",
        type=int,
        default=None,
        metavar="N",
        help=f"timed requests, split at random between A and B (default {_LEAK_DEFAULTS.samples})",
    )
    leak.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="T",
        help=f"fail when max |t| exceeds T (default {DEFAULT_THRESHOLD:g}, dudect's)",
    )
    leak.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help=f"seconds one request may take (default {_LEAK_DEFAULTS.timeout:g})",
    )
    leak.add_argument(
        "--warmup",
        type=int,
        default=None,
        metavar="N",
        help=f"discarded requests sent first (default {_LEAK_DEFAULTS.warmup})",
    )
    chan = parser.add_argument_group(
        "channel (probe an EnclaveApp: the legitimate client does an attested handshake)"
    )
    chan.add_argument(
        "--channel",
        action="store_true",
        help="legitimate client: full attested-channel handshake + one request/response",
    )
    chan.add_argument(
        "--root",
        metavar="PEM",
        action="append",
        default=[],
        help="with --channel: trust root PEM instead of the AWS root (e.g. the emulator's, "
        "from `nitroguard nsm pki --export-root`); repeatable",
    )
    chan.add_argument(
        "--pcr",
        metavar="N=HEX",
        action="append",
        default=[],
        help="with --channel: require PCR N to equal HEX; repeatable",
    )
    chan.add_argument(
        "--service",
        metavar="NAME",
        default=None,
        help="with --channel: the EnclaveApp's name its documents bind (user_data); "
        "required to probe an EnclaveApp",
    )
    chan.add_argument(
        "--allow-debug",
        action="store_true",
        help="with --channel: accept a debug-mode enclave (development only)",
    )
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


def _result_line(result: AttackResult) -> None:
    # Per-attack results are the results: stdout (issue 14). Progress is on stderr.
    mark = "PASS" if result.passed else "FAIL"
    sys.stdout.write(
        f"{mark} {result.name:<13} p50 {result.legit_p50_ms:8.1f} ms"
        f"  p99 {result.legit_p99_ms:8.1f} ms  closed {result.closed_by_server:4d}"
        f"  {result.detail}\n"
    )
    sys.stdout.flush()


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n) is not None]


def _refused(exc: ProbeError) -> ConfigError:
    # Refusing a target, an unreachable target or a bad parameter is a usage error
    # (exit 2), not a failed check: a mistyped port is not a vulnerable service.
    kept = (Reason.REMOTE_TARGET_REFUSED, Reason.TARGET_UNREACHABLE)
    return ConfigError(exc.message, exc.reason if exc.reason in kept else None)


def _run(args: argparse.Namespace) -> int:
    if args.address == "leak":
        return _run_leak(args)
    if args.leak_target is not None:
        raise ConfigError(f"unexpected argument {args.leak_target!r} (did you mean 'probe leak'?)")
    wrong = _given(args, _LEAK_ONLY)
    if wrong:
        raise ConfigError(f"{', '.join(wrong)}: only for 'nitroguard probe leak'")
    attacks = _attack_list(args.attacks if args.attacks is not None else "all")
    check = _channel_check(args)
    request = parse_hex(
        args.request_hex if args.request_hex is not None else DEFAULT_REQUEST.hex(),
        "--request-hex",
    )
    try:
        config = ProbeConfig(
            connections=args.connections if args.connections is not None else 50,
            duration=args.duration if args.duration is not None else 3.0,
            request=request,
            sla=args.sla if args.sla is not None else 1.0,
            allow_remote=args.allow_remote,
            seed=args.seed,
            channel=check,
        )
        if sys.stderr.isatty():
            sys.stderr.write(
                f"probing {args.address}: {len(attacks)} attack(s) of {config.duration:g} s "
                "each, after one legitimate request\n"
            )
        report = asyncio.run(
            run_probe(args.address, attacks, config, on_result=None if args.json else _result_line)
        )
    except ProbeError as exc:
        raise _refused(exc) from exc
    if args.json:
        emit_json(report.to_dict())
    else:
        verdict = "PASSED" if report.passed else "FAILED"
        failed = [a.name for a in report.attacks if not a.passed]
        sys.stdout.write(
            f"{report.target}: {verdict}" + (f" ({', '.join(failed)})" if failed else "") + "\n"
        )
    return 0 if report.passed else 1


def _channel_check(args: argparse.Namespace) -> Any:
    """The `DocumentCheck` that --channel, --root, --pcr and --allow-debug describe."""
    if not args.channel:
        given = [
            f
            for f, v in (("--root", args.root), ("--pcr", args.pcr), ("--service", args.service))
            if v
        ]
        given += ["--allow-debug"] if args.allow_debug else []
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --channel")
        return None
    from nitroguard._commands._common import read_blob
    from nitroguard.attestation import load_pem_roots, policy
    from nitroguard.channel import DocumentCheck

    roots: list[Any] = []
    for path in args.root:
        try:
            roots.extend(load_pem_roots(read_blob(path, limit=1 << 20, decode_text=False)))
        except ConfigError as exc:
            raise ConfigError(f"--root {path}: {exc.message}", exc.reason) from None
    expected: dict[int, bytes] = {}
    for text in args.pcr:
        index, sep, value = text.partition("=")
        if not sep or not index.strip().isdigit():
            raise ConfigError(f"--pcr expects N=HEX, got {text!r}")
        expected[int(index)] = parse_hex(value, f"--pcr {index}")
    if not expected and args.allow_debug:
        raise ConfigError("--allow-debug needs --pcr (pin what the debug enclave runs)")
    # Without --pcr the probe only needs a genuine, non-debug enclave on the other end.
    return DocumentCheck(
        policy.PCRs(expected) if expected else policy.NotDebug(),
        roots=roots or None,
        allow_debug=args.allow_debug,
        service=args.service,
    )


def _run_leak(args: argparse.Namespace) -> int:
    if args.leak_target is None:
        raise ConfigError("probe leak needs an ADDRESS")
    wrong = _given(args, _ATTACK_ONLY)
    if args.channel or args.root or args.pcr or args.allow_debug or args.service:
        wrong.append("--channel/--root/--pcr/--service/--allow-debug")
    if wrong:
        raise ConfigError(f"{', '.join(wrong)}: not an option of 'nitroguard probe leak'")
    if args.class_a is None or args.class_b is None:
        raise ConfigError("probe leak needs --class-a HEX and --class-b HEX")
    d = _LEAK_DEFAULTS
    try:
        config = LeakConfig(
            class_a=parse_hex(args.class_a, "--class-a"),
            class_b=parse_hex(args.class_b, "--class-b"),
            samples=args.samples if args.samples is not None else d.samples,
            threshold=args.threshold if args.threshold is not None else d.threshold,
            duration=args.duration if args.duration is not None else d.duration,
            timeout=args.timeout if args.timeout is not None else d.timeout,
            warmup=args.warmup if args.warmup is not None else d.warmup,
            allow_remote=args.allow_remote,
            seed=args.seed,
        )
        if sys.stderr.isatty():
            sys.stderr.write(
                f"probe leak {args.leak_target}: up to {config.samples} samples "
                f"or {config.duration:g} s\n"
            )
        report = run_leak(args.leak_target, config)
    except ProbeError as exc:
        raise _refused(exc) from exc
    if args.json:
        emit_json(report.to_dict())
    else:
        _print_leak(report)
    return 0 if report.passed else 1


def _print_leak(report: LeakReport) -> None:
    for check in report.checks:
        mark = "PASS" if check.passed else "FAIL"
        sys.stdout.write(f"{mark} {check.id}  {check.detail}\n")
    for note in report.notes:
        sys.stdout.write(f"note: {note}\n")
    verdict = "PASSED" if report.passed else "FAILED"
    failed = [c.id for c in report.checks if not c.passed]
    sys.stdout.write(
        f"{report.target}: {verdict}"
        + (f" ({', '.join(failed)})" if failed else "")
        + f"; {report.samples[0]} A + {report.samples[1]} B samples in {report.elapsed:.1f} s\n"
    )
