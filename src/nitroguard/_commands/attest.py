"""`nitroguard attest`: inspect or verify an attestation document.

Forms (exit codes: 0 verified/decoded, 1 rejected, 2 usage error or unreadable input)::

    nitroguard attest inspect FILE [--json]
    nitroguard attest verify FILE [--at TIME] [--root PEM]... [--pcr N=HEX]...
        [--nonce HEX] [--user-data HEX] [--public-key HEX] [--max-age SECONDS]
        [--allow-debug] [--json]

FILE is raw CBOR, base64 or hex (detected), or ``-`` for stdin. TIME is ISO-8601
(``2023-05-24T18:37:46Z``) or epoch milliseconds; it defaults to now, read once here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from cryptography import x509

from nitroguard._commands._common import emit_json, parse_hex, parse_time, read_blob
from nitroguard.attestation import (
    MAX_DOCUMENT_SIZE,
    AttestationDocument,
    Verifier,
    load_pem_roots,
    step_label,
)
from nitroguard.attestation import policy as _policy
from nitroguard.errors import ConfigError, DecodeError, VerificationError

__all__ = ["document_json", "register", "step_label"]

#: Text input (hex with whitespace, base64) is larger than the document it encodes.
_MAX_INPUT = 4 * MAX_DOCUMENT_SIZE + 4096

_UNTRUSTED = (
    "UNVERIFIED: decoded without checking the signature, the certificate chain, the root "
    "or any policy. Do not trust anything below; use `nitroguard attest verify`."
)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `attest` subcommand and its `inspect` and `verify` actions."""
    parser = sub.add_parser(
        "attest",
        help="inspect or verify an AWS Nitro attestation document",
        description="Inspect or verify an AWS Nitro Enclaves attestation document.",
    )
    actions = parser.add_subparsers(dest="attest_action", metavar="ACTION")
    actions.required = True

    inspect = actions.add_parser(
        "inspect",
        help="decode a document WITHOUT verifying anything",
        description="Decode a document strictly, without trusting it. Exit 0 if it decodes, "
        "1 if the strict parser rejects it, 2 if it cannot be read.",
    )
    inspect.add_argument("file", metavar="FILE", help="raw CBOR, base64 or hex; '-' for stdin")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.set_defaults(func=_inspect)

    verify = actions.add_parser(
        "verify",
        help="verify a document against the pinned AWS root and a policy",
        description="Verify a document: strict parsing, root pin, certificate chain at TIME, "
        "ES384 signature, then the policy built from the options (debug-mode enclaves are "
        "rejected unless --allow-debug). Exit 0 verified, 1 rejected, 2 usage/unreadable.",
    )
    verify.add_argument("file", metavar="FILE", help="raw CBOR, base64 or hex; '-' for stdin")
    verify.add_argument(
        "--at",
        metavar="TIME",
        help="verification time: ISO-8601 (2023-05-24T18:37:46Z) or epoch ms (default: now)",
    )
    verify.add_argument(
        "--root",
        metavar="PEM",
        action="append",
        default=[],
        help="trust root PEM file instead of the pinned AWS Root-G1 (repeatable)",
    )
    verify.add_argument(
        "--pcr",
        metavar="N=HEX",
        action="append",
        default=[],
        help="require PCR N to equal HEX (48 bytes; repeatable)",
    )
    verify.add_argument("--nonce", metavar="HEX", help="require this nonce (>= 16 bytes)")
    verify.add_argument("--user-data", metavar="HEX", help="require this user_data")
    verify.add_argument("--public-key", metavar="HEX", help="require this public_key")
    verify.add_argument(
        "--max-age",
        metavar="SECONDS",
        type=float,
        help="reject documents older than SECONDS at TIME (30 s of future skew allowed)",
    )
    verify.add_argument(
        "--allow-debug",
        action="store_true",
        help="accept debug-mode enclaves (all-zero PCR0/1/2); development only",
    )
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(func=_verify)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def _cert_json(der: bytes) -> dict[str, Any]:
    try:
        cert = x509.load_der_x509_certificate(der)
        return {
            "subject": cert.subject.rfc4514_string(),
            "not_before": _iso(cert.not_valid_before_utc),
            "not_after": _iso(cert.not_valid_after_utc),
        }
    except Exception as exc:  # noqa: BLE001 - untrusted DER: any parse failure is shown
        return {"subject": None, "not_before": None, "not_after": None, "error": str(exc)}


def document_json(doc: AttestationDocument) -> dict[str, Any]:
    """The ``document`` object of the `--json` output (bytes as hex)."""
    return {
        "module_id": doc.module_id,
        "timestamp": doc.timestamp,
        "digest": doc.digest,
        "pcrs": {str(i): v.hex() for i, v in doc.pcrs.items()},
        "public_key": _hex(doc.public_key),
        "user_data": _hex(doc.user_data),
        "nonce": _hex(doc.nonce),
        "certificate": _cert_json(doc.certificate),
    }


