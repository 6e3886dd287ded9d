"""Parent-side audit: checks an operator runs on the parent EC2 instance.

The in-enclave audit (`nitroguard.audit._checks`) looks at the enclave from inside.
These checks look at what only the parent can see (threat-checklist rows with a
PAR check):

- **CPU-2**: the Nitro Enclaves CPU pool (``/sys/module/nitro_enclaves/parameters/
  ne_cpus``) is made of whole physical cores (complete SMT sibling sets per
  ``/sys/devices/system/cpu/cpuN/topology/thread_siblings_list``) and leaves CPU 0's
  core to the parent, so the parent never shares a core's L1/L2 with the enclave.
- **ATT-2** (parent part): no enclave listed by ``nitro-cli describe-enclaves`` runs
  with ``Flags: DEBUG_MODE``.
- **VS-5** (parent part): the enclave CID the operator proxies to is the running
  enclave's ``EnclaveCID``.
- **ALLOC-1**: ``/etc/nitro_enclaves/allocator.yaml`` is coherent (one of
  ``cpu_count``/``cpu_pool``, sane ``memory_mib``) and matches the live pool.

Everything here is pure: the checks take `ParentFacts`
(gathered through `nitroguard.audit.SystemReader` by
`nitroguard.audit.gather_parent`). Parsers raise only `ConfigError`, with a
precise message and a `Reason` (the parsers are in `_parent_parse`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from nitroguard.audit._parent_parse import (
    CPU_DIR,
    MIN_ENCLAVE_MIB,
    NE_MODULE_DIR,
    EnclaveInfo,
    format_cpu_list,
    parse_allocator_config,
    parse_cpu_list,
)
from nitroguard.audit._system import FileRead, NodeInfo
from nitroguard.errors import ConfigError
from nitroguard.findings import Finding, Status

__all__ = [
    "PARENT_CHECKS",
    "ParentCheck",
    "ParentFacts",
    "parent_check",
    "siblings_path",
]

# --- facts and checks -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ParentFacts:
    """Everything the parent-side checks read.

    Attributes:
        root: the audited filesystem root.
        module: ``/sys/module/nitro_enclaves`` (None: the driver is not loaded).
        ne_cpus: the driver's CPU pool parameter.
        online: ``/sys/devices/system/cpu/online``.
        smt_active: ``/sys/devices/system/cpu/smt/active``.
        siblings: ``thread_siblings_list`` per CPU of interest (CPU 0, the pools,
            the online CPUs).
        cpu_online: ``cpuN/online`` for the pool CPUs.
        allocator: ``/etc/nitro_enclaves/allocator.yaml``.
        enclaves: the parsed ``describe-enclaves`` output, or None when not given.
        expect_cid: the CID the operator proxies to, or None.
    """

    root: str
    module: NodeInfo | None
    ne_cpus: FileRead
    online: FileRead
    smt_active: FileRead
    siblings: Mapping[int, FileRead]
    cpu_online: Mapping[int, FileRead]
    allocator: FileRead
    enclaves: tuple[EnclaveInfo, ...] | None = None
    expect_cid: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ParentCheck:
    """One registered parent-side check (``id``, ``title``, pure ``func``)."""

    id: str
    title: str
    func: Callable[[ParentFacts], Finding]

    @property
    def area(self) -> str:
        """The id prefix, e.g. ``"CPU"``."""
        return self.id.split("-", 1)[0]


_REGISTRY: dict[str, ParentCheck] = {}


def parent_check(
    id: str,  # noqa: A002 - the checklist calls it an id
    title: str,
) -> Callable[[Callable[[ParentFacts], Finding]], Callable[[ParentFacts], Finding]]:
    """Register the decorated function as parent-side check `id`, titled `title` (its one source).

    Raises:
        ConfigError: `id` is registered twice.
    """

    def register(func: Callable[[ParentFacts], Finding]) -> Callable[[ParentFacts], Finding]:
        if id in _REGISTRY:
            raise ConfigError(f"parent check {id} is registered twice")
        _REGISTRY[id] = ParentCheck(id, title, func)
        return func

    return register


def _title(id: str) -> str:  # noqa: A002 - the checklist calls it an id
    return _REGISTRY[id].title


def siblings_path(cpu: int) -> str:
    """The sysfs path of a CPU's SMT sibling list."""
    return f"{CPU_DIR}/cpu{cpu}/topology/thread_siblings_list"


