"""The environment checks: pure functions from `Facts` to one `Finding` each.

Each check cites its id in ``../shared/spec/threat-checklist.md``. Evidence always
names the file read and the exact value seen (``repr``, so a stray newline or space
is visible); remediations that touch the kernel command line say that PCR0 and PCR1
move, because the command line is part of the measured EIF.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

from nitroguard._kernel import (
    KVM_CLOCK,
    MIN_RNG_KERNEL,
    Cmdline,
    NsmDriver,
    grade_clock,
    grade_mitigations,
    grade_trust_flags,
    kaslr_disabled,
    nsm_driver,
    parse_cmdline,
    parse_kernel_config,
    parse_kernel_version,
    version_text,
)
from nitroguard.audit.facts import Facts, first_present
from nitroguard.findings import Finding, Status
from nitroguard.nsm import NsmDescription

__all__ = [
    "AREAS",
    "DEFAULT",
    "ENV_ID",
    "PCR_NOTE",
    "Check",
    "Options",
]

ENV_ID = "ENV-1"

#: Appended to every remediation that changes the kernel command line or the kernel.
PCR_NOTE = (
    "This changes the kernel command line, which is measured: PCR0 and PCR1 move, so "
    "update every attestation policy and KMS key policy that pins them at the same time."
)
_KERNEL_NOTE = (
    "A new kernel changes the EIF measurement: PCR0 and PCR1 move, so update attestation "
    "and KMS key policies together."
)

#: Display order and names of the areas (the CLI groups findings by these).
AREAS = {
    "ENV": "environment",
    "RNG": "randomness",
    "TIME": "time",
    "CPU": "CPU side channels",
    "MEM": "memory",
    "NSM": "NSM driver",
    "ATT": "attestation",
}

NSM_HWRNG = "nsm-hwrng"
ZERO_PCR = bytes(48)


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """Thresholds used by the checks.

    Attributes:
        min_kernel: RNG-3's minimum kernel (veil's floor, the 2022 RNG rework).
        max_clock_skew: TIME-3 fails when the wall clock differs from the attested
            time by more than this many seconds.
        warn_clock_skew: TIME-3 warns above this many seconds.
    """

    min_kernel: tuple[int, int, int] = MIN_RNG_KERNEL
    max_clock_skew: float = 10.0
    warn_clock_skew: float = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """One registered check.

    Attributes:
        id: the checklist id it reports.
        title: the finding title.
        func: the pure check.
        enclave_only: outside a Nitro Enclave its warn/fail is reported as skip.
    """

    id: str
    title: str
    func: Callable[[Facts, Options], Finding]
    enclave_only: bool = True

    @property
    def area(self) -> str:
        """The id prefix, e.g. ``"RNG"``."""
        return self.id.split("-", 1)[0]


def _cmdline(facts: Facts) -> Cmdline | None:
    return None if facts.cmdline.raw is None else parse_cmdline(facts.cmdline.raw)


# --- environment -------------------------------------------------------------------


def enclave_signals(facts: Facts) -> list[str]:
    """The evidence that this is a Nitro Enclave (empty when there is none)."""
    signals = []
    if facts.nsm is not None and facts.nsm_is_device:
        signals.append("an NSM device handle was given")
    if facts.dev_nsm is not None:
        signals.append(f"{facts.dev_nsm.path} exists")
    for read in (*facts.rng_current, *facts.rng_available):
        if read.value is not None and NSM_HWRNG in read.value.split():
            signals.append(f"{read.path} lists {NSM_HWRNG}")
            break
    if facts.nsm_virtio:
        signals.append(f"NSM virtio device (id 0x21) at {facts.nsm_virtio[0]}")
    return signals


def check_env(facts: Facts, options: Options) -> Finding:
    """ENV-1: are we inside a Nitro Enclave at all?"""
    title = "Running inside a Nitro Enclave"
    signals = enclave_signals(facts)
    if signals:
        return Finding(ENV_ID, title, Status.PASS, "; ".join(signals))
    handle = (
        "an emulator NSM handle (not evidence of an enclave)"
        if facts.nsm is not None
        else "no NSM handle"
    )
    looked = (
        "/dev/nsm absent, no nsm-hwrng in hw_random, no NSM virtio device (id 0x21), "
        f"{handle} (root {facts.root})"
    )
    return Finding(
        ENV_ID,
        title,
        Status.SKIP,
        f"not a Nitro Enclave: {looked}; enclave checks are reported as skip",
        "Run the audit inside the enclave (or pass --nsm for the emulator). An enclave "
        "application must refuse to start here: require_secure_environment() fails unless "
        "ENV-1 is explicitly waived for development.",
    )


# --- randomness (§2.1) ---------------------------------------------------------------


def check_rng1(facts: Facts, options: Options) -> Finding:
    """RNG-1: the kernel's current hwrng is the NSM's."""
    title = "Kernel hwrng is nsm-hwrng"
    present = [r for r in facts.rng_current if r.raw is not None]
    evidence = "; ".join(r.describe() for r in facts.rng_current)
    fix = (
        "Boot a kernel whose NSM driver registers nsm-hwrng (AWS sdk-bootstrap 6.6.x or "
        "Linux >= 6.8 with CONFIG_NSM), and select it at boot: "
        f"echo {NSM_HWRNG} > /sys/class/misc/hw_random/rng_current. Refuse to start otherwise."
    )
    if present:
        values = {r.value for r in present}
        if values == {NSM_HWRNG}:
            return Finding("RNG-1", title, Status.PASS, evidence)
        return Finding("RNG-1", title, Status.FAIL, evidence, fix)
    available = first_present(facts.rng_available)
    evidence += "; " + available.describe()
    if available.value is not None and NSM_HWRNG in available.value.split():
        return Finding(
            "RNG-1",
            title,
            Status.WARN,
            evidence + " (nsm-hwrng registered, but the current selection cannot be read)",
            f"Make rng_current readable and confirm it is {NSM_HWRNG}; " + fix,
        )
    return Finding("RNG-1", title, Status.FAIL, evidence, fix)


def check_rng2(facts: Facts, options: Options) -> Finding:
    """RNG-2: neither the CPU RNG nor a bootloader seed may initialise the CRNG alone."""
    title = "CRNG not seeded by CPU RNG or bootloader alone"
    fix = (
        "Put random.trust_cpu=off random.trust_bootloader=off on the enclave kernel command "
        "line (the AWS default has random.trust_cpu=on). " + PCR_NOTE
    )
    cmdline = _cmdline(facts)
    if cmdline is None:
        return Finding("RNG-2", title, Status.FAIL, facts.cmdline.describe(), fix)
    verdict = grade_trust_flags(cmdline)
    evidence = f"{facts.cmdline.path}: {verdict.evidence}"
    if verdict.ok:
        return Finding("RNG-2", title, Status.PASS, evidence)
    return Finding("RNG-2", title, Status.FAIL, evidence, fix)


def check_rng3(facts: Facts, options: Options) -> Finding:
    """RNG-3: a kernel with the 2022 RNG rework (>= 5.17.12)."""
    want = version_text(options.min_kernel)
    title = f"Kernel >= {want} (2022 RNG rework)"
    fix = (
        f"Use a kernel >= {want}; in practice the current AWS sdk-bootstrap 6.6 LTS kernel "
        f"(the nitro-cli default blob is 4.14). {_KERNEL_NOTE}"
    )
    release = facts.kernel_release
    evidence = f"{facts.kernel_release_source}: {release!r}"
    if release is None:
        return Finding("RNG-3", title, Status.WARN, evidence, "Kernel release unknown. " + fix)
    version = parse_kernel_version(release)
    if version is None:
        return Finding(
            "RNG-3", title, Status.WARN, evidence + " (not a version)", "Cannot parse. " + fix
        )
    if version >= options.min_kernel:
        return Finding("RNG-3", title, Status.PASS, evidence)
    return Finding("RNG-3", title, Status.FAIL, evidence, fix)


def check_rng4(facts: Facts, options: Options) -> Finding:
    """RNG-4: the CRNG is initialised (non-blocking getrandom succeeds)."""
    title = "CRNG initialised before keys are made"
    fix = (
        "Do not generate keys, nonces or tokens yet: wait with a blocking getrandom() (with a "
        "timeout) until the CRNG is seeded; make sure nsm-hwrng is active (RNG-1), or seed "
        "it from the NSM with nitroguard.audit.entropy.seed_from_nsm()."
    )
    ready = facts.getrandom_ready
    if ready is None:
        return Finding(
            "RNG-4",
            title,
            Status.SKIP,
            "getrandom(1, GRND_NONBLOCK): not observable"
            + (" (snapshot root, not the running system)" if not facts.live else ""),
        )
    if ready:
        return Finding("RNG-4", title, Status.PASS, "getrandom(1, GRND_NONBLOCK) succeeded")
    return Finding(
        "RNG-4", title, Status.FAIL, "getrandom(1, GRND_NONBLOCK) failed with EAGAIN", fix
    )


def check_rng5(facts: Facts, options: Options) -> Finding:
    """RNG-5: hwrng output is credited as entropy (quality > 0)."""
    title = "hwrng entropy is credited (rng_quality > 0)"
    read = first_present(facts.rng_quality)
    evidence = read.describe()
    fix = (
        "The hwrng must have a non-zero quality so its output is credited; nsm-hwrng sets "
        "1000. Check that no boot script writes 0 to rng_quality and that rng_current is "
        f"{NSM_HWRNG}."
    )
    if read.raw is None:
        if all(r.absent for r in facts.rng_quality):
            return Finding("RNG-5", title, Status.SKIP, evidence + " (not exported by this kernel)")
        return Finding("RNG-5", title, Status.WARN, evidence, fix)
    try:
        quality = int(read.value or "")
    except ValueError:
        return Finding("RNG-5", title, Status.WARN, evidence + " (not an integer)", fix)
    if quality > 0:
        return Finding("RNG-5", title, Status.PASS, evidence)
    return Finding("RNG-5", title, Status.FAIL, evidence, fix)


# --- time (§2.5, §2.6) -----------------------------------------------------------------


def check_time1(facts: Facts, options: Options) -> Finding:
    """TIME-1: the clocksource is kvm-clock."""
    title = "Clocksource is kvm-clock"
    evidence = facts.clocksource.describe()
    if facts.clocksource.value == KVM_CLOCK:
        return Finding("TIME-1", title, Status.PASS, evidence)
    evidence += "; " + facts.clocksource_available.describe()
    available = (facts.clocksource_available.value or "").split()
    if KVM_CLOCK in available:
        fix = (
            "Add clocksource=kvm-clock to the kernel command line (since Linux 5.1 the kernel "
            "prefers tsc when invariant TSC is exposed). " + PCR_NOTE + " Alternatively write "
            "kvm-clock to current_clocksource at boot, and refuse to start if that fails."
        )
    else:
        fix = (
            "kvm-clock is not available: build the kernel with CONFIG_KVM_GUEST=y and "
            "CONFIG_PARAVIRT_CLOCK=y and remove no-kvmclock from the command line. " + _KERNEL_NOTE
        )
    return Finding("TIME-1", title, Status.FAIL, evidence, fix)


def check_time2(facts: Facts, options: Options) -> Finding:
    """TIME-2: the command line does not disable or override kvm-clock."""
    title = "Command line keeps kvm-clock"
    fix = (
        "Remove no-kvmclock and any clocksource= other than kvm-clock from the kernel command "
        "line (clocksource=kvm-clock is recommended). " + PCR_NOTE
    )
    cmdline = _cmdline(facts)
    if cmdline is None:
        return Finding("TIME-2", title, Status.FAIL, facts.cmdline.describe(), fix)
    verdict = grade_clock(cmdline)
    evidence = f"{facts.cmdline.path}: {verdict.evidence}"
    if verdict.problems:
        return Finding("TIME-2", title, Status.FAIL, evidence, fix)
    return Finding("TIME-2", title, Status.PASS, evidence)


def check_time3(facts: Facts, options: Options) -> Finding:
    """TIME-3: the wall clock is sane (after the build date; matches the attested time)."""
    title = "Wall clock is sane"
    fix = (
        "Fix the clock source (TIME-1/TIME-2: kvm-clock), never set the enclave's time from "
        "the parent, and refuse to start until the clock is sane."
    )
    if facts.wall_time is None:
        return Finding(
            "TIME-3",
            title,
            Status.SKIP,
            "wall clock not observable (snapshot root, not the running system)",
        )
    wall = dt.datetime.fromtimestamp(facts.wall_time, tz=dt.UTC)
    evidence = f"wall clock {wall.isoformat(timespec='seconds')}"
    if wall < facts.build_date:
        return Finding(
            "TIME-3",
            title,
            Status.FAIL,
            f"{evidence} is before this build ({facts.build_date.date().isoformat()})",
            fix,
        )
    if facts.nsm is None:
        return Finding(
            "TIME-3",
            title,
            Status.PASS,
            f"{evidence} is after this build; not compared with attested time (no NSM given)",
        )
    attestation = facts.nsm.attestation
    if attestation is None:
        return Finding(
            "TIME-3",
            title,
            Status.WARN,
            f"{evidence}; attested time unavailable: {facts.nsm.attestation_error}",
            "Make the NSM self-attestation work (see ATT-2), then compare again.",
        )
    offset = attestation.clock_offset()
    attested = attestation.time.isoformat(timespec="milliseconds")
    if offset is None:  # pragma: no cover - wall_time is known here, so offsets are too
        return Finding("TIME-3", title, Status.WARN, f"{evidence}; attested {attested}", fix)
    evidence = (
        f"{evidence}; attested time {attested} from a fresh nonce-bound attestation; "
        f"offset {offset:+.3f} s"
    )
    if abs(offset) > options.max_clock_skew:
        return Finding("TIME-3", title, Status.FAIL, evidence, fix)
    if abs(offset) > options.warn_clock_skew:
        return Finding(
            "TIME-3",
            title,
            Status.WARN,
            evidence,
            "Discipline the clock from the KVM PTP clock (TIME-4), not from the parent.",
        )
    return Finding("TIME-3", title, Status.PASS, evidence)


def check_time4(facts: Facts, options: Options) -> Finding:
    """TIME-4: a PTP hardware clock is available to discipline the clock."""
    title = "PTP hardware clock present"
    found = [n.describe() for n in facts.ptp_nodes]
    found += [r.describe() for r in facts.ptp_clocks if r.raw is not None]
    if found:
        return Finding("TIME-4", title, Status.PASS, "; ".join(found))
    return Finding(
        "TIME-4",
        title,
        Status.WARN,
        "no /dev/ptp0, /dev/ptp_ena or /sys/class/ptp/* clock",
        "Build the kernel with CONFIG_PTP_1588_CLOCK_KVM=y and sync with chrony "
        "'refclock PHC /dev/ptp0'; never sync time from the parent (NTP through the parent "
        "or a set-time message makes it a time authority).",
    )


# --- CPU (§2.3) ----------------------------------------------------------------------------


def check_cpu1(facts: Facts, options: Options) -> Finding:
    """CPU-1: no unmitigated CPU vulnerability, no mitigations=off."""
    title = "CPU vulnerabilities mitigated"
    fix_cmdline = "Remove mitigations=off and per-vulnerability off switches. " + PCR_NOTE
    cmdline = _cmdline(facts)
    failing: list[str] = []
    warning: list[str] = []
    if cmdline is not None:
        verdict = grade_mitigations(cmdline)
        if verdict.all_off:
            failing.append(f"{facts.cmdline.path}: mitigations=off")
        warning.extend(f"{facts.cmdline.path}: {switch}" for switch in verdict.switches)
    if facts.vulnerabilities is None:
        warning.append("/sys/devices/system/cpu/vulnerabilities: absent (kernel too old?)")
    else:
        for read in facts.vulnerabilities:
            value = read.value
            if value is None:
                warning.append(read.describe())
            elif value.startswith("Vulnerable"):
                failing.append(read.describe())
            elif "vulnerable" in value.lower():
                warning.append(read.describe())
    fix = (
        "Use a current kernel with every mitigation on (the 4.14 blob predates many of them) "
        "and keep CPU microcode current; if the cmdline disables mitigations: " + fix_cmdline
    )
    if failing:
        return Finding("CPU-1", title, Status.FAIL, "; ".join(failing + warning), fix)
    if warning:
        return Finding("CPU-1", title, Status.WARN, "; ".join(warning), fix)
    count = len(facts.vulnerabilities or ())
    return Finding(
        "CPU-1",
        title,
        Status.PASS,
        f"/sys/devices/system/cpu/vulnerabilities: {count} entries, none Vulnerable; "
        "no mitigations=off",
    )


# --- memory (§2.4) ----------------------------------------------------------------------------


def check_mem_swap(facts: Facts, options: Options) -> Finding:
    """MEM-SWAP: no swap (enclave memory must never be paged anywhere)."""
    title = "Swap is off"
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


def check_mem2(facts: Facts, options: Options) -> Finding:
    """MEM-2: the OOM killer must not leave a degraded enclave running (vm.panic_on_oom)."""
    title = "Out-of-memory stops the enclave (vm.panic_on_oom)"
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


def check_mem_overcommit(facts: Facts, options: Options) -> Finding:
    """MEM-OVERCOMMIT: report the overcommit mode; 'always' (1) warns."""
    title = "Memory overcommit mode"
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


def check_mem3(facts: Facts, options: Options) -> Finding:
    """MEM-3: know the kernel's hardening gaps: KASLR (``nokaslr``, CONFIG_RANDOMIZE_BASE)."""
    title = "Kernel hardening: KASLR on"
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