def _document_lines(doc: AttestationDocument) -> list[str]:
    ts = dt.datetime.fromtimestamp(doc.timestamp / 1000, tz=dt.UTC)
    cert = _cert_json(doc.certificate)
    lines = [
        f"  module_id    {doc.module_id}",
        f"  timestamp    {_iso(ts)} ({doc.timestamp} ms)",
        f"  digest       {doc.digest}",
    ]
    lines += [f"  PCR{i:<2}        {v.hex()}" for i, v in doc.pcrs.items()]
    for name in ("public_key", "user_data", "nonce"):
        value: bytes | None = getattr(doc, name)
        shown = "(null)" if value is None else f"{value.hex() or '(empty)'} ({len(value)} bytes)"
        lines.append(f"  {name:<12} {shown}")
    lines.append(f"  certificate  {cert['subject']}")
    lines.append(f"               valid {cert['not_before']} .. {cert['not_after']}")
    lines.append(f"  cabundle     {len(doc.cabundle)} certificate(s)")
    return lines


def _inspect(args: argparse.Namespace) -> int:
    data = read_blob(args.file, limit=_MAX_INPUT)
    try:
        doc = AttestationDocument.parse(data)
    except (DecodeError, VerificationError) as exc:
        if args.json:
            emit_json(
                {
                    "verified": False,
                    "decoded": False,
                    "reason": exc.reason.value,
                    "message": exc.message,
                    "step": exc.details.get("step"),
                    "document": None,
                }
            )
        else:
            sys.stdout.write(f"MALFORMED  {args.file}\n  {step_label(exc)}: {exc.diagnostics()}\n")
        return 1
    if args.json:
        # The warning is in the JSON object; say it once for a human reader too.
        sys.stderr.write(f"nitroguard: {_UNTRUSTED}\n")
        emit_json(
            {
                "verified": False,
                "decoded": True,
                "warning": _UNTRUSTED,
                "tagged": doc.tagged,
                "document": document_json(doc),
                "cabundle": [_cert_json(der) for der in doc.cabundle],
            }
        )
    else:
        lines = [f"UNVERIFIED  {args.file}", f"  !! {_UNTRUSTED}", *_document_lines(doc)]
        for i, der in enumerate(doc.cabundle):
            lines.append(f"    [{i}] {_cert_json(der)['subject']}")
        sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _parse_pcr(text: str) -> tuple[int, bytes]:
    index, sep, value = text.partition("=")
    if not sep or not index.strip().isdigit():
        raise ConfigError(f"--pcr expects N=HEX, got {text!r}")
    return int(index), parse_hex(value, f"--pcr {index}")


def build_policy(args: argparse.Namespace) -> _policy.Policy | None:
    """The `AllOf` policy the `verify` options describe, or None when there are none."""
    policies: list[_policy.Policy] = []
    if args.pcr:
        expected: dict[int, bytes] = {}
        for text in args.pcr:
            index, value = _parse_pcr(text)
            if index in expected:
                raise ConfigError(f"--pcr {index} given twice")
            expected[index] = value
        policies.append(_policy.PCRs(expected))
    if args.nonce is not None:
        policies.append(_policy.Nonce(parse_hex(args.nonce, "--nonce")))
    if args.user_data is not None:
        policies.append(_policy.UserData(parse_hex(args.user_data, "--user-data")))
    if args.public_key is not None:
        policies.append(_policy.PublicKey(parse_hex(args.public_key, "--public-key")))
    if args.max_age is not None:
        policies.append(_policy.MaxAge(args.max_age))
    return _policy.AllOf(policies) if policies else None


def _verify(args: argparse.Namespace) -> int:
    # Read the clock once, here at the boundary.
    at = parse_time(args.at) if args.at else dt.datetime.now(dt.UTC)
    roots: list[x509.Certificate] | None = None
    if args.root:
        roots = []
        for path in args.root:
            try:
                roots.extend(load_pem_roots(read_blob(path, limit=1 << 20, decode_text=False)))
            except ConfigError as exc:
                raise ConfigError(f"--root {path}: {exc.message}", exc.reason) from None
    pol = build_policy(args)
    data = read_blob(args.file, limit=_MAX_INPUT)
    verifier = Verifier(roots, cache_size=0)
    try:
        verified = verifier.verify(data, pol, at=at, allow_debug=args.allow_debug)
    except VerificationError as exc:
        parsed: AttestationDocument | None
        try:
            parsed = AttestationDocument.parse(data)
        except (DecodeError, VerificationError):
            parsed = None
        if args.json:
            emit_json(
                {
                    "verified": False,
                    "reason": exc.reason.value,
                    "message": exc.message,
                    "step": exc.details.get("step"),
                    "at": _iso(at),
                    "document": None if parsed is None else document_json(parsed),
                }
            )
        else:
            sys.stdout.write(
                f"REJECTED  {args.file}\n  {step_label(exc)}: {exc.message}\n"
                f"  reason: {exc.reason.value}\n  verification time: {_iso(at)}\n"
            )
        return 1
    if args.json:
        emit_json(
            {
                "verified": True,
                "reason": None,
                "message": "verified",
                "step": None,
                "at": _iso(at),
                "document": document_json(verified.document),
            }
        )
    else:
        trust = "configured root(s)" if roots else "pinned AWS Nitro Enclaves Root-G1"
        lines = [
            f"VERIFIED  {args.file}",
            f"  chain        {trust}, valid at {_iso(at)}",
            f"  policy       {'debug allowed' if args.allow_debug else 'NotDebug'}"
            + (f" + {pol!r}" if pol is not None else " (no PCR/nonce policy given)"),
            *_document_lines(verified.document),
        ]
        if verified.is_debug:
            lines.insert(
                1, "  !! DEBUG-MODE enclave (PCR0/1/2 all zero): accepted by --allow-debug"
            )
        sys.stdout.write("\n".join(lines) + "\n")
    return 0