def _siblings(facts: ParentFacts, cpu: int) -> frozenset[int] | str | None:
    """A CPU's sibling set (itself included), an error text, or None if not exported."""
    read = facts.siblings.get(cpu)
    if read is None or read.absent:
        return None
    if read.raw is None:
        return read.describe()
    try:
        found = parse_cpu_list(read.raw, what=read.path)
    except ConfigError as exc:
        return exc.message
    if not found:
        return f"{read.path} is empty"
    return found | {cpu}


def _pool_problems(
    facts: ParentFacts, pool: frozenset[int]
) -> tuple[list[str], list[str], list[int], list[str]]:
    """Judge a pool against the topology: (failures, warnings, unverified, notes)."""
    fails: list[str] = []
    warns: list[str] = []
    notes: list[str] = []
    unverified: list[int] = []
    if 0 in pool:
        fails.append("CPU 0 is in the pool (it must stay with the parent)")
    core0 = _siblings(facts, 0)
    if isinstance(core0, frozenset):
        shared = sorted(core0 & pool - {0})
        if shared:
            fails.append(f"CPU 0's sibling(s) {format_cpu_list(shared)} are in the pool")
        notes.append(f"CPU 0's core is {format_cpu_list(core0)}")
    elif core0 is None:
        warns.append(f"{siblings_path(0)}: absent (cannot see CPU 0's core)")
    else:
        warns.append(core0)
    for cpu in sorted(pool):
        found = _siblings(facts, cpu)
        if isinstance(found, frozenset):
            missing = sorted(found - pool)
            if missing:
                fails.append(
                    f"half a core: CPU {cpu} is in the pool but its sibling(s) "
                    f"{format_cpu_list(missing)} are not (siblings {format_cpu_list(found)})"
                )
            continue
        if isinstance(found, str):
            warns.append(found)
            continue
        state = facts.cpu_online.get(cpu)
        if state is not None and state.value == "0":
            unverified.append(cpu)
        else:
            detail = "absent" if state is None else state.describe()
            warns.append(f"CPU {cpu}: no topology in sysfs and not offline ({detail})")
    return fails, warns, unverified, notes


def _offline_verdict(facts: ParentFacts, pool: frozenset[int]) -> tuple[str | None, str]:
    """For pool CPUs the driver has offlined (no topology left in sysfs): infer.

    Returns ``(warning or None, note)``.
    """
    if facts.smt_active.value == "0":
        return None, f"{facts.smt_active.describe()}: no SMT, every CPU is a whole core"
    if facts.online.raw is None:
        return f"{facts.online.describe()}: cannot see the parent's cores", ""
    try:
        online = parse_cpu_list(facts.online.raw, what=facts.online.path)
    except ConfigError as exc:
        return exc.message, ""
    sizes: dict[int, int] = {}
    for cpu in sorted(online - pool):
        found = _siblings(facts, cpu)
        if isinstance(found, frozenset):
            sizes[cpu] = len(found)
    if not sizes:
        return "no readable sibling list for any online parent CPU", ""
    width = max(sizes.values())
    lonely = sorted(cpu for cpu, size in sizes.items() if size < width)
    if lonely:
        return (
            f"online parent CPU(s) {format_cpu_list(lonely)} have fewer siblings than "
            f"the {width} of a full core: a sibling may have gone into the pool",
            "",
        )
    return None, (
        f"the pool CPUs are offline (given to the driver, which checks whole cores when "
        f"the pool is set) and every online parent CPU keeps its full {width}-thread core"
    )


_CPU2_FIX = (
    "Give the enclaves whole cores and keep CPU 0's core for the parent: set cpu_pool in "
    "/etc/nitro_enclaves/allocator.yaml to complete sibling sets (see "
    "/sys/devices/system/cpu/cpuN/topology/thread_siblings_list) without CPU 0's core, or "
    "use cpu_count, then `systemctl restart nitro-enclaves-allocator.service`."
)


