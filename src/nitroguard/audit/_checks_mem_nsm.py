"""Checks MEM-*, NSM-1..3, ATT-2 and ATT-7: pure functions of `Facts`.

Each is registered with `@check(id, title)` (see `nitroguard.audit._check`), the one
place its title is written. Evidence names the file read and the exact value seen.
"""

from __future__ import annotations

from nitroguard._kernel import (
    NsmDriver,
    kaslr_disabled,
    nsm_driver,
    parse_kernel_config,
    parse_kernel_version,
)
from nitroguard.audit._check import (
    _KERNEL_NOTE,
    ZERO_PCR,
    Options,
    _cmdline,
    check,
    title_of,
)
from nitroguard.audit._facts import Facts
from nitroguard.findings import Finding, Status
from nitroguard.nsm import NsmDescription

__all__: list[str] = []


# --- memory (§2.4) ----------------------------------------------------------------------------


@check("MEM-SWAP", "Swap is off")
def check_mem_swap(facts: Facts, options: Options) -> Finding:
    """MEM-SWAP: no swap (enclave memory must never be paged anywhere)."""
    title = title_of("MEM-SWAP")
    fix = (
        "Remove every swap device (swapoff -a) and do not create any: an enclave has no "
        "disk, and swap backed by anything the parent serves would hand it enclave memory."
    )
    if facts.swaps.raw is not None:
        lines = [ln for ln in facts.swaps.raw.splitlines()[1:] if ln.strip()]
        if lines:
            devices = ", ".join(ln.split()[0] for ln in lines)
            return Finding(
                "MEM-SWAP", title, Status.FAIL, f"{facts.swaps.path}: active swap on {devices}", fix
            )
        return Finding("MEM-SWAP", title, Status.PASS, f"{facts.swaps.path}: header only (no swap)")
    if facts.meminfo_swap is not None:
        evidence = f"{facts.swaps.describe()}; /proc/meminfo SwapTotal: {facts.meminfo_swap}"
        if facts.meminfo_swap.split()[:1] == ["0"]:
            return Finding("MEM-SWAP", title, Status.PASS, evidence)
        return Finding("MEM-SWAP", title, Status.FAIL, evidence, fix)
    return Finding(
        "MEM-SWAP",
        title,
        Status.WARN,
        f"{facts.swaps.describe()}; /proc/meminfo has no SwapTotal",
        "Cannot tell whether swap is on. " + fix,
    )


@check("MEM-2", "Out-of-memory stops the enclave (vm.panic_on_oom)")
def check_mem2(facts: Facts, options: Options) -> Finding:
    """MEM-2: the OOM killer must not leave a degraded enclave running (vm.panic_on_oom)."""
    title = title_of("MEM-2")
    read = facts.panic_on_oom
    fix = (
        "Set vm.panic_on_oom=1 at boot (sysctl), or have init power off when a critical "
        "process dies: otherwise the OOM killer can kill the key-holding process while the "
        "rest keeps serving."
    )
    if read.raw is None:
        return Finding("MEM-2", title, Status.WARN, read.describe(), fix)
    if read.value in ("1", "2"):
        return Finding("MEM-2", title, Status.PASS, read.describe())
    return Finding("MEM-2", title, Status.WARN, read.describe(), fix)


@check("MEM-OVERCOMMIT", "Memory overcommit mode")
def check_mem_overcommit(facts: Facts, options: Options) -> Finding:
    """MEM-OVERCOMMIT: report the overcommit mode; 'always' (1) warns."""
    title = title_of("MEM-OVERCOMMIT")
    read = facts.overcommit_memory
    modes = {"0": "heuristic", "1": "always overcommit", "2": "strict accounting"}
    if read.raw is None:
        return Finding("MEM-OVERCOMMIT", title, Status.WARN, read.describe(), "Cannot tell.")
    mode = modes.get(read.value or "")
    evidence = f"{read.describe()} ({mode or 'unknown mode'})"
    if read.value in ("0", "2"):
        return Finding("MEM-OVERCOMMIT", title, Status.PASS, evidence)
    return Finding(
        "MEM-OVERCOMMIT",
        title,
        Status.WARN,
        evidence,
        "Use vm.overcommit_memory=0 or 2: with 1 every allocation succeeds and memory "
        "pressure from external inputs ends in the OOM killer instead of a clean error.",
    )


