"""`nitroguard audit`: check the enclave environment (entropy, clock, CPU, memory, NSM).

Examples::

    nitroguard audit                       # this machine, readable table
    nitroguard audit --json --strict       # machine-readable; warnings fail too
    nitroguard audit --root /tmp/snapshot  # a copied /proc, /sys, /dev tree
    nitroguard audit --only RNG,TIME-1     # some checks
    nitroguard audit --nsm ephemeral-debug # NSM-backed checks against an emulator

    # on the parent instance: CPU pool, debug-mode enclaves, enclave CID, allocator
    nitro-cli describe-enclaves | nitroguard audit --parent --describe-enclaves - --expect-cid 16

Exit status: 0 nothing failed, 1 a check failed (or warned, with ``--strict``),
2 usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from nitroguard.errors import ConfigError, NsmError
from nitroguard.findings import Finding, Status, summarize

if TYPE_CHECKING:
    from cryptography import x509

    from nitroguard.nsm import NsmDescription, PcrDescription, ReadOnlyNsm

_NSM_HELP = (
    "NSM for DescribeNSM, the self-attestation and the PCR checks: 'auto' (default: "
    "/dev/nsm when auditing / and it exists), 'none', 'device[:PATH]', "
    "'emulator:SOCKET' (a served emulator; pin its root with --nsm-root), or "
    "'ephemeral' / 'ephemeral-debug' (an in-process emulator trusted through its own "
    "throw-away root, for demos)"
)

#: PCR0/1/2 of the 'ephemeral' emulator: fixed, non-zero stand-ins for a real image.
_EPHEMERAL_PCRS = {
    i: hashlib.sha384(f"nitroguard ephemeral PCR{i}".encode()).digest() for i in (0, 1, 2)
}


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `audit` subcommand."""
    parser = sub.add_parser(
        "audit",
        help="audit the enclave environment (RNG, time, CPU, memory, NSM, debug mode)",
        description=(
            "Check the in-enclave environment against the threat checklist "
            "(RNG-1..5, TIME-1..4, CPU-1, MEM, NSM-1..3, ATT-2, ATT-7). Outside an "
            "enclave the enclave checks are reported as skip. With --parent, check the "
            "parent instance instead (CPU-2, ATT-2, VS-5, ALLOC-1)."
        ),
    )
    parser.add_argument(
        "--parent",
        action="store_true",
        help="audit the parent instance: NE CPU pool, debug-mode enclaves, enclave CID, "
        "allocator.yaml",
    )
    parser.add_argument(
        "--describe-enclaves",
        metavar="FILE",
        help="with --parent: the JSON output of `nitro-cli describe-enclaves` ('-': stdin)",
    )
    parser.add_argument(
        "--expect-cid",
        metavar="N",
        help="with --parent: the enclave CID your proxy connects to (needs --describe-enclaves)",
    )
    parser.add_argument(
        "--root", default="/", metavar="DIR", help="filesystem root holding proc/, sys/, dev/"
    )
    parser.add_argument("--nsm", default=None, metavar="SPEC", help=_NSM_HELP)
    parser.add_argument(
        "--nsm-root",
        metavar="PEM",
        help="trust root for the self-attestation (default: the pinned AWS Nitro root)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.add_argument(
        "--only",
        metavar="IDS",
        help="comma-separated check ids or areas (e.g. RNG-1,TIME,NSM-3)",
    )
    parser.set_defaults(func=_run)


@contextlib.contextmanager
def _open_nsm(
    spec: str, root: str
) -> Iterator[tuple[ReadOnlyNsm | None, list[x509.Certificate] | None]]:
    """Yield ``(nsm or None, trust roots or None)`` for an ``--nsm`` spec."""
    from nitroguard.nsm import DEFAULT_DEVICE, EPHEMERAL_SPECS, EmulatedNsm
    from nitroguard.nsm import open as open_nsm

    if spec == "none":
        yield None, None
        return
    if spec == "auto":
        if Path(root).resolve() != Path("/") or not Path(DEFAULT_DEVICE).exists():
            yield None, None
            return
        spec = "device"
    if spec in EPHEMERAL_SPECS:
        emulated = open_nsm(spec, pcrs=None if spec == "ephemeral-debug" else _EPHEMERAL_PCRS)
        assert isinstance(emulated, EmulatedNsm)  # noqa: S101 - open's contract for these specs
        with emulated:
            yield emulated, [emulated.pki.root_certificate]
        return
    if spec.partition(":")[0] not in ("device", "emulator"):
        raise ConfigError(
            f"--nsm: unknown spec {spec!r} "
            "(auto, none, device[:PATH], emulator:SOCKET, ephemeral, ephemeral-debug)"
        )
    try:
        nsm = open_nsm(spec)
    except NsmError as exc:
        # An NSM that cannot even be opened is an NSM-2 failure to report, not a
        # reason to skip the rest of the audit.
        yield _UnavailableNsm(exc), None
        return
    with nsm:
        yield nsm, None


