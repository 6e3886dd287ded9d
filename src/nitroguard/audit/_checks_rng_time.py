"""Checks ENV-1, RNG-1..5, TIME-1..4 and CPU-1: pure functions of `Facts`.

Each is registered with `@check(id, title)` (see `nitroguard.audit._check`), the one
place its title is written. Evidence names the file read and the exact value seen.
"""

from __future__ import annotations

import datetime as dt

from nitroguard._kernel import (
    KVM_CLOCK,
    MIN_RNG_KERNEL,
    grade_clock,
    grade_mitigations,
    grade_trust_flags,
    parse_kernel_version,
    version_text,
)
from nitroguard.audit._check import (
    _KERNEL_NOTE,
    ENV_ID,
    NSM_HWRNG,
    PCR_NOTE,
    Options,
    _cmdline,
    check,
    title_of,
)
from nitroguard.audit._facts import Facts, first_present
from nitroguard.findings import Finding, Status

__all__ = ["enclave_signals"]


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


@check(ENV_ID, "Running inside a Nitro Enclave", enclave_only=False)
def check_env(facts: Facts, options: Options) -> Finding:
    """ENV-1: are we inside a Nitro Enclave at all?"""
    title = title_of(ENV_ID)
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


@check("RNG-1", "Kernel hwrng is nsm-hwrng")
def check_rng1(facts: Facts, options: Options) -> Finding:
    """RNG-1: the kernel's current hwrng is the NSM's."""
    title = title_of("RNG-1")
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


@check("RNG-2", "CRNG not seeded by CPU RNG or bootloader alone")
def check_rng2(facts: Facts, options: Options) -> Finding:
    """RNG-2: neither the CPU RNG nor a bootloader seed may initialise the CRNG alone."""
    title = title_of("RNG-2")
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


@check("RNG-3", f"Kernel >= {version_text(MIN_RNG_KERNEL)} (2022 RNG rework)")
def check_rng3(facts: Facts, options: Options) -> Finding:
    """RNG-3: a kernel with the 2022 RNG rework (>= 5.17.12)."""
    want = version_text(options.min_kernel)
    title = title_of("RNG-3").replace(version_text(MIN_RNG_KERNEL), want)
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


@check("RNG-4", "CRNG initialised before keys are made")
def check_rng4(facts: Facts, options: Options) -> Finding:
    """RNG-4: the CRNG is initialised (non-blocking getrandom succeeds)."""
    title = title_of("RNG-4")
    fix = (
        "Do not generate keys, nonces or tokens yet: wait with a blocking getrandom() (with a "
        "timeout) until the CRNG is seeded; make sure nsm-hwrng is active (RNG-1), or seed "
        "it from the NSM with nitroguard.audit._entropy.seed_from_nsm()."
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


@check("RNG-5", "hwrng entropy is credited (rng_quality > 0)")
def check_rng5(facts: Facts, options: Options) -> Finding:
    """RNG-5: hwrng output is credited as entropy (quality > 0)."""
    title = title_of("RNG-5")
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


@check("TIME-1", "Clocksource is kvm-clock")
def check_time1(facts: Facts, options: Options) -> Finding:
    """TIME-1: the clocksource is kvm-clock."""
    title = title_of("TIME-1")
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


@check("TIME-2", "Command line keeps kvm-clock")
def check_time2(facts: Facts, options: Options) -> Finding:
    """TIME-2: the command line does not disable or override kvm-clock."""
    title = title_of("TIME-2")
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


@check("TIME-3", "Wall clock is sane")
def check_time3(facts: Facts, options: Options) -> Finding:
    """TIME-3: the wall clock is sane (after the build date; matches the attested time)."""
    title = title_of("TIME-3")
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


@check("TIME-4", "PTP hardware clock present")
def check_time4(facts: Facts, options: Options) -> Finding:
    """TIME-4: a PTP hardware clock is available to discipline the clock."""
    title = title_of("TIME-4")
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


@check("CPU-1", "CPU vulnerabilities mitigated")
def check_cpu1(facts: Facts, options: Options) -> Finding:
    """CPU-1: no unmitigated CPU vulnerability, no mitigations=off."""
    title = title_of("CPU-1")
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
