"""Running the audit: select checks, gather facts, evaluate, and fail closed.

`run` / `run_parent` are what ``nitroguard audit`` calls; `require_secure_environment`
is what an enclave application calls at start-up.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

from cryptography import x509

from nitroguard.attestation import Verifier
from nitroguard.audit._check import ENV_ID, Check, Options
from nitroguard.audit._checks import DEFAULT
from nitroguard.audit._facts import Facts, gather, gather_parent
from nitroguard.audit._parent import PARENT_CHECKS, ParentCheck
from nitroguard.audit._parent_parse import EnclaveInfo, parse_cid, parse_describe_enclaves
from nitroguard.audit._system import SystemReader
from nitroguard.errors import ConfigError, InsecureEnvironment
from nitroguard.findings import Finding, Status
from nitroguard.nsm import ReadOnlyNsm

__all__ = [
    "evaluate",
    "require_secure_environment",
    "run",
    "run_parent",
    "select_checks",
]

log = logging.getLogger("nitroguard.audit")  # the pre-_-module name users filter on


class _Named(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def area(self) -> str: ...


_C = TypeVar("_C", bound=_Named)


def select_checks(checks: Sequence[_C], only: Iterable[str] | None) -> tuple[_C, ...]:
    """Keep the checks named in `only` (ids like ``RNG-1`` or area prefixes like ``TIME``).

    Raises:
        ConfigError: a name matches no check.
    """
    if only is None:
        return tuple(checks)
    wanted = [w.strip().upper() for w in only if w.strip()]
    for name in wanted:
        if not any(name in (c.id, c.area) for c in checks):
            known = ", ".join(c.id for c in checks)
            raise ConfigError(f"unknown check {name!r} (known: {known})")
    return tuple(c for c in checks if any(name in (c.id, c.area) for name in wanted))


def _outside(finding: Finding) -> Finding:
    # Outside an enclave the enclave checks are not wrong, just not applicable: say so
    # plainly with skip instead of a wall of failures (or of misleading passes), but
    # keep what the check would have said.
    if finding.status is Status.SKIP:
        return finding
    return Finding(
        finding.id,
        finding.title,
        Status.SKIP,
        f"outside a Nitro Enclave (would {finding.status.value}): {finding.evidence}",
        finding.remediation,
    )


def evaluate(
    facts: Facts, checks: Sequence[Check] = DEFAULT, options: Options | None = None
) -> list[Finding]:
    """Run pure checks over already gathered facts.

    Args:
        facts: the snapshot from `nitroguard.audit._facts.gather`.
        checks: the checks to run.
        options: thresholds (default `Options()`).

    Returns:
        One finding per check, in order; outside an enclave (see ENV-1) the
        enclave-only checks report skip instead of warn/fail.
    """
    from nitroguard.audit._checks_rng_time import enclave_signals

    options = options if options is not None else Options()
    # An emulator handle is no evidence of an enclave (ENV-1 skips), but whoever gave
    # one wants the enclave checks judged against it, as they would be inside.
    inside = bool(enclave_signals(facts)) or facts.nsm is not None
    findings = []
    for check in checks:
        finding = check.func(facts, options)
        if check.enclave_only and not inside:
            finding = _outside(finding)
        findings.append(finding)
    return findings


def run(
    probe: SystemReader | None = None,
    nsm: ReadOnlyNsm | None = None,
    checks: Sequence[Check] = DEFAULT,
    *,
    only: Iterable[str] | None = None,
    roots: Sequence[x509.Certificate] | None = None,
    verifier: Verifier | None = None,
    options: Options | None = None,
) -> list[Finding]:
    """Audit the environment and return one finding per check.

    Args:
        probe: where facts come from (default: ``SystemReader("/")``, this machine).
        nsm: an NSM handle (`nitroguard.nsm.Nsm` or the emulator) for the NSM-backed
            checks (NSM-2's DescribeNSM, ATT-2, ATT-7, TIME-3's attested time).
        checks: the checks to run (default: all).
        only: ids or area prefixes to keep (``["RNG-1", "TIME"]``).
        roots: trust anchors for the self-attestation (None: the pinned AWS root).
        verifier: a ready `nitroguard.attestation.Verifier` (overrides `roots`).
        options: thresholds.

    Returns:
        The findings, in check order.

    Raises:
        ConfigError: `only` names an unknown check.
    """
    selected = select_checks(checks, only)
    probe = probe if probe is not None else SystemReader("/")
    facts = gather(probe, nsm, roots=roots, verifier=verifier)
    return evaluate(facts, selected, options)


def require_secure_environment(
    probe: SystemReader | None = None,
    nsm: ReadOnlyNsm | None = None,
    checks: Sequence[Check] = DEFAULT,
    *,
    waive: frozenset[str] | set[str] = frozenset(),
    roots: Sequence[x509.Certificate] | None = None,
    verifier: Verifier | None = None,
    options: Options | None = None,
    logger: logging.Logger | None = None,
) -> list[Finding]:
    """Fail closed: raise unless every check passes (warnings are logged).

    Call it at enclave start-up before generating keys or trusting the time. Running
    outside a Nitro Enclave fails too (ENV-1), unless ``"ENV-1"`` is waived, which
    is the explicit switch for local development. Inside an enclave, calling it
    without `nsm` fails on NSM-2 (the NSM-backed checks could not run) unless
    ``"NSM-2"`` is waived.

    Args:
        probe: where facts come from (default: this machine).
        nsm: the NSM handle (e.g. ``nitroguard.nsm.open()``); required inside an enclave.
        checks: the checks to run.
        waive: check ids whose failure is accepted; each waiver is logged at WARNING.
        roots: trust anchors for the self-attestation (None: the pinned AWS root).
        verifier: a ready verifier (overrides `roots`).
        options: thresholds.
        logger: where warnings and waivers go (default: this module's logger).

    Returns:
        All findings, when nothing unwaived failed.

    Raises:
        InsecureEnvironment: some check failed; `.findings` lists the failing ones.
        ConfigError: `waive` names an unknown check id.
    """
    out = logger if logger is not None else log
    known = {c.id for c in checks}
    unknown = sorted(set(waive) - known)
    if unknown:
        raise ConfigError(f"cannot waive unknown check ids: {', '.join(unknown)}")
    findings = run(probe, nsm, checks, roots=roots, verifier=verifier, options=options)
    inside = any(f.id == ENV_ID and f.status is Status.PASS for f in findings)
    failing: list[Finding] = []
    for finding in findings:
        bad = (
            finding.status is Status.FAIL
            or (finding.id == ENV_ID and finding.status is not Status.PASS)
            # Inside an enclave without an NSM handle, DescribeNSM, the debug-mode
            # self-attestation and the PCR locks were never checked: fail closed.
            or (finding.id == "NSM-2" and inside and nsm is None)
        )
        if finding.id in waive:
            if bad:
                out.warning(
                    "audit: WAIVED %s (%s) %s: %s",
                    finding.id,
                    finding.title,
                    finding.status.value,
                    finding.evidence,
                )
            else:
                out.warning(
                    "audit: waiver for %s unused (status %s)", finding.id, finding.status.value
                )
            continue
        if bad:
            # ENV-1 (skip outside an enclave) and NSM-2 (warn without a handle) are
            # fatal here: list them as the failures they are for this caller.
            failing.append(dataclasses.replace(finding, status=Status.FAIL))
        elif finding.status is Status.WARN:
            out.warning("audit: %s %s: %s", finding.id, finding.title, finding.evidence)
    if failing:
        ids = ", ".join(f.id for f in failing)
        raise InsecureEnvironment(
            f"insecure environment: {ids} failed", findings=failing, failed=[f.id for f in failing]
        )
    return findings


def run_parent(
    probe: SystemReader | None = None,
    enclaves: Sequence[EnclaveInfo] | bytes | str | None = None,
    expect_cid: int | None = None,
    *,
    checks: Sequence[ParentCheck] = PARENT_CHECKS,
    only: Iterable[str] | None = None,
) -> list[Finding]:
    """Audit the parent instance and return one finding per parent-side check.

    Run it on the parent EC2 instance (no NSM needed). It never runs ``nitro-cli``:
    pass its output. For example::

        out = subprocess.run(["nitro-cli", "describe-enclaves"], capture_output=True,
                             check=True).stdout
        findings = run_parent(enclaves=out, expect_cid=16)

    Args:
        probe: where files come from (default: ``SystemReader("/")``, this machine).
        enclaves: the output of ``nitro-cli describe-enclaves`` (JSON bytes or text,
            or already parsed `EnclaveInfo` entries); None skips ATT-2 and VS-5.
        expect_cid: the enclave CID the operator proxies to (VS-5).
        checks: the checks to run (default: CPU-2, ATT-2, VS-5, ALLOC-1).
        only: ids or area prefixes to keep (``["CPU-2", "VS"]``).

    Returns:
        The findings, in check order.

    Raises:
        ConfigError: `only` names an unknown check; `expect_cid` is not an enclave
            CID or is given without `enclaves`; `enclaves` is malformed JSON
            (reason `malformed_describe_enclaves`).
    """
    selected = select_checks(checks, only)
    if expect_cid is not None:
        expect_cid = parse_cid(expect_cid)
        if enclaves is None:
            raise ConfigError(
                "an expected CID needs the describe-enclaves output to compare it with"
            )
    parsed: tuple[EnclaveInfo, ...] | None
    if enclaves is None:
        parsed = None
    elif isinstance(enclaves, bytes | str):
        parsed = parse_describe_enclaves(enclaves)
    else:
        parsed = tuple(enclaves)
    probe = probe if probe is not None else SystemReader("/")
    facts = gather_parent(probe, parsed, expect_cid)
    return [check.func(facts) for check in selected]
