"""`nitroguard demo`: the attested channel end to end, with a hostile parent.

Default: the story of `_demo.story` (an emulated enclave with the persistent dev PKI
running a vault on `EnclaveApp`, the parent's proxy, a verifying client doing real
requests, then seven parent attacks that must fail), plus one step over the real AWS
attestation vectors when ``../shared`` is present. Exit 0 only if every expectation held.
``--json`` prints ``{"passed": bool, "steps": [{"name", "expected", "observed", "passed"}]}``.

``--vectors [DIR]`` runs only the report over the shared attestation vectors (formerly
the interim demo): for each entry of ``vectors/attestation/vectors.json`` (found in DIR,
``$NITROGUARD_SHARED/vectors/attestation`` or ``../shared/vectors/attestation``):

- real documents verify at their ``verify_at`` against the pinned AWS root;
- debug documents are rejected by the default policy (``debug_mode``) and accepted
  with ``allow_debug``;
- every real document is rejected now (its 3-hour leaf certificate has expired);
- negatives are rejected, and the report says at which step and why.

Exit 0 only if every expectation held, 1 otherwise, 2 when the vectors are missing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nitroguard._commands._common import emit_json
from nitroguard._commands._demo.story import DEMO_PCRS, Step, run_story
from nitroguard._commands._demo.vectors import find_vectors, print_report, run_vectors
from nitroguard.errors import Error
from nitroguard.nsm import EmulatorPki

__all__ = ["register"]

#: ``--vectors`` given without a directory: use the default locations.
_DEFAULT = ""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `demo` subcommand."""
    parser = sub.add_parser(
        "demo",
        help="the attested channel end to end: enclave, parent proxy, client, attacks",
        description="Run an emulated enclave (vault app) behind a parent proxy, connect "
        "and verify it, then show a hostile parent's attacks failing. Exit 0 only if "
        "every expectation held. No AWS needed.",
    )
    parser.add_argument(
        "--vectors",
        metavar="DIR",
        nargs="?",
        const=_DEFAULT,
        default=None,
        help="only verify the shared attestation vectors (DIR holds vectors.json; default "
        "$NITROGUARD_SHARED/vectors/attestation or ../shared/vectors/attestation)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="emulator dev PKI directory (default: $XDG_STATE_HOME/nitroguard/emulator)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_run)


def _run_vectors_only(args: argparse.Namespace) -> int:
    directory = find_vectors(args.vectors or None)
    report = run_vectors(directory, dt.datetime.now(dt.UTC))
    if args.json:
        emit_json(report)
    else:
        print_report(report)
    return 0 if report["ok"] else 1


def _print_step(index: int, step: Step) -> None:
    mark = "ok" if step.passed else "FAIL"
    sys.stdout.write(
        f"[{mark}] {index}. {step.name}\n"
        f"       expected: {step.expected}\n"
        f"       observed: {step.observed}\n"
    )
    sys.stdout.flush()


def _run(args: argparse.Namespace) -> int:
    if args.vectors is not None:
        return _run_vectors_only(args)
    pki = EmulatorPki(state_dir=args.state_dir)
    try:
        vectors: Path | None = find_vectors(None)
    except Error:
        vectors = None
    counter = iter(range(1, 1000))
    if not args.json:
        sys.stdout.write(
            "nitroguard demo: an attested channel to an (emulated) enclave, "
            "through a hostile parent\n"
            f"  emulator root: {pki.root_fingerprint} ({pki.state_dir}); NOT an AWS root\n"
            f"  expected image: PCR0 {DEMO_PCRS[0].hex()[:16]}... "
            f"PCR1 {DEMO_PCRS[1].hex()[:16]}... PCR2 {DEMO_PCRS[2].hex()[:16]}...\n\n"
        )
    started = time.monotonic()
    steps = asyncio.run(
        run_story(
            pki,
            report=(lambda step: None) if args.json else (lambda s: _print_step(next(counter), s)),
            vectors=vectors,
        )
    )
    steps += _kms_steps(
        pki, (lambda step: None) if args.json else (lambda s: _print_step(next(counter), s))
    )
    passed = bool(steps) and all(step.passed for step in steps)
    if args.json:
        emit_json({"passed": passed, "steps": [step.to_dict() for step in steps]})
    else:
        held = sum(1 for step in steps if step.passed)
        if vectors is None:
            sys.stdout.write("(no ../shared/vectors found: the real-document step was skipped)\n")
        sys.stdout.write(
            f"\n{held}/{len(steps)} expectations held in {time.monotonic() - started:.1f} s: "
            + ("PASSED" if passed else "FAILED")
            + "\n"
        )
    return 0 if passed else 1


def _kms_steps(pki: EmulatorPki, report: Callable[[Step], None]) -> list[Step]:
    """The KMS section (issue 11): the vault's master key from the fake KMS, three attacks.

    Skipped with a note when the ``nitroguard[kms]`` extra (botocore) is not installed.
    """
    if importlib.util.find_spec("botocore") is None:  # pragma: no cover - dev installs it
        sys.stdout.write("(nitroguard[kms] not installed: the KMS steps were skipped)\n")
        return []
    from nitroguard._commands._demo.kms import run_kms_story

    with tempfile.TemporaryDirectory(prefix="nitroguard-demo-kms-") as tmp:
        return asyncio.run(run_kms_story(pki, Path(tmp), report))