class _UnavailableNsm:
    """Stands for an NSM that could not be opened: every request fails with that error."""

    def __init__(self, error: NsmError) -> None:
        self._error = error

    def _fail(self) -> NoReturn:
        raise NsmError(self._error.message, self._error.reason)

    def describe_nsm(self) -> NsmDescription:
        self._fail()

    def describe_pcr(self, index: int) -> PcrDescription:
        self._fail()

    def get_attestation(
        self,
        user_data: bytes | None = None,
        nonce: bytes | None = None,
        public_key: bytes | None = None,
    ) -> bytes:
        self._fail()

    def get_random(self, n: int) -> bytes:
        self._fail()


def _load_root(path: str) -> list[x509.Certificate]:
    from cryptography import x509

    from nitroguard._commands._common import read_blob

    data = read_blob(path, decode_text=False)
    try:
        return [x509.load_pem_x509_certificate(data)]
    except ValueError:
        try:
            return [x509.load_der_x509_certificate(data)]
        except ValueError:
            raise ConfigError(f"--nsm-root: {path} is not a PEM or DER certificate") from None


def _run(args: argparse.Namespace) -> int:
    from nitroguard.audit import AREAS, SystemReader, run

    root = args.root
    if not Path(root).is_dir():
        raise ConfigError(f"--root: not a directory: {root}")
    only = args.only.split(",") if args.only else None
    if args.parent:
        return _run_parent(args, root, only)
    for flag, value in (
        ("--describe-enclaves", args.describe_enclaves),
        ("--expect-cid", args.expect_cid),
    ):
        if value is not None:
            raise ConfigError(f"{flag} needs --parent")
    pinned = _load_root(args.nsm_root) if args.nsm_root else None
    with _open_nsm(args.nsm or "auto", root) as (nsm, roots):
        findings = run(SystemReader(root), nsm, only=only, roots=pinned or roots)
    return _report(args, findings, f"nitroguard audit (root {root})", AREAS)


def _run_parent(args: argparse.Namespace, root: str, only: list[str] | None) -> int:
    from nitroguard._commands._common import read_blob
    from nitroguard.audit import (
        MAX_DESCRIBE_SIZE,
        PARENT_AREAS,
        SystemReader,
        parse_cid,
        run_parent,
    )

    if args.nsm is not None or args.nsm_root is not None:
        raise ConfigError("--nsm and --nsm-root do not apply to --parent (no NSM on the parent)")
    expect = parse_cid(args.expect_cid) if args.expect_cid is not None else None
    if expect is not None and args.describe_enclaves is None:
        raise ConfigError(
            "--expect-cid needs --describe-enclaves "
            "(e.g. nitro-cli describe-enclaves | nitroguard audit --parent "
            "--describe-enclaves - --expect-cid N)"
        )
    enclaves = None
    if args.describe_enclaves is not None:
        # Read and parsed here, before any check runs: malformed input is a usage
        # error (exit 2, ConfigError), never a traceback.
        enclaves = read_blob(args.describe_enclaves, limit=MAX_DESCRIBE_SIZE, decode_text=False)
    findings = run_parent(SystemReader(root), enclaves, expect, only=only)
    return _report(args, findings, f"nitroguard audit --parent (root {root})", PARENT_AREAS)


def _report(
    args: argparse.Namespace, findings: list[Finding], header: str, areas: dict[str, str]
) -> int:
    summary = summarize(findings)
    if args.json:
        from nitroguard._commands._common import emit_json

        emit_json({"findings": [f.to_dict() for f in findings], "summary": summary})
    else:
        _print_table(findings, summary, header, areas)
    if summary["fail"] or (args.strict and summary["warn"]):
        return 1
    if args.strict and findings and summary["skip"] == len(findings):
        # --strict promises that something was checked: all-skip proves nothing.
        sys.stderr.write("nitroguard: --strict: every check was skipped; nothing was verified\n")
        return 1
    return 0


def _print_table(
    findings: list[Finding], summary: dict[str, int], header: str, areas: dict[str, str]
) -> None:
    out = sys.stdout
    out.write(f"{header}\n")
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
