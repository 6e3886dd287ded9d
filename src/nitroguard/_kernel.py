"""Kernel facts shared by the environment audit and the EIF static checks.

One place knows how Linux reads its command line and its release string, and how
the command-line checks of ``../shared/spec/threat-checklist.md`` grade what it says
(RNG-2 trust flags, TIME-2 kvm-clock, CPU-1 mitigations) and which kernel versions
RNG-3 and NSM-1 accept. No I/O here: `nitroguard.audit` passes ``/proc/cmdline`` and
``uname -r``, `nitroguard.eif` passes the measured cmdline section and the kernel
image's version; each turns the neutral verdicts below into its own `Finding`
(own id wording, title, status policy and remediation).

Command-line rules (Documentation/admin-guide/kernel-parameters.rst, lib/cmdline.c
``next_arg``, kernel/params.c ``parse_args``/``parameq``): whitespace separates
parameters; double quotes protect spaces; a bare ``--`` ends the kernel's parameters
and the rest goes to init; ``-`` and ``_`` are equivalent in parameter names; a
parameter given twice keeps its last value.
"""

from __future__ import annotations

import dataclasses
import enum
import re

__all__ = [
    "KVM_CLOCK",
    "MAX_CMDLINE",
    "MIN_RNG_KERNEL",
    "MITIGATION_OFF_FLAGS",
    "MITIGATION_OFF_VALUES",
    "NSM_CVE_RANGES",
    "TRUST_FLAGS",
    "ClockVerdict",
    "Cmdline",
    "MitigationVerdict",
    "NsmDriver",
    "TrustFlag",
    "TrustVerdict",
    "grade_clock",
    "grade_mitigations",
    "grade_trust_flags",
    "kaslr_disabled",
    "kstrtobool",
    "nsm_driver",
    "parse_cmdline",
    "parse_kernel_config",
    "parse_kernel_version",
    "version_text",
]

#: The kernel truncates its command line at COMMAND_LINE_SIZE (2048 on x86, 4096 on
#: arm64) and the EIF reader rejects a cmdline section over 64 KiB; anything longer
#: did not come from either. We bound the work anyway.
MAX_CMDLINE = 64 * 1024

#: RNG-3: veil's floor, the 5.17 stable release that took the 2022 `random:` rework.
MIN_RNG_KERNEL = (5, 17, 12)

#: At most six digits a component: a release string never has more, and Python's
#: ``int()`` refuses strings of more than 4300 digits (that would escape as ValueError).
_VERSION_RE = re.compile(r"\s*(\d{1,6})\.(\d{1,6})(?:\.(\d{1,6}))?")

KVM_CLOCK = "kvm-clock"

#: RNG-2: the parameters that let the CPU RNG or a bootloader seed alone initialise
#: the CRNG ("...to fully seed the kernel's CRNG", kernel-parameters).
TRUST_FLAGS = ("random.trust_cpu", "random.trust_bootloader")

#: CPU-1: parameters that switch off one CPU mitigation (kernel-parameters). The audit
#: and the EIF checks fail ``mitigations=off`` (all of them) and warn on these.
MITIGATION_OFF_FLAGS = (
    "nopti",
    "nospectre_v1",
    "nospectre_v2",
    "nospec_store_bypass_disable",
    "nospectre_bhb",
    "noibrs",
    "noibpb",
    "nosmap",
    "nosmep",
)
MITIGATION_OFF_VALUES = {
    "pti": "off",
    "spectre_v2": "off",
    "spectre_v2_user": "off",
    "spectre_bhi": "off",
    "spec_store_bypass_disable": "off",
    "ssbd": "force-off",
    "mds": "off",
    "tsx_async_abort": "off",
    "l1tf": "off",
    "mmio_stale_data": "off",
    "retbleed": "off",
    "srbds": "off",
    "gather_data_sampling": "off",
    "reg_file_data_sampling": "off",
    "spec_rstack_overflow": "off",
    "kpti": "0",  # arm64: "kpti= 0: force disabled"
}

#: CVE-2026-68179 ("misc: nsm: only unlock nsm_dev on post-lock error paths"): any
#: user of the 0666 /dev/nsm can unlock a mutex it never took. Affected upstream ranges
#: from the OSV advisory (spec/nsm-protocol.md §3.2), as ``[lo, hi)``.
NSM_CVE_RANGES = (
    ((6, 8, 0), (6, 12, 101)),
    ((6, 13, 0), (6, 18, 42)),
    ((6, 19, 0), (7, 1, 6)),
)