#: Kernel options MEM-3 reports: KASLR itself, then evidence for TIME-2's kernel side
#: (kvm-clock needs both) and for the NSM driver.
MEM3_OPTIONS = ("CONFIG_RANDOMIZE_BASE", "CONFIG_PARAVIRT_CLOCK", "CONFIG_KVM_GUEST", "CONFIG_NSM")


def _config_value(options: dict[str, str | None], name: str) -> str:
    if name not in options:
        return f"{name} absent"
    value = options[name]
    return f"{name} is not set" if value is None else f"{name}={value}"


@check("MEM-3", "Kernel hardening: KASLR on")
def check_mem3(facts: Facts, options: Options) -> Finding:
    """MEM-3: know the kernel's hardening gaps: KASLR (``nokaslr``, CONFIG_RANDOMIZE_BASE)."""
    title = title_of("MEM-3")
    fix = (
        "Build the enclave kernel with CONFIG_RANDOMIZE_BASE=y (the AWS enclave kernel "
        "configs leave it unset) and keep nokaslr off the command line, or accept the gap "
        "explicitly (waive MEM-3) and record why. " + _KERNEL_NOTE
    )
    parts: list[str] = []
    cmdline = _cmdline(facts)
    disabled = None if cmdline is None else kaslr_disabled(cmdline)
    if cmdline is None:
        parts.append(facts.cmdline.describe())
    elif disabled is not None:
        parts.append(f"{facts.cmdline.path} has {disabled}")
    else:
        parts.append(f"{facts.cmdline.path}: no nokaslr")
    config = facts.kernel_config
    status = Status.FAIL if disabled is not None else Status.PASS
    if config.raw is None:
        parts.append(config.describe())
        evidence = "; ".join(parts)
        if status is Status.FAIL:
            return Finding("MEM-3", title, status, evidence, fix)
        if config.absent:
            return Finding(
                "MEM-3",
                title,
                Status.SKIP,
                evidence + " (kernel built without CONFIG_IKCONFIG_PROC: no config to read; "
                "inspect the kernel config of the EIF build instead)",
            )
        return Finding("MEM-3", title, Status.WARN, evidence, "Kernel config unreadable. " + fix)
    parsed = parse_kernel_config(config.raw)
    shown = ", ".join(_config_value(parsed, name) for name in MEM3_OPTIONS)
    parts.append(f"{config.path} ({len(parsed)} options): {shown}")
    if parsed.get("CONFIG_RANDOMIZE_BASE") != "y":
        parts.append("KASLR absent: kernel addresses are fixed and known from the image")
        if status is Status.PASS:
            status = Status.WARN
    missing_clock = [
        name for name in ("CONFIG_PARAVIRT_CLOCK", "CONFIG_KVM_GUEST") if parsed.get(name) != "y"
    ]
    if missing_clock:
        parts.append(f"TIME-2 kernel side: {', '.join(missing_clock)} not =y (no kvm-clock)")
    evidence = "; ".join(parts)
    if status is Status.PASS:
        return Finding("MEM-3", title, status, evidence)
    return Finding("MEM-3", title, status, evidence, fix)


# --- NSM driver (§2.8) ----------------------------------------------------------------------