def check_nsm1(facts: Facts, options: Options) -> Finding:
    """NSM-1: a maintained NSM driver generation."""
    title = "Maintained NSM driver"
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


def check_nsm2(facts: Facts, options: Options) -> Finding:
    """NSM-2: /dev/nsm is a character device and DescribeNSM answers."""
    title = "/dev/nsm present and DescribeNSM answers"
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


def check_nsm3(facts: Facts, options: Options) -> Finding:
    """NSM-3: /dev/nsm is not world-accessible."""
    title = "/dev/nsm is not world-accessible"
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


def check_att2(facts: Facts, options: Options) -> Finding:
    """ATT-2: a fresh self-attestation shows this is not a debug-mode enclave."""
    title = "Not a debug-mode enclave (self-attestation)"
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


def check_att7(facts: Facts, options: Options) -> Finding:
    """ATT-7: application PCRs (16-31) that were extended are locked."""
    title = "Extended application PCRs are locked"
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


DEFAULT: tuple[Check, ...] = (
    Check(ENV_ID, "Running inside a Nitro Enclave", check_env, enclave_only=False),
    Check("RNG-1", "Kernel hwrng is nsm-hwrng", check_rng1),
    Check("RNG-2", "CRNG not seeded by CPU RNG or bootloader alone", check_rng2),
    Check("RNG-3", "Kernel >= 5.17.12 (2022 RNG rework)", check_rng3),
    Check("RNG-4", "CRNG initialised before keys are made", check_rng4),
    Check("RNG-5", "hwrng entropy is credited (rng_quality > 0)", check_rng5),
    Check("TIME-1", "Clocksource is kvm-clock", check_time1),
    Check("TIME-2", "Command line keeps kvm-clock", check_time2),
    Check("TIME-3", "Wall clock is sane", check_time3),
    Check("TIME-4", "PTP hardware clock present", check_time4),
    Check("CPU-1", "CPU vulnerabilities mitigated", check_cpu1),
    Check("MEM-SWAP", "Swap is off", check_mem_swap),
    Check("MEM-2", "Out-of-memory stops the enclave (vm.panic_on_oom)", check_mem2),
    Check("MEM-OVERCOMMIT", "Memory overcommit mode", check_mem_overcommit),
    Check("MEM-3", "Kernel hardening: KASLR on", check_mem3),
    Check("NSM-1", "Maintained NSM driver", check_nsm1),
    Check("NSM-2", "/dev/nsm present and DescribeNSM answers", check_nsm2),
    Check("NSM-3", "/dev/nsm is not world-accessible", check_nsm3),
    Check("ATT-2", "Not a debug-mode enclave (self-attestation)", check_att2),
    Check("ATT-7", "Extended application PCRs are locked", check_att7),
)
