"""In-enclave environment audit: does the enclave stand on safe ground?

An enclave application calls `require_secure_environment` at start-up, before it
generates keys or trusts the time, and refuses to start if it raises::

    import nitroguard.nsm
    from nitroguard.audit import require_secure_environment

    require_secure_environment(nsm=nitroguard.nsm.open())

Auditors run the same checks with ``nitroguard audit``. Operators of the parent
instance run the parent-side checks (CPU pool, debug-mode enclaves, enclave CID,
allocator configuration) with `run_parent` or ``nitroguard audit --parent``.
Every check reads its facts through `SystemReader` (the one module that reads
files; its root is a parameter) and is a pure function of them. Also here:
`seed_from_nsm` (seed the kernel CRNG from the NSM), `attested_time` and
`ClockGuard` (trusted time).

Layout: `_system` reads files, `_facts` gathers them, `_check` is the check
framework (`@check(id, title)`), `_checks_rng_time` / `_checks_mem_nsm` the
in-enclave checks, `_parent_parse` / `_parent` the parent-side parsers and checks,
`_clock` and `_entropy` trusted time and seeding, `_run` the entry points. This file
only re-exports.
"""

from nitroguard.audit._check import AREAS, ENV_ID, PCR_NOTE, Check, Options, check
from nitroguard.audit._checks import DEFAULT
from nitroguard.audit._clock import (
    ClockEvent,
    ClockGuard,
    SelfAttestation,
    attested_time,
    self_attest,
)
from nitroguard.audit._entropy import RNDADDENTROPY, SeedReport, pack_rand_pool_info, seed_from_nsm
from nitroguard.audit._facts import Facts, gather, gather_parent
from nitroguard.audit._parent import PARENT_CHECKS, ParentCheck, ParentFacts
from nitroguard.audit._parent_parse import (
    MAX_CPU_ID,
    MAX_DESCRIBE_SIZE,
    PARENT_AREAS,
    AllocatorConfig,
    EnclaveInfo,
    format_cpu_list,
    parse_allocator_config,
    parse_cid,
    parse_cpu_list,
    parse_describe_enclaves,
)
from nitroguard.audit._run import (
    evaluate,
    require_secure_environment,
    run,
    run_parent,
    select_checks,
)
from nitroguard.audit._system import FileRead, NodeInfo, SystemReader

__all__ = [
    "AREAS",
    "DEFAULT",
    "ENV_ID",
    "MAX_CPU_ID",
    "MAX_DESCRIBE_SIZE",
    "PARENT_AREAS",
    "PARENT_CHECKS",
    "PCR_NOTE",
    "RNDADDENTROPY",
    "AllocatorConfig",
    "Check",
    "ClockEvent",
    "ClockGuard",
    "EnclaveInfo",
    "Facts",
    "FileRead",
    "NodeInfo",
    "Options",
    "ParentCheck",
    "ParentFacts",
    "SeedReport",
    "SelfAttestation",
    "SystemReader",
    "attested_time",
    "check",
    "evaluate",
    "format_cpu_list",
    "gather",
    "gather_parent",
    "pack_rand_pool_info",
    "parse_allocator_config",
    "parse_cid",
    "parse_cpu_list",
    "parse_describe_enclaves",
    "require_secure_environment",
    "run",
    "run_parent",
    "seed_from_nsm",
    "select_checks",
    "self_attest",
]
