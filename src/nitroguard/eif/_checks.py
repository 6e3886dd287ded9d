"""Static checks an image decides by itself (``../shared/spec/threat-checklist.md``).

The kernel command line is measured (PCR0/PCR1), so what it says about the CRNG
(RNG-2), the clock (TIME-2) and CPU mitigations (CPU-1) holds for every enclave
started from the image. The kernel version (RNG-3, NSM-1) comes from the x86
bzImage setup header when present (measured), else from the metadata (NOT attested:
anyone can edit it without changing a PCR).
"""

from __future__ import annotations

from collections.abc import Callable

from nitroguard.findings import Finding, Status

from ._reader import EifImage, parse_kernel_version

__all__ = ["kernel_params", "static_checks"]


def kernel_params(cmdline: str) -> list[tuple[str, str | None]]:
    """Split a kernel command line into ``(name, value)`` pairs as Linux does.

    Double quotes group words (``"a b"``); everything after a bare ``--`` goes to init,
    not to the kernel, so it is not returned. The kernel treats ``-`` and ``_`` in
    parameter names alike; names are normalised to ``_``.
    """
    params: list[tuple[str, str | None]] = []
    i, n = 0, len(cmdline)
    while i < n:
        while i < n and cmdline[i].isspace():
            i += 1
        if i >= n:
            break
        start, quoted = i, False
        while i < n and (quoted or not cmdline[i].isspace()):
            if cmdline[i] == '"':
                quoted = not quoted
            i += 1
        word = cmdline[start:i].replace('"', "")
        if word == "--":
            break
        name, sep, value = word.partition("=")
        params.append((name.replace("-", "_"), value if sep else None))
    return params


def _last(params: list[tuple[str, str | None]], name: str) -> tuple[bool, str | None]:
    """(present, value) of the last occurrence: the kernel applies them in order."""
    found, value = False, None
    for key, val in params:
        if key == name:
            found, value = True, val
    return found, value


def _kstrtobool(value: str | None) -> bool | None:
    """Linux ``kstrtobool``: y/Y/1/on -> True, n/N/0/off -> False, else None."""
    if not value:
        return None
    v = value.lower()
    if v[0] in "y1":
        return True
    if v[0] in "n0":
        return False
    if v.startswith("on"):
        return True
    if v.startswith("of"):
        return False
    return None


def _rng2(params: list[tuple[str, str | None]]) -> Finding:
    bad: list[str] = []
    seen: list[str] = []
    for name in ("random.trust_cpu", "random.trust_bootloader"):
        present, value = _last(params, name)
        verdict = _kstrtobool(value) if present else None
        seen.append(f"{name}={value}" if present else f"{name} absent")
        if verdict is not False:
            bad.append(name)
    title = "CRNG not seeded by the CPU RNG or the bootloader alone"
    evidence = "cmdline: " + ", ".join(seen)
    if bad:
        return Finding(
            "RNG-2",
            title,
            Status.FAIL,
            evidence + " (absent means trusted on kernels >= 6.2 and on "
            "RANDOM_TRUST_CPU/BOOTLOADER=y builds)",
            "add `random.trust_cpu=off random.trust_bootloader=off` to the cmdline "
            "(this changes PCR0/PCR1: update the pinned values and KMS policies)",
        )
    return Finding("RNG-2", title, Status.PASS, evidence)


def _time2(params: list[tuple[str, str | None]]) -> Finding:
    title = "kernel keeps kvm-clock"
    names = [k for k, _ in params]
    present, source = _last(params, "clocksource")
    if "no_kvmclock" in names:
        return Finding(
            "TIME-2",
            title,
            Status.FAIL,
            "cmdline contains `no-kvmclock`",
            "remove `no-kvmclock` and add `clocksource=kvm-clock`",
        )
    if present and source != "kvm-clock":
        return Finding(
            "TIME-2",
            title,
            Status.FAIL,
            f"cmdline selects clocksource={source}",
            "use `clocksource=kvm-clock`",
        )
    if present:
        return Finding("TIME-2", title, Status.PASS, "cmdline selects clocksource=kvm-clock")
    return Finding(
        "TIME-2",
        title,
        Status.WARN,
        "no `no-kvmclock`, but no `clocksource=` either: kernels >= 5.1 may pick tsc "
        "(kernel config not inspected)",
        "add `clocksource=kvm-clock` so the choice is measured",
    )


#: Parameters that switch off one CPU mitigation (kernel-parameters.txt). Like the
#: environment audit: ``mitigations=off`` (all of them) fails, these warn.
_MITIGATION_OFF_VALUES = {
    "pti": "off",
    "spectre_v2": "off",
    "spectre_v2_user": "off",
    "spectre_bhi": "off",
    "spec_store_bypass_disable": "off",
    "ssbd": "force-off",
    "mds": "off",
    "tsx_async_abort": "off",
    "mmio_stale_data": "off",
    "retbleed": "off",
    "l1tf": "off",
    "srbds": "off",
    "gather_data_sampling": "off",
    "spec_rstack_overflow": "off",
    "reg_file_data_sampling": "off",
}
_MITIGATION_OFF_FLAGS = frozenset(
    {
        "nopti",
        "nospectre_v1",
        "nospectre_v2",
        "nospec_store_bypass_disable",
        "nospectre_bhb",
        "noibrs",
        "noibpb",
        "nosmap",
        "nosmep",
    }
)