@parent_check("CPU-2", "NE CPU pool is whole cores, not CPU 0's (parent)")
def check_cpu2(facts: ParentFacts) -> Finding:
    """CPU-2: the NE CPU pool is whole physical cores and excludes CPU 0's core."""
    title = _title("CPU-2")
    if facts.module is None:
        return Finding(
            "CPU-2",
            title,
            Status.SKIP,
            f"the nitro_enclaves kernel module is not loaded ({NE_MODULE_DIR} absent): "
            "this is not a Nitro Enclaves parent, or the driver is not set up",
        )
    read = facts.ne_cpus
    if read.raw is None:
        return Finding("CPU-2", title, Status.WARN, read.describe(), _CPU2_FIX)
    try:
        pool = parse_cpu_list(read.raw, what=read.path)
    except ConfigError as exc:
        return Finding("CPU-2", title, Status.WARN, exc.message, _CPU2_FIX)
    if not pool:
        return Finding(
            "CPU-2",
            title,
            Status.SKIP,
            f"{read.describe()}: the NE CPU pool is empty (the allocator has not set it "
            "up), so no enclave can start",
        )
    fails, warns, unverified, notes = _pool_problems(facts, pool)
    if unverified and not fails:
        warning, note = _offline_verdict(facts, pool)
        if warning is not None:
            warns.append(warning)
        if note:
            notes.append(note)
    for enclave in facts.enclaves or ():
        if enclave.running and enclave.cpu_ids is not None:
            outside = sorted(set(enclave.cpu_ids) - pool)
            if outside:
                warns.append(
                    f"enclave {enclave.enclave_id!r} runs on CPU(s) "
                    f"{format_cpu_list(outside)} outside the pool"
                )
            else:
                notes.append(
                    f"enclave {enclave.enclave_id!r} CPUIDs {format_cpu_list(enclave.cpu_ids)}"
                )
            width = _smt_width(facts)
            if width is not None and len(set(enclave.cpu_ids)) % width:
                warns.append(
                    f"enclave {enclave.enclave_id!r} has {len(set(enclave.cpu_ids))} CPU(s), "
                    f"not a whole number of {width}-thread cores"
                )
    evidence = f"{read.describe()}: pool {format_cpu_list(pool)}"
    if fails:
        return Finding("CPU-2", title, Status.FAIL, f"{evidence}; {'; '.join(fails)}", _CPU2_FIX)
    if warns:
        return Finding("CPU-2", title, Status.WARN, f"{evidence}; {'; '.join(warns)}", _CPU2_FIX)
    return Finding("CPU-2", title, Status.PASS, "; ".join([evidence, *notes]))


_NO_DESCRIBE = (
    "no describe-enclaves input (pipe `nitro-cli describe-enclaves` into "
    "`nitroguard audit --parent --describe-enclaves -`)"
)


@parent_check("ATT-2", "No enclave runs in debug mode (describe-enclaves)")
def check_att2_parent(facts: ParentFacts) -> Finding:
    """ATT-2 (parent): no enclave on this host runs with ``Flags: DEBUG_MODE``."""
    title = _title("ATT-2")
    if facts.enclaves is None:
        return Finding("ATT-2", title, Status.SKIP, _NO_DESCRIBE)
    if not facts.enclaves:
        return Finding("ATT-2", title, Status.SKIP, "describe-enclaves lists no enclaves")
    evidence = "; ".join(e.describe() for e in facts.enclaves)
    fix = (
        "Terminate it (`nitro-cli terminate-enclave --enclave-id ID`) and run it without "
        "--debug-mode before it gets production secrets: the parent can read a debug "
        "enclave's console, and its attestation PCRs are all zero (describe-enclaves "
        "still prints the image's PCRs, aws-nitro-enclaves-cli#695)."
    )
    if any(e.debug and e.running for e in facts.enclaves):
        return Finding("ATT-2", title, Status.FAIL, evidence, fix)
    if any(e.debug for e in facts.enclaves):
        return Finding("ATT-2", title, Status.WARN, evidence, fix)
    return Finding("ATT-2", title, Status.PASS, evidence)


@parent_check("VS-5", "Proxied CID is the running enclave's (describe-enclaves)")
def check_vs5_parent(facts: ParentFacts) -> Finding:
    """VS-5 (parent): the CID the operator proxies to is a running enclave's EnclaveCID."""
    title = _title("VS-5")
    fix = (
        "Point the proxy at the EnclaveCID that describe-enclaves reports for the intended "
        "enclave (or start it with --enclave-cid N). The CID only routes: clients must "
        "still authenticate the enclave end to end through attestation (ATT-6)."
    )
    if facts.expect_cid is None:
        listed = ""
        if facts.enclaves:
            listed = ": running CIDs " + (
                ", ".join(str(e.cid) for e in facts.enclaves if e.running) or "(none)"
            )
        return Finding(
            "VS-5", title, Status.SKIP, f"no expected CID given (--expect-cid N){listed}"
        )
    want = facts.expect_cid
    if facts.enclaves is None:
        return Finding(
            "VS-5",
            title,
            Status.FAIL,
            f"expected CID {want}, but {_NO_DESCRIBE}: cannot confirm it",
            fix,
        )
    running = [e for e in facts.enclaves if e.running and e.cid == want]
    if len(running) == 1:
        return Finding("VS-5", title, Status.PASS, f"CID {want}: {running[0].describe()}")
    if len(running) > 1:
        evidence = "; ".join(e.describe() for e in running)
        return Finding("VS-5", title, Status.FAIL, f"CID {want} is claimed twice: {evidence}", fix)
    others = [e for e in facts.enclaves if e.cid == want]
    if others:
        evidence = f"CID {want} belongs to an enclave that is not running: {others[0].describe()}"
    else:
        listed = "; ".join(e.describe() for e in facts.enclaves) or "no enclaves listed"
        evidence = f"no running enclave has CID {want} ({listed})"
    return Finding("VS-5", title, Status.FAIL, evidence, fix)


