"""`Facts`: one snapshot of everything the checks look at, gathered through the probe.

`gather` does all the I/O (through `SystemReader` and, if given, the NSM); the checks
in `nitroguard.audit._checks` are pure functions of the resulting `Facts`. Tests can
therefore drive a check with a fake tree, or build `Facts` by hand.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Sequence

from cryptography import x509

from nitroguard.attestation import Verifier
from nitroguard.audit._clock import SelfAttestation, self_attest
from nitroguard.audit._parent import ParentFacts, siblings_path
from nitroguard.audit._parent_parse import (
    ALLOCATOR_PATH,
    CPU_DIR,
    NE_CPUS_PATH,
    NE_MODULE_DIR,
    EnclaveInfo,
    parse_allocator_config,
    parse_cpu_list,
)
from nitroguard.audit._system import FileRead, NodeInfo, SystemReader
from nitroguard.errors import ConfigError, Error
from nitroguard.nsm import DeviceNsm, NsmDescription, ReadOnlyNsm

__all__ = [
    "HWRNG_DIRS",
    "Facts",
    "NsmFacts",
    "first_present",
    "gather",
    "gather_parent",
]

#: Both sysfs locations of the hw_random attributes. ``/sys/class/misc/hw_random`` is
#: normally a symlink to the second; checks that hand-roll this often read only one
#: (threat-checklist §4), so we read both.
HWRNG_DIRS = ("/sys/class/misc/hw_random", "/sys/devices/virtual/misc/hw_random")
CLOCKSOURCE_DIR = "/sys/devices/system/clocksource/clocksource0"
VULN_DIR = "/sys/devices/system/cpu/vulnerabilities"
#: The NSM's virtio device id (VIRTIO_ID_NITRO_SEC_MOD = 33), as sysfs prints it.
NSM_VIRTIO_ID = 0x21
#: The running kernel's configuration (CONFIG_IKCONFIG_PROC=y), gzip-compressed.
KERNEL_CONFIG_PATH = "/proc/config.gz"
PTP_NODES = ("/dev/ptp0", "/dev/ptp_ena", "/dev/ptp_kvm")
#: Upper bounds on directory scans (a hostile or odd tree must not make us read forever).
MAX_DIR_ENTRIES = 256

#: The first moment this build of nitroguard could have been built. A wall clock
#: before it is certainly wrong (TIME-3: kvm-clock absent gives 1999-11-30).
BUILD_DATE = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class NsmFacts:
    """What the NSM said.

    Attributes:
        description: the DescribeNSM answer, or None.
        describe_error: why DescribeNSM failed.
        app_pcrs: ``(index, locked, value)`` for PCRs 16-31.
        pcr_error: why DescribePCR failed.
        attestation: a fresh verified self-attestation, or None.
        attestation_error: why it could not be obtained or verified.
    """

    description: NsmDescription | None = None
    describe_error: str | None = None
    app_pcrs: tuple[tuple[int, bool, bytes], ...] = ()
    pcr_error: str | None = None
    attestation: SelfAttestation | None = None
    attestation_error: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Facts:
    """Everything the checks read, as one immutable snapshot.

    Attributes mirror the files read (each a `FileRead` that keeps the path and the
    raw value for evidence). `nsm` is None when no NSM handle was given.
    """

    root: str
    live: bool
    rng_current: tuple[FileRead, ...]
    rng_available: tuple[FileRead, ...]
    rng_quality: tuple[FileRead, ...]
    cmdline: FileRead
    kernel_release: str | None
    kernel_release_source: str
    getrandom_ready: bool | None
    clocksource: FileRead
    clocksource_available: FileRead
    ptp_nodes: tuple[NodeInfo, ...]
    ptp_clocks: tuple[FileRead, ...]
    vulnerabilities: tuple[FileRead, ...] | None
    swaps: FileRead
    meminfo_swap: str | None
    panic_on_oom: FileRead
    overcommit_memory: FileRead
    dev_nsm: NodeInfo | None
    misc_nsm_dev: FileRead
    nsm_virtio: tuple[str, ...]
    kernel_config: FileRead
    wall_time: float | None
    build_date: dt.datetime = BUILD_DATE
    nsm: NsmFacts | None = None
    #: The NSM handle is the kernel device (`DeviceNsm`). An emulator or socket handle
    #: answers the same requests but proves nothing about where we run (ENV-1).
    nsm_is_device: bool = False


def first_present(reads: tuple[FileRead, ...]) -> FileRead:
    for read in reads:
        if read.raw is not None:
            return read
    return reads[0]


def _gather_nsm(
    nsm: ReadOnlyNsm,
    probe: SystemReader,
    *,
    roots: Sequence[x509.Certificate] | None,
    verifier: Verifier | None,
    nonce: bytes | None,
) -> NsmFacts:
    description: NsmDescription | None = None
    describe_error = pcr_error = attestation_error = None
    try:
        description = nsm.describe_nsm()
    except Error as exc:
        describe_error = exc.diagnostics()
    app_pcrs: list[tuple[int, bool, bytes]] = []
    try:
        for index in range(16, 32):
            pcr = nsm.describe_pcr(index)
            app_pcrs.append((index, bool(pcr.lock), bytes(pcr.data)))
    except Error as exc:
        pcr_error = f"DescribePCR({len(app_pcrs) + 16}): {exc.diagnostics()}"
    attestation = None
    try:
        attestation = self_attest(
            nsm, roots=roots, verifier=verifier, nonce=nonce, wall_clock=probe.wall_time
        )
    except Error as exc:
        attestation_error = exc.diagnostics()
    return NsmFacts(
        description, describe_error, tuple(app_pcrs), pcr_error, attestation, attestation_error
    )


def gather(
    probe: SystemReader,
    nsm: ReadOnlyNsm | None = None,
    *,
    roots: Sequence[x509.Certificate] | None = None,
    verifier: Verifier | None = None,
    nonce: bytes | None = None,
    build_date: dt.datetime = BUILD_DATE,
) -> Facts:
    """Read every fact the checks need.

    Args:
        probe: where files and clocks come from.
        nsm: an NSM handle (device or emulator), or None.
        roots: trust anchors for the self-attestation (None: the AWS root).
        verifier: a ready `nitroguard.attestation.Verifier` (overrides `roots`).
        nonce: the self-attestation nonce (default: fresh random).
        build_date: the earliest sane wall-clock time (TIME-3).

    Returns:
        The `Facts` snapshot.
    """
    release, release_source = probe.kernel_release()
    vuln_names = probe.listdir(VULN_DIR)
    vulnerabilities = (
        None
        if vuln_names is None
        else tuple(probe.read(f"{VULN_DIR}/{name}") for name in vuln_names[:MAX_DIR_ENTRIES])
    )
    ptp_clocks = [
        probe.read(f"/sys/class/ptp/{name}/clock_name")
        for name in (probe.listdir("/sys/class/ptp") or [])[:MAX_DIR_ENTRIES]
    ]
    ptp_nodes = tuple(n for n in (probe.node(p) for p in PTP_NODES) if n is not None)
    meminfo = probe.read("/proc/meminfo")
    meminfo_swap = None
    for line in (meminfo.raw or "").splitlines():
        if line.startswith("SwapTotal:"):
            meminfo_swap = line.split(":", 1)[1].strip()
    nsm_virtio: list[str] = []
    for name in (probe.listdir("/sys/bus/virtio/devices") or [])[:MAX_DIR_ENTRIES]:
        read = probe.read(f"/sys/bus/virtio/devices/{name}/device")
        try:
            if read.value is not None and int(read.value, 16) == NSM_VIRTIO_ID:
                nsm_virtio.append(read.path)
        except ValueError:
            continue
    return Facts(
        root=str(probe.root),
        live=probe.live,
        rng_current=tuple(probe.read(f"{d}/rng_current") for d in HWRNG_DIRS),
        rng_available=tuple(probe.read(f"{d}/rng_available") for d in HWRNG_DIRS),
        rng_quality=tuple(probe.read(f"{d}/rng_quality") for d in HWRNG_DIRS),
        cmdline=probe.read("/proc/cmdline"),
        kernel_release=release,
        kernel_release_source=release_source,
        getrandom_ready=probe.getrandom_ready(),
        clocksource=probe.read(f"{CLOCKSOURCE_DIR}/current_clocksource"),
        clocksource_available=probe.read(f"{CLOCKSOURCE_DIR}/available_clocksource"),
        ptp_nodes=ptp_nodes,
        ptp_clocks=tuple(ptp_clocks),
        vulnerabilities=vulnerabilities,
        swaps=probe.read("/proc/swaps"),
        meminfo_swap=meminfo_swap,
        panic_on_oom=probe.read("/proc/sys/vm/panic_on_oom"),
        overcommit_memory=probe.read("/proc/sys/vm/overcommit_memory"),
        dev_nsm=probe.node("/dev/nsm"),
        misc_nsm_dev=probe.read("/sys/class/misc/nsm/dev"),
        nsm_virtio=tuple(nsm_virtio),
        kernel_config=probe.read_gzip(KERNEL_CONFIG_PATH),
        wall_time=probe.wall_time(),
        build_date=build_date,
        nsm=None
        if nsm is None
        else _gather_nsm(nsm, probe, roots=roots, verifier=verifier, nonce=nonce),
        nsm_is_device=isinstance(nsm, DeviceNsm),
    )


def gather_parent(
    probe: SystemReader,
    enclaves: tuple[EnclaveInfo, ...] | None = None,
    expect_cid: int | None = None,
) -> ParentFacts:
    """Read every fact the parent-side checks need (`nitroguard.audit._parent`).

    Reads the NE driver's CPU pool, the SMT sibling lists of CPU 0, of the pool CPUs
    (from ``ne_cpus`` and from ``allocator.yaml``) and of the online CPUs, and the
    allocator configuration. A list that cannot be parsed is read no further (the
    check reports it); the parsers bound every list to CPU ids below 8192.

    Args:
        probe: where files come from (its root is the audited parent's ``/``).
        enclaves: the parsed ``nitro-cli describe-enclaves`` output, or None.
        expect_cid: the CID the operator proxies to, or None.

    Returns:
        The `ParentFacts` snapshot.
    """
    module = probe.node(NE_MODULE_DIR)
    ne_cpus = probe.read(NE_CPUS_PATH)
    online = probe.read(f"{CPU_DIR}/online")
    allocator = probe.read(ALLOCATOR_PATH)

    def cpus(read: FileRead) -> frozenset[int]:
        try:
            return parse_cpu_list(read.raw or "", what=read.path)
        except ConfigError:
            return frozenset()

    pool = cpus(ne_cpus) if module is not None else frozenset()
    alloc_pool: frozenset[int] = frozenset()
    if allocator.raw is not None:
        with contextlib.suppress(ConfigError):  # ALLOC-1 reports it
            alloc_pool = parse_allocator_config(allocator.raw).cpu_pool or frozenset()
    wanted = sorted({0} | pool | alloc_pool | cpus(online))
    return ParentFacts(
        root=str(probe.root),
        module=module,
        ne_cpus=ne_cpus,
        online=online,
        smt_active=probe.read(f"{CPU_DIR}/smt/active"),
        siblings={cpu: probe.read(siblings_path(cpu)) for cpu in wanted},
        cpu_online={cpu: probe.read(f"{CPU_DIR}/cpu{cpu}/online") for cpu in sorted(pool)},
        allocator=allocator,
        enclaves=enclaves,
        expect_cid=expect_cid,
    )