def _cpu1(params: list[tuple[str, str | None]]) -> Finding:
    title = "CPU vulnerability mitigations not disabled on the cmdline"
    _present, mitigations = _last(params, "mitigations")
    partial = [
        f"{k}={v}" if v is not None else k
        for k, v in params
        if k in _MITIGATION_OFF_FLAGS
        or (v is not None and v.lower() == _MITIGATION_OFF_VALUES.get(k))
    ]
    fix = "remove them; the parent shares the CPU with the enclave (changes PCR0/PCR1)"
    if (mitigations or "").lower() == "off":
        return Finding(
            "CPU-1",
            title,
            Status.FAIL,
            "cmdline has mitigations=off" + (f" and {' '.join(partial)}" if partial else ""),
            fix,
        )
    if partial:
        return Finding(
            "CPU-1",
            title,
            Status.WARN,
            "cmdline disables some mitigations: " + " ".join(partial),
            fix,
        )
    return Finding(
        "CPU-1",
        title,
        Status.PASS,
        "no mitigation-disabling parameter on the cmdline (runtime state of "
        "/sys/devices/system/cpu/vulnerabilities is checked by `nitroguard audit`)",
    )


def _kernel_source(image: EifImage) -> tuple[str | None, str]:
    if image.kernel_version:
        return image.kernel_version, "the kernel image itself (measured)"
    meta = image.metadata_kernel_version
    if meta:
        return meta, "metadata KernelVersion (NOT attested)"
    return None, ""


def _version_finding(
    image: EifImage,
    check_id: str,
    title: str,
    judge: Callable[[tuple[int, int, int]], tuple[Status, str]],
    remediation: str,
) -> Finding:
    text, origin = _kernel_source(image)
    if text is None:
        return Finding(
            check_id,
            title,
            Status.SKIP,
            "kernel version unknown: not found in the kernel image, no metadata KernelVersion",
            "check the kernel version of the build inputs",
        )
    version = parse_kernel_version(text)
    if version is None:
        return Finding(
            check_id,
            title,
            Status.SKIP,
            f"cannot parse kernel version {text!r} from {origin}",
            "check the kernel version of the build inputs",
        )
    status, why = judge(version)
    evidence = f"kernel {'.'.join(map(str, version))} from {origin}: {why}"
    claimed = image.metadata_kernel_version
    if image.kernel_version and claimed:
        claimed_version = parse_kernel_version(claimed)
        if claimed_version is not None and claimed_version != version:
            # The metadata is not attested; a mismatch means it was edited or is stale.
            evidence += f" (the unattested metadata claims {claimed!r})"
    return Finding(
        check_id,
        title,
        status,
        evidence,
        remediation if status is not Status.PASS else "",
    )


def _rng3(v: tuple[int, int, int]) -> tuple[Status, str]:
    if v >= (5, 17, 12):
        return Status.PASS, "at least 5.17.12 (the 2022 RNG rework)"
    return Status.FAIL, "older than 5.17.12 (the 2022 RNG rework)"


def _nsm1(v: tuple[int, int, int]) -> tuple[Status, str]:
    if v >= (6, 6, 0):
        return (
            Status.PASS,
            "6.6 or later (upstream or AWS-backported NSM driver); whether it carries "
            "the latest `misc: nsm` fixes cannot be told from the version",
        )
    return Status.FAIL, "older than 6.6: the out-of-tree 2021 nsm.ko era"


def _layout(image: EifImage) -> Finding:
    title = "hypervisor and nitro-cli see the same image"
    if image.layout_issues:
        return Finding(
            "EIF-LAYOUT",
            title,
            Status.FAIL,
            "; ".join(image.layout_issues),
            "rebuild the image with a standard builder (sections back to back, table in "
            "file order, no trailing bytes)",
        )
    return Finding(
        "EIF-LAYOUT",
        title,
        Status.PASS,
        "section table and sequential walk agree; no gaps or trailing bytes",
    )


def static_checks(image: EifImage) -> list[Finding]:
    """Judge what the image itself decides: RNG-2, TIME-2, CPU-1, RNG-3, NSM-1 and layout.

    Args:
        image: a parsed image (`read_eif`).

    Returns:
        One `Finding` per check, in a fixed order.
    """
    params = kernel_params(image.cmdline_text)
    return [
        _rng2(params),
        _time2(params),
        _cpu1(params),
        _version_finding(
            image,
            "RNG-3",
            "kernel has the 2022 RNG rework",
            _rng3,
            "use a current LTS kernel (AWS sdk-bootstrap 6.6.x), not the nitro-cli 4.14 blob",
        ),
        _version_finding(
            image,
            "NSM-1",
            "maintained NSM driver",
            _nsm1,
            "use a kernel with the upstream NSM driver (6.6+ with the AWS backport, or newer)",
        ),
        _layout(image),
    ]