def _smt_width(facts: ParentFacts) -> int | None:
    core0 = _siblings(facts, 0)
    return len(core0) if isinstance(core0, frozenset) else None


@parent_check("ALLOC-1", "Enclave allocator configuration (allocator.yaml)")
def check_allocator(facts: ParentFacts) -> Finding:
    """ALLOC-1: ``allocator.yaml`` is coherent and matches the live pool."""
    title = _title("ALLOC-1")
    read = facts.allocator
    fix = (
        "Edit /etc/nitro_enclaves/allocator.yaml: memory_mib (>= 64) and exactly one of "
        "cpu_count or cpu_pool (whole cores, not CPU 0's), then "
        "`systemctl restart nitro-enclaves-allocator.service`."
    )
    if read.absent:
        return Finding(
            "ALLOC-1", title, Status.SKIP, f"{read.path}: absent (the allocator is not set up)"
        )
    if read.raw is None:
        return Finding("ALLOC-1", title, Status.WARN, read.describe(), fix)
    try:
        config = parse_allocator_config(read.raw)
    except ConfigError as exc:
        return Finding("ALLOC-1", title, Status.FAIL, exc.message, fix)
    fails: list[str] = []
    warns: list[str] = []
    shown = [f"memory_mib {config.memory_mib}"]
    if config.memory_mib is None:
        fails.append("memory_mib is not set")
    elif config.memory_mib < MIN_ENCLAVE_MIB:
        fails.append(f"memory_mib {config.memory_mib} is below the {MIN_ENCLAVE_MIB} MiB minimum")
    if config.cpu_count is not None and config.cpu_pool is not None:
        fails.append("both cpu_count and cpu_pool are set (they conflict: use exactly one)")
    elif config.cpu_count is None and config.cpu_pool is None:
        fails.append("neither cpu_count nor cpu_pool is set")
    width = _smt_width(facts)
    live: frozenset[int] | None = None
    if facts.module is not None and facts.ne_cpus.raw is not None:
        try:
            live = parse_cpu_list(facts.ne_cpus.raw, what=facts.ne_cpus.path)
        except ConfigError:
            live = None  # CPU-2 reports it
    if config.cpu_count is not None:
        shown.append(f"cpu_count {config.cpu_count}")
        if config.cpu_count == 0:
            fails.append("cpu_count is 0")
        elif width is not None and config.cpu_count % width:
            warns.append(
                f"cpu_count {config.cpu_count} is not a whole number of {width}-thread cores"
            )
        if live is not None and config.cpu_pool is None and len(live) != config.cpu_count:
            warns.append(
                f"the live pool has {len(live)} CPU(s) ({format_cpu_list(live)}), not "
                f"{config.cpu_count}: the allocator has not applied this file"
            )
    if config.cpu_pool is not None:
        shown.append(f"cpu_pool {format_cpu_list(config.cpu_pool)}")
        if not config.cpu_pool:
            fails.append("cpu_pool is empty")
        else:
            pool_fails, _warns, _unverified, _notes = _pool_problems(facts, config.cpu_pool)
            fails.extend(pool_fails)
        if live is not None and live != config.cpu_pool:
            warns.append(
                f"the live pool is {format_cpu_list(live)}: the allocator has not applied this file"
            )
    evidence = f"{read.path}: {', '.join(shown)}"
    if fails:
        return Finding("ALLOC-1", title, Status.FAIL, f"{evidence}; {'; '.join(fails)}", fix)
    if warns:
        return Finding("ALLOC-1", title, Status.WARN, f"{evidence}; {'; '.join(warns)}", fix)
    return Finding("ALLOC-1", title, Status.PASS, evidence)


#: The parent-side checks, in registration (display) order.
PARENT_CHECKS: tuple[ParentCheck, ...] = tuple(_REGISTRY.values())