@check("NSM-1", "Maintained NSM driver")
def check_nsm1(facts: Facts, options: Options) -> Finding:
    """NSM-1: a maintained NSM driver generation."""
    title = title_of("NSM-1")
    release = facts.kernel_release
    parts = [f"{facts.kernel_release_source}: {release!r}", facts.misc_nsm_dev.describe()]
    evidence = "; ".join(parts)
    fix = (
        "Use the upstream driver: Linux >= 6.8 (drivers/misc/nsm.c) or AWS sdk-bootstrap's "
        "6.6 backport, and keep the kernel current for the 'misc: nsm' fixes. " + _KERNEL_NOTE
    )
    if (facts.misc_nsm_dev.value or "").split(":")[-1:] == ["147"]:
        return Finding(
            "NSM-1",
            title,
            Status.FAIL,
            evidence + " (fixed minor 147: the 2020-2021 out-of-tree nsm.ko)",
            fix,
        )
    version = parse_kernel_version(release) if release is not None else None
    if version is None:
        return Finding("NSM-1", title, Status.WARN, evidence + " (version unknown)", fix)
    driver = nsm_driver(version)
    note = f"{evidence} ({driver.value})"
    if driver is NsmDriver.AWS_BACKPORT:
        return Finding("NSM-1", title, Status.PASS, note)
    if driver is NsmDriver.UPSTREAM_FIXED:
        return Finding(
            "NSM-1",
            title,
            Status.PASS,
            f"{evidence} ({driver.value}; the Oct 2026 CBOR short-length fix may not be "
            "released yet: keep the kernel current)",
        )
    if driver is NsmDriver.OUT_OF_TREE:
        return Finding("NSM-1", title, Status.FAIL, note, fix)
    if driver is NsmDriver.UPSTREAM_CVE:
        return Finding(
            "NSM-1",
            title,
            Status.WARN,
            note,
            "Update to a kernel with 'misc: nsm: only unlock nsm_dev on post-lock error "
            "paths' (6.12.101, 6.18.42, 7.1.6 or later). " + _KERNEL_NOTE,
        )
    return Finding("NSM-1", title, Status.WARN, note, fix)  # NO_UPSTREAM (6.7)


def _describe_text(description: NsmDescription) -> str:
    locked = sorted(description.locked_pcrs)
    return (
        f"module_id={description.module_id}, version={description.version_string}, "
        f"max_pcrs={description.max_pcrs}, digest={description.digest}, "
        f"locked_pcrs={_ranges(locked)}"
    )


def _ranges(indices: list[int]) -> str:
    out: list[str] = []
    start = prev = None
    for i in [*indices, None]:
        if i is not None and prev is not None and i == prev + 1:
            prev = i
            continue
        if start is not None:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
        start = prev = i
    return ",".join(out)


@check("NSM-2", "/dev/nsm present and DescribeNSM answers")
def check_nsm2(facts: Facts, options: Options) -> Finding:
    """NSM-2: /dev/nsm is a character device and DescribeNSM answers."""
    title = title_of("NSM-2")
    fix = (
        "Refuse to start without a working NSM: /dev/nsm must be a character device created "
        "by the NSM driver and DescribeNSM must succeed before serving."
    )
    node = facts.dev_nsm
    parts = [node.describe() if node is not None else "/dev/nsm: absent"]
    status = Status.PASS
    if node is not None and node.kind != "char":
        status = Status.FAIL
    nsm = facts.nsm
    if nsm is None:
        parts.append("DescribeNSM not attempted (no NSM handle given)")
        if status is Status.PASS:
            status = Status.FAIL if node is None else Status.WARN
    elif nsm.description is None:
        parts.append(f"DescribeNSM failed: {nsm.describe_error}")
        status = Status.FAIL
    else:
        parts.append(f"DescribeNSM: {_describe_text(nsm.description)}")
        if node is None and status is Status.PASS:
            # The handle answers (emulator or non-standard path), but the device the
            # enclave's other code would open is missing.
            status = Status.WARN
        if nsm.description.digest != "SHA384" or nsm.description.max_pcrs != 32:
            parts.append("unexpected digest or max_pcrs (real NSM: SHA384, 32)")
            if status is Status.PASS:
                status = Status.WARN
    evidence = "; ".join(parts)
    if status is Status.PASS:
        return Finding("NSM-2", title, status, evidence)
    remediation = fix
    if nsm is None and node is not None:
        remediation = "Pass the NSM to the audit (nsm=..., --nsm device) so DescribeNSM is checked."
    return Finding("NSM-2", title, status, evidence, remediation)


