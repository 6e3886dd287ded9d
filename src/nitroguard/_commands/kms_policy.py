"""`nitroguard kms policy` and `nitroguard kms lint`: KMS key policies that pin an image.

Usage::

    nitroguard kms policy --eif app.eif --principal arn:aws:iam::111122223333:role/enclave \\
        --account 111122223333 [--eif old.eif] [--pcr N]... \\
        [--encryption-context purpose=vault] [--admin ARN]... [--json]
    nitroguard kms lint POLICY.json [--principal ARN]... [--eif IMAGE.eif]... [--json] [--strict]

``policy`` prints the key policy (ready for ``aws kms put-key-policy --policy file://...``)
and exits 0; ``--json`` wraps it with the measured images and the lint findings. ``lint``
reads a policy or ``aws kms get-key-policy`` output (``-``: stdin) and follows the audit's
rule: exit 0 when nothing failed, 1 when a check failed (or warned, with ``--strict``),
2 on unreadable input or usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nitroguard._commands._common import emit_json, read_blob
from nitroguard.errors import ConfigError
from nitroguard.findings import Finding, Status, summarize

__all__ = ["add_lint", "add_policy"]

#: Lint reads at most this much (KMS's limit is 32 KiB; get-key-policy output escapes it).
_MAX_POLICY_FILE = 256 * 1024


def add_policy(kms: argparse._SubParsersAction[Any]) -> None:
    """Add ``kms policy``."""
    parser = kms.add_parser(
        "policy",
        help="write a key policy that lets only the given EIF images use the key",
        description="Measure the images with nitroguard and print a key policy: admins "
        "manage but cannot use the key; the enclave role may Decrypt, GenerateDataKey*, "
        "GenerateRandom and DeriveSharedSecret only with StringEqualsIgnoreCase on "
        "ImageSha384 and the chosen PCRs. Several --eif: a rolling upgrade.",
    )
    parser.add_argument(
        "--eif", action="append", required=True, metavar="IMAGE", help="an .eif (repeatable)"
    )
    parser.add_argument("--principal", required=True, metavar="ARN", help="the enclave role")
    parser.add_argument("--account", required=True, metavar="ID", help="the key's account")
    parser.add_argument(
        "--pcr",
        action="append",
        type=int,
        metavar="N",
        help="PCR to pin besides ImageSha384 (repeatable; default 0,1,2 and 8 when signed)",
    )
    parser.add_argument(
        "--encryption-context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="require this encryption context on Decrypt/GenerateDataKey* (repeatable)",
    )
    parser.add_argument(
        "--admin",
        action="append",
        metavar="ARN",
        help="key administrator (repeatable; default the account root)",
    )
    parser.add_argument("--json", action="store_true", help="policy, images and findings")
    parser.set_defaults(func=_policy)


def add_lint(kms: argparse._SubParsersAction[Any]) -> None:
    """Add ``kms lint``."""
    parser = kms.add_parser(
        "lint",
        help="check a key policy: can the key be used without the enclave? (KMS-1..8)",
        description="Evaluate a key policy (or get-key-policy output) with the fake KMS's "
        "evaluator: could a request without Recipient, or from another image, succeed?",
    )
    parser.add_argument("file", metavar="POLICY", help="policy JSON file; - for stdin")
    parser.add_argument(
        "--principal", action="append", default=[], metavar="ARN", help="also check this one"
    )
    parser.add_argument(
        "--eif", action="append", default=[], metavar="IMAGE", help="image the policy must allow"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.set_defaults(func=_lint)


def _images(paths: list[str]) -> list[Any]:
    from nitroguard.eif import measure
    from nitroguard.kms._lint import ImagePcrs

    images = []
    for path in paths:
        measured = measure(path)
        pcrs = {int(name[3:]): value for name, value in measured.as_hex().items()}
        images.append(ImagePcrs(path, pcrs))
    return images


def _context(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--encryption-context: expected KEY=VALUE, got {pair!r}")
        if key in out:
            raise ConfigError(f"--encryption-context: {key!r} given twice")
        out[key] = value
    return out


def _policy(args: argparse.Namespace) -> int:
    from nitroguard.kms._generate import generate_policy
    from nitroguard.kms._lint import lint_policy

    images = _images(args.eif)
    policy = generate_policy(
        images,
        principal=args.principal,
        account=args.account,
        pcrs=args.pcr,
        encryption_context=_context(args.encryption_context),
        admins=args.admin,
    )
    findings = lint_policy(json.dumps(policy), principals=[args.principal], images=images)
    if args.json:
        emit_json(
            {
                "policy": policy,
                "images": [
                    {"path": i.name, "pcrs": {f"PCR{k}": v for k, v in i.pcrs.items()}}
                    for i in images
                ],
                "comment": _comment(images),
                "findings": [f.to_dict() for f in findings],
                "summary": summarize(findings),
            }
        )
    else:
        sys.stdout.write(json.dumps(policy, indent=2) + "\n")
        sys.stderr.write(f"nitroguard: {_comment(images)}\n")
        for finding in findings:
            if finding.status in (Status.FAIL, Status.WARN):
                sys.stderr.write(
                    f"nitroguard: {finding.status.value} {finding.id}: {finding.evidence}\n"
                )
    return 0


def _comment(images: list[Any]) -> str:
    if len(images) > 1:
        return (
            f"rolling upgrade: the policy allows {len(images)} images "
            f"({', '.join(i.name for i in images)}); remove the old ones after the deploy"
        )
    return f"the policy pins {images[0].name}"


def _lint(args: argparse.Namespace) -> int:
    from nitroguard.kms._lint import lint_policy

    text = read_blob(args.file, limit=_MAX_POLICY_FILE, decode_text=False)
    images = _images(args.eif)
    findings = lint_policy(text, principals=args.principal, images=images)
    summary = summarize(findings)
    if args.json:
        emit_json({"findings": [f.to_dict() for f in findings], "summary": summary})
    else:
        _print(findings, summary, args.file)
    if summary["fail"] or (args.strict and summary["warn"]):
        return 1
    return 0


def _print(findings: list[Finding], summary: dict[str, int], path: str) -> None:
    out = sys.stdout
    out.write(f"nitroguard kms lint ({path})\n\n")
    for f in findings:
        out.write(f"  {f.status.value.upper():<4}  {f.id}  {f.title}\n")
        out.write(f"               evidence: {f.evidence}\n")
        if f.remediation and f.status is not Status.PASS:
            out.write(f"               fix: {f.remediation}\n")
    counts = ", ".join(f"{summary[s.value]} {s.value}" for s in Status)
    out.write(f"\nsummary: {counts}\n")
