"""`nitroguard demo`: the attested channel end to end, with a hostile parent.

Default: the story of `nitroguard.app.demo` (an emulated enclave with the persistent dev
PKI running a vault on `EnclaveApp`, the parent's proxy, a verifying client doing real
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
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from nitroguard._commands._common import emit_json, parse_time
from nitroguard.attestation import Verifier
from nitroguard.errors import Error, Reason, VerificationError

__all__ = ["find_vectors", "register", "run_vectors"]

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


def find_vectors(explicit: str | None) -> Path:
    """Locate the attestation vectors directory.

    Raises:
        Error: `unreadable_input` when no ``vectors.json`` is found.
    """
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    else:
        shared = os.environ.get("NITROGUARD_SHARED")
        if shared:
            candidates.append(Path(shared) / "vectors" / "attestation")
        candidates.append(Path.cwd().parent / "shared" / "vectors" / "attestation")
    for path in candidates:
        if (path / "vectors.json").is_file():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise Error(
        f"no vectors.json found (tried {tried}); pass --vectors DIR or set NITROGUARD_SHARED",
        Reason.UNREADABLE_INPUT,
    )


def _attempt(
    verifier: Verifier, data: bytes, at: dt.datetime, allow_debug: bool
) -> tuple[bool, str | None, str]:
    try:
        doc = verifier.verify(data, at=at, allow_debug=allow_debug)
    except VerificationError as exc:
        from nitroguard.attestation import step_label

        return False, exc.reason.value, f"{step_label(exc)}: {exc.message}"
    pcr0 = doc.pcrs.get(0, b"").hex()
    return True, None, f"{doc.module_id}, PCR0 {pcr0[:16]}..., timestamp {doc.timestamp} ms"


def run_vectors(directory: Path, now: dt.datetime) -> dict[str, Any]:
    """Check every vector; return the JSON-ready report (``ok`` is the verdict)."""
    try:
        entries: list[dict[str, Any]] = json.loads((directory / "vectors.json").read_text())
    except (OSError, ValueError) as exc:
        raise Error(
            f"cannot read {directory / 'vectors.json'}: {exc}", Reason.UNREADABLE_INPUT
        ) from None
    verifier = Verifier()
    results: list[dict[str, Any]] = []
    for entry in entries:
        name = str(entry["file"])
        try:
            data = (directory / name).read_bytes()
        except OSError as exc:
            raise Error(f"cannot read {name}: {exc.strerror}", Reason.UNREADABLE_INPUT) from None
        at = parse_time(str(entry["verify_at"]))
        checks: list[dict[str, Any]] = []
        if entry["expect"] == "accept":
            if entry.get("debug"):
                plan = [
                    ("default policy rejects debug", False, "debug_mode", at, False),
                    ("accepted with allow_debug", True, None, at, True),
                ]
            else:
                plan = [("verifies at verify_at", True, None, at, False)]
            plan.append(("rejected now", False, None, now, True))
        else:
            plan = [("rejected", False, None, at, True)]
        for label, expected_ok, expected_reason, when, allow_debug in plan:
            ok, reason, detail = _attempt(verifier, data, when, allow_debug)
            held = ok == expected_ok and (expected_reason is None or reason == expected_reason)
            checks.append(
                {"check": label, "held": held, "verified": ok, "reason": reason, "detail": detail}
            )
        results.append(
            {
                "file": name,
                "verify_at": entry["verify_at"],
                "expect": entry["expect"],
                "debug": bool(entry.get("debug")),
                "why": entry.get("why") or entry.get("note"),
                "checks": checks,
                "held": all(c["held"] for c in checks),
            }
        )
    held_count = sum(1 for r in results if r["held"])
    return {
        "ok": held_count == len(results),
        "vectors": str(directory),
        "now": now.isoformat().replace("+00:00", "Z"),
        "held": held_count,
        "total": len(results),
        "results": results,
    }


def _print_report(report: dict[str, Any]) -> None:
    out = [
        "nitroguard demo: strict verification of real AWS Nitro attestation documents",
        f"  vectors: {report['vectors']}",
        "  trust:   pinned AWS Nitro Enclaves Root-G1 (SHA-256 641a0321...79bb5b)",
        f"  now:     {report['now']}",
        "",
    ]
    for r in report["results"]:
        kind = "debug" if r["debug"] else ("negative" if r["expect"] == "reject" else "real")
        out.append(f"[{'ok' if r['held'] else 'FAIL'}] {r['file']}  ({kind}, at {r['verify_at']})")
        if r["why"]:
            out.append(f"       {r['why']}")
        for c in r["checks"]:
            verdict = "accepted" if c["verified"] else f"rejected [{c['reason']}]"
            mark = "" if c["held"] else "   <-- UNEXPECTED"
            out.append(f"       - {c['check']}: {verdict}{mark}")
            out.append(f"           {c['detail']}")
    out.append("")
    out.append(
        f"{report['held']}/{report['total']} vectors behaved as expected: "
        + ("OK" if report["ok"] else "FAILED")
    )
    sys.stdout.write("\n".join(out) + "\n")


def _run_vectors_only(args: argparse.Namespace) -> int:
    directory = find_vectors(args.vectors or None)
    report = run_vectors(directory, dt.datetime.now(dt.UTC))
    if args.json:
        emit_json(report)
    else:
        _print_report(report)
    return 0 if report["ok"] else 1


def _print_step(index: int, step: Any) -> None:
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
    from nitroguard.app.demo import DEMO_PCRS, run_story
    from nitroguard.nsm import EmulatorPki

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


def _kms_steps(pki: Any, report: Any) -> list[Any]:
    """The KMS section (issue 11): the vault's master key from the fake KMS, three attacks.

    Skipped with a note when the ``nitroguard[kms]`` extra (botocore) is not installed.
    """
    import importlib.util
    import tempfile

    if importlib.util.find_spec("botocore") is None:  # pragma: no cover - dev installs it
        sys.stdout.write("(nitroguard[kms] not installed: the KMS steps were skipped)\n")
        return []
    from nitroguard.app.kms_demo import run_kms_story

    with tempfile.TemporaryDirectory(prefix="nitroguard-demo-kms-") as tmp:
        return asyncio.run(run_kms_story(pki, Path(tmp), report))