@check("NSM-3", "/dev/nsm is not world-accessible")
def check_nsm3(facts: Facts, options: Options) -> Finding:
    """NSM-3: /dev/nsm is not world-accessible."""
    title = title_of("NSM-3")
    node = facts.dev_nsm
    if node is None:
        return Finding("NSM-3", title, Status.SKIP, "/dev/nsm: absent (see NSM-2)")
    evidence = node.describe()
    if node.mode & 0o006:
        return Finding(
            "NSM-3",
            title,
            Status.WARN,
            evidence + " (any process can extend/lock PCRs and request attestations)",
            "chmod 0600 /dev/nsm (owned by the one service that needs it) at boot, run other "
            "processes as other users, and never relay raw NSM requests for the parent or "
            "for users.",
        )
    return Finding("NSM-3", title, Status.PASS, evidence)


# --- attestation (§2.7) ---------------------------------------------------------------------


@check("ATT-2", "Not a debug-mode enclave (self-attestation)")
def check_att2(facts: Facts, options: Options) -> Finding:
    """ATT-2: a fresh self-attestation shows this is not a debug-mode enclave."""
    title = title_of("ATT-2")
    fix = (
        "Run the enclave without --debug-mode: debug enclaves report PCR0/1/2 as zero, expose "
        "their console to the parent, and must never hold production secrets."
    )
    if facts.nsm is None:
        return Finding(
            "ATT-2", title, Status.SKIP, "no NSM handle given: self-attestation not attempted"
        )
    attestation = facts.nsm.attestation
    if attestation is None:
        return Finding(
            "ATT-2",
            title,
            Status.FAIL,
            f"self-attestation failed: {facts.nsm.attestation_error}",
            "The NSM must produce a document that verifies against the pinned root and "
            "echoes our nonce; investigate the NSM and the trust roots.",
        )
    missing = [i for i in (0, 1, 2) if i not in attestation.pcrs]
    if missing:
        return Finding(
            "ATT-2",
            title,
            Status.FAIL,
            f"fresh verified document lacks PCR{','.join(map(str, missing))}",
            fix,
        )
    zero = [i for i in (0, 1, 2) if attestation.pcrs[i] == bytes(len(attestation.pcrs[i]))]
    shown = ", ".join(f"PCR{i}={attestation.pcrs[i].hex()[:16]}..." for i in (0, 1, 2))
    evidence = f"fresh nonce-bound document verified; {shown}"
    if len(zero) == 3:
        return Finding("ATT-2", title, Status.FAIL, evidence + " (all zero: debug mode)", fix)
    if zero:
        return Finding(
            "ATT-2",
            title,
            Status.WARN,
            evidence + f" (PCR{','.join(map(str, zero))} zero: unexpected)",
            "A production enclave has non-zero PCR0, PCR1 and PCR2; check how it was built.",
        )
    return Finding("ATT-2", title, Status.PASS, evidence)


@check("ATT-7", "Extended application PCRs are locked")
def check_att7(facts: Facts, options: Options) -> Finding:
    """ATT-7: application PCRs (16-31) that were extended are locked."""
    title = title_of("ATT-7")
    if facts.nsm is None:
        return Finding("ATT-7", title, Status.SKIP, "no NSM handle given: PCRs not read")
    nsm = facts.nsm
    fix = (
        "Lock every application PCR after extending it (LockPCR/LockPCRs) and before any "
        "attestation relies on it: an unlocked PCR can still be extended by other code, and "
        "unlocked PCRs are absent from attestation documents."
    )
    unlocked = [i for i, lock, value in nsm.app_pcrs if value != ZERO_PCR and not lock]
    locked = [i for i, lock, value in nsm.app_pcrs if value != ZERO_PCR and lock]
    parts = []
    if locked:
        parts.append(f"extended and locked: PCR{_ranges(locked)}")
    if unlocked:
        parts.append(f"extended but NOT locked: PCR{_ranges(unlocked)}")
    if not unlocked and not locked and nsm.app_pcrs:
        parts.append(f"PCR16-{nsm.app_pcrs[-1][0]} not extended")
    if nsm.pcr_error is not None:
        parts.append(nsm.pcr_error)
    evidence = "DescribePCR: " + "; ".join(parts)
    if unlocked:
        return Finding("ATT-7", title, Status.WARN, evidence, fix)
    if nsm.pcr_error is not None:
        return Finding(
            "ATT-7", title, Status.WARN, evidence, "DescribePCR failed; cannot verify locks."
        )
    return Finding("ATT-7", title, Status.PASS, evidence)
