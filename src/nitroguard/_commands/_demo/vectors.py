"""The vector report of `nitroguard demo --vectors`: real AWS documents, strict verifier.

For each entry of ``vectors/attestation/vectors.json``: real documents verify at their
``verify_at`` against the pinned AWS root; debug documents are rejected by the default
policy (``debug_mode``) and accepted with ``allow_debug``; every real document is
rejected now (its 3-hour leaf certificate has expired); negatives are rejected, and the
report says at which step and why.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from nitroguard._commands._common import parse_time
from nitroguard.attestation import Verifier, step_label
from nitroguard.errors import Error, Reason, VerificationError

__all__ = ["find_vectors", "print_report", "run_vectors"]


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


def print_report(report: dict[str, Any]) -> None:
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