# --- the command line ----------------------------------------------------------------------


def _normalize(name: str) -> str:
    # kernel/params.c `parameq`: '-' and '_' are interchangeable in parameter names.
    return name.replace("-", "_")


@dataclasses.dataclass(frozen=True, slots=True)
class Cmdline:
    """A parsed kernel command line.

    Attributes:
        params: ``(name, value)`` pairs in order, for the parameters the kernel parses
            (those before a bare ``--``), names as written; `value` is None for a flag
            without ``=``.
        init_args: the words after ``--``, which the kernel passes to init untouched.
    """

    params: tuple[tuple[str, str | None], ...]
    init_args: tuple[str, ...] = ()

    def has(self, name: str) -> bool:
        """Whether parameter `name` appears (with or without a value)."""
        want = _normalize(name)
        return any(_normalize(n) == want for n, _ in self.params)

    def last(self, name: str) -> str | None:
        """The value of the last occurrence of `name` (the one the kernel keeps).

        Returns None when the parameter is absent or given without ``=``.
        """
        want = _normalize(name)
        value: str | None = None
        for n, v in self.params:
            if _normalize(n) == want:
                value = v
        return value

    def values(self, name: str) -> list[str | None]:
        """Every value given for `name`, in order."""
        want = _normalize(name)
        return [v for n, v in self.params if _normalize(n) == want]

    def normalized(self) -> list[tuple[str, str | None]]:
        """`params` with ``-`` in names written as ``_`` (the kernel's own spelling)."""
        return [(_normalize(n), v) for n, v in self.params]


def _ends_kernel_params(word: str) -> bool:
    # lib/cmdline.c `next_arg` drops the quote that opens a word and the one closing
    # it, then kernel/params.c `parse_args` stops at a parameter named "--" without a
    # value: so `"--"` ends the kernel's parameters too, `-"-"` does not.
    if word.startswith('"'):
        word = word[1:]
        if word.endswith('"'):
            word = word[:-1]
    return word == "--"


def parse_cmdline(text: str) -> Cmdline:
    """Split a command line like the kernel's ``next_arg`` (lib/cmdline.c, kernel/params.c).

    Whitespace separates parameters; double quotes group (``a="b c"`` and
    ``"a=b c"``) and are removed; a bare ``--`` (also written ``"--"``) ends kernel
    parameters and the rest goes to init. Never raises: any string parses to something.

    Args:
        text: the content of ``/proc/cmdline`` or of an EIF cmdline section (a
            trailing newline is fine); only the first `MAX_CMDLINE` characters count.

    Returns:
        The parsed `Cmdline`.
    """
    text = text[:MAX_CMDLINE]
    params: list[tuple[str, str | None]] = []
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        in_quote = False
        start = i
        while i < n and (in_quote or not text[i].isspace()):
            if text[i] == '"':
                in_quote = not in_quote
            i += 1
        words.append(text[start:i])
    for index, word in enumerate(words):
        if _ends_kernel_params(word):
            return Cmdline(tuple(params), tuple(w.replace('"', "") for w in words[index + 1 :]))
        name, sep, value = word.partition("=")
        name = name.replace('"', "")
        params.append((name, value.replace('"', "") if sep else None))
    return Cmdline(tuple(params))


def kstrtobool(value: str | None) -> bool | None:
    """Interpret a boolean parameter value like the kernel's ``kstrtobool``.

    ``y/Y/1/t/T/on`` are true; ``n/N/0/f/F/off`` are false (only the first one or
    two characters matter, as in lib/kstrtox.c). A bare flag (`None`) or an empty
    value is true for ``bool`` module parameters (kernel/params.c ``param_set_bool``
    treats a missing value as "y").

    Returns:
        True, False, or None when the kernel would reject the value.
    """
    if value is None or value == "":
        return True
    first = value[0]
    if first in "yY1tT":
        return True
    if first in "nN0fF":
        return False
    if first in "oO" and len(value) > 1:
        second = value[1]
        if second in "nN":
            return True
        if second in "fF":
            return False
    return None


# --- RNG-2: trust flags --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class TrustFlag:
    """What the command line says about one of `TRUST_FLAGS`.

    Attributes:
        name: the parameter, e.g. ``"random.trust_cpu"``.
        present: whether it appears at all.
        value: its last value (None when absent or given without ``=``).
        parsed: `kstrtobool` of that value (None when the kernel rejects it).
    """

    name: str
    present: bool
    value: str | None
    parsed: bool | None

    @property
    def off(self) -> bool:
        """True only when the kernel is told not to trust this seed source."""
        return self.present and self.parsed is False

    def describe(self) -> str:
        """E.g. ``random.trust_cpu=on (on)`` or ``random.trust_cpu not set (...)``."""
        if not self.present:
            return f"{self.name} not set (kernel default: trusted)"
        shown = f"{self.name}={self.value}" if self.value is not None else self.name
        if self.parsed is None:
            return f"{shown} (unparseable)"
        return f"{shown} ({'on' if self.parsed else 'off'})"


@dataclasses.dataclass(frozen=True, slots=True)
class TrustVerdict:
    """RNG-2: `ok` when both trust flags are explicitly off.

    Attributes:
        flags: one `TrustFlag` per name in `TRUST_FLAGS`, in that order.
    """

    flags: tuple[TrustFlag, ...]

    @property
    def ok(self) -> bool:
        """Whether neither the CPU RNG nor a bootloader seed is trusted."""
        return all(flag.off for flag in self.flags)

    @property
    def any_absent(self) -> bool:
        """Whether a flag is missing (its default then depends on kernel and config)."""
        return any(not flag.present for flag in self.flags)

    @property
    def evidence(self) -> str:
        """One description a flag, comma separated."""
        return ", ".join(flag.describe() for flag in self.flags)


def grade_trust_flags(cmdline: Cmdline) -> TrustVerdict:
    """RNG-2: are ``random.trust_cpu`` and ``random.trust_bootloader`` both off?"""
    return TrustVerdict(
        tuple(
            TrustFlag(name, cmdline.has(name), cmdline.last(name), kstrtobool(cmdline.last(name)))
            for name in TRUST_FLAGS
        )
    )


# --- TIME-2: kvm-clock --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ClockVerdict:
    """TIME-2: what the command line does to kvm-clock.

    Attributes:
        no_kvmclock: ``no-kvmclock`` is present (kvmclock.c: kvm-clock disabled).
        clocksource: the last ``clocksource=`` word as written (``"clocksource=tsc"``),
            or None when there is none.
        selects_kvm_clock: that last word is ``clocksource=kvm-clock``.
    """

    no_kvmclock: bool
    clocksource: str | None
    selects_kvm_clock: bool

    @property
    def problems(self) -> tuple[str, ...]:
        """What disables or overrides kvm-clock (empty when nothing does)."""
        found = ["no-kvmclock"] if self.no_kvmclock else []
        if self.clocksource is not None and not self.selects_kvm_clock:
            found.append(self.clocksource)
        return tuple(found)

    @property
    def evidence(self) -> str:
        """The problems, else what keeps kvm-clock."""
        if self.problems:
            return ", ".join(self.problems)
        if self.selects_kvm_clock:
            return f"clocksource={KVM_CLOCK}"
        return "no no-kvmclock, no clocksource= override"


def grade_clock(cmdline: Cmdline) -> ClockVerdict:
    """TIME-2: does the command line disable (``no-kvmclock``) or override kvm-clock?"""
    sources = cmdline.values("clocksource")
    last = sources[-1] if sources else None
    # A bare `clocksource` is shown as written; it is counted as an override like any
    # other value that is not kvm-clock (conservative: both areas always did so).
    word = None if not sources else "clocksource" if last is None else f"clocksource={last}"
    return ClockVerdict(cmdline.has("no-kvmclock"), word, last == KVM_CLOCK)


# --- CPU-1: mitigations --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class MitigationVerdict:
    """CPU-1: which CPU mitigations the command line switches off.

    Attributes:
        all_off: the last ``mitigations=`` value is ``off``.
        switches: the per-mitigation off switches that take effect, in table order
            (``"nopti"``, ``"pti=off"``).
    """

    all_off: bool
    switches: tuple[str, ...]


def grade_mitigations(cmdline: Cmdline) -> MitigationVerdict:
    """CPU-1: ``mitigations=off`` and the per-mitigation off switches.

    Values count as the kernel applies them: the last occurrence wins, so
    ``pti=off pti=on`` leaves PTI on. Off values compare without regard to case.
    """
    switches = [flag for flag in MITIGATION_OFF_FLAGS if cmdline.has(flag)]
    switches += [
        f"{name}={off}"
        for name, off in MITIGATION_OFF_VALUES.items()
        if (cmdline.last(name) or "").lower() == off
    ]
    return MitigationVerdict((cmdline.last("mitigations") or "").lower() == "off", tuple(switches))


# --- kernel versions (RNG-3, NSM-1) --------------------------------------------------------


def parse_kernel_version(release: str) -> tuple[int, int, int] | None:
    """Extract ``(major, minor, patch)`` from a release string such as ``uname -r``.

    ``"6.6.79-nitro"`` -> ``(6, 6, 79)``; ``"4.14.256-209.484.amzn2.x86_64"`` ->
    ``(4, 14, 256)``; ``"6.8"`` -> ``(6, 8, 0)``; anything else -> None.
    """
    match = _VERSION_RE.match(release)
    if match is None:
        return None
    return (int(match[1]), int(match[2]), int(match[3] or 0))


def version_text(version: tuple[int, int, int]) -> str:
    """``(6, 6, 0)`` -> ``"6.6.0"``."""
    return ".".join(map(str, version))


class NsmDriver(enum.Enum):
    """NSM-1: which NSM driver generation a kernel version implies."""

    OUT_OF_TREE = "pre-6.6 kernel: the out-of-tree nsm.ko generation"
    AWS_BACKPORT = "AWS 6.6 backport of the upstream driver generation"
    NO_UPSTREAM = "6.7: no upstream NSM driver; out-of-tree module"
    UPSTREAM_CVE = "upstream driver; in the range affected by CVE-2026-68179"
    UPSTREAM_FIXED = "upstream driver with the CVE-2026-68179 fix"


def nsm_driver(version: tuple[int, int, int]) -> NsmDriver:
    """Classify `version` for NSM-1 (upstream drivers/misc/nsm.c landed in 6.8)."""
    if version < (6, 6, 0):
        return NsmDriver.OUT_OF_TREE
    if version[:2] == (6, 6):
        return NsmDriver.AWS_BACKPORT
    if version < (6, 8, 0):
        return NsmDriver.NO_UPSTREAM
    if any(lo <= version < hi for lo, hi in NSM_CVE_RANGES):
        return NsmDriver.UPSTREAM_CVE
    return NsmDriver.UPSTREAM_FIXED


# --- KASLR and the kernel configuration (MEM-3) ---------------------------------------------


def kaslr_disabled(cmdline: Cmdline) -> str | None:
    """MEM-3: why the command line turns KASLR off, or None if it does not.

    The x86 decompressor looks for ``nokaslr`` with ``cmdline_find_option_bool``
    (arch/x86/lib/cmdline.c), which scans the whole command line word by word and
    does not stop at ``--``: so ``nokaslr`` after ``--`` disables KASLR as well.
    """
    if cmdline.has("nokaslr"):
        return "nokaslr"
    if "nokaslr" in cmdline.init_args:
        return "nokaslr (after --, but the x86 boot code still honours it)"
    return None


_CONFIG_SET_RE = re.compile(r"(CONFIG_[A-Za-z0-9_]{1,128})=(.{0,4096})")
_CONFIG_UNSET_RE = re.compile(r"# (CONFIG_[A-Za-z0-9_]{1,128}) is not set")


def parse_kernel_config(text: str) -> dict[str, str | None]:
    """Parse a kernel ``.config`` (as in ``/proc/config.gz``) into ``{name: value}``.

    ``CONFIG_X=y`` -> ``"y"``; ``# CONFIG_X is not set`` -> None; other lines
    (comments, blanks, garbage) are ignored. Never raises.

    Args:
        text: the decompressed configuration text (the caller bounds its size).

    Returns:
        The options, in file order; a later line overrides an earlier one.
    """
    options: dict[str, str | None] = {}
    for raw in text.splitlines():
        line = raw.strip()
        match = _CONFIG_SET_RE.fullmatch(line)
        if match is not None:
            options[match[1]] = match[2]
            continue
        match = _CONFIG_UNSET_RE.fullmatch(line)
        if match is not None:
            options[match[1]] = None
    return options
