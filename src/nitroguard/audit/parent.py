"""Parent-side audit: checks an operator runs on the parent EC2 instance.

The in-enclave audit (`nitroguard.audit.checks`) looks at the enclave from inside.
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

Everything here is pure: the parsers take text, the checks take `ParentFacts`
(gathered through `nitroguard.audit.probe.SystemProbe` by
`nitroguard.audit.facts.gather_parent`). Parsers raise only `ConfigError`, with a
precise message and a `Reason`; the fuzz tests hold them to that.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nitroguard.audit.probe import FileRead, NodeInfo
from nitroguard.errors import ConfigError, Reason
from nitroguard.findings import Finding, Status

__all__ = [
    "ALLOCATOR_PATH",
    "CPU_DIR",
    "MAX_CPU_ID",
    "MAX_DESCRIBE_SIZE",
    "NE_CPUS_PATH",
    "NE_MODULE_DIR",
    "PARENT_AREAS",
    "PARENT_CHECKS",
    "AllocatorConfig",
    "EnclaveInfo",
    "ParentCheck",
    "ParentFacts",
    "format_cpu_list",
    "parse_allocator_config",
    "parse_cid",
    "parse_cpu_list",
    "parse_describe_enclaves",
    "siblings_path",
]

NE_MODULE_DIR = "/sys/module/nitro_enclaves"
NE_CPUS_PATH = f"{NE_MODULE_DIR}/parameters/ne_cpus"
CPU_DIR = "/sys/devices/system/cpu"
ALLOCATOR_PATH = "/etc/nitro_enclaves/allocator.yaml"

#: Largest CPU id accepted in a cpu-list: the kernel's NR_CPUS ceiling on x86-64 is
#: 8192, so a larger id is not a CPU of this machine. Also bounds range expansion.
MAX_CPU_ID = 8191
#: Longest cpu-list text accepted (the driver's ne_cpus buffer, NE_CPUS_SIZE, is 512).
MAX_CPU_LIST_LEN = 4096
#: Largest describe-enclaves document accepted (nitro-cli prints ~1 KiB per enclave).
MAX_DESCRIBE_SIZE = 1024 * 1024
#: Most enclaves accepted in one describe-enclaves document.
MAX_ENCLAVES = 1024
#: The driver refuses enclaves smaller than 64 MiB (NE_MIN_ENCLAVE_MEM_SIZE).
MIN_ENCLAVE_MIB = 64
#: Largest ``memory_mib`` / ``cpu_count`` value we parse (well above any instance).
MAX_ALLOCATOR_INT = 2**31 - 1
#: vsock CIDs 0-2 are reserved and 3 is the parent (VMADDR_CID_HOST); U32_MAX is
#: VMADDR_CID_ANY. An enclave CID is in 4..2**32-2.
MIN_ENCLAVE_CID = 4
MAX_ENCLAVE_CID = 2**32 - 2

DEBUG_FLAG = "DEBUG_MODE"
RUNNING = "RUNNING"

#: Display order and names of the parent-side areas (the CLI groups findings by these).
PARENT_AREAS = {
    "CPU": "CPU side channels",
    "ATT": "attestation",
    "VS": "vsock",
    "ALLOC": "enclave allocator",
}

# --- cpu-lists ------------------------------------------------------------------------

_NUM = r"[0-9]+"
_ASCII_SPACE = " \t\n\r\v\f"
_GROUP_RE = re.compile(rf"^({_NUM})(?:-({_NUM})(?::({_NUM})/({_NUM}))?)?$")


def _cpu_number(text: str, group: str, what: str) -> int:
    if len(text) > 5:  # "8191" has 4 digits; refuse before int() sees 4000 of them
        raise ConfigError(
            f"{what}: CPU number {text[:12]!r}{'...' if len(text) > 12 else ''} in {group!r} "
            f"is larger than {MAX_CPU_ID}",
            Reason.MALFORMED_CPU_LIST,
        )
    value = int(text)
    if value > MAX_CPU_ID:
        raise ConfigError(
            f"{what}: CPU number {value} in {group!r} is larger than {MAX_CPU_ID}",
            Reason.MALFORMED_CPU_LIST,
        )
    return value


def parse_cpu_list(text: str, *, what: str = "cpu-list") -> frozenset[int]:
    """Parse a kernel cpu-list such as ``1,3``, ``2-3`` or ``0-7:2/4``.

    Follows the kernel's ``bitmap_parselist`` (Documentation/admin-guide/
    kernel-parameters.rst, "cpu lists"), which is what the nitro_enclaves driver
    uses for ``ne_cpus``: groups separated by commas or whitespace, each ``N``,
    ``N-M`` or ``N-M:used/group``; surrounding whitespace is ignored. The ``N``
    (last CPU) shorthand is refused: it names a CPU only the running kernel knows.

    Args:
        text: the list.
        what: what the list is, for error messages (e.g. the file path).

    Returns:
        The CPU ids (empty for an empty or all-whitespace list).

    Raises:
        ConfigError: `malformed_cpu_list`, naming the bad group, when the text is
            longer than 4096 characters, a group is not one of the three forms,
            a range runs backwards (``3-1``), a group size is 0 or smaller than the
            used count, or a CPU number exceeds 8191.
    """
    if len(text) > MAX_CPU_LIST_LEN:
        raise ConfigError(
            f"{what}: cpu-list longer than {MAX_CPU_LIST_LEN} characters",
            Reason.MALFORMED_CPU_LIST,
        )
    cpus: set[int] = set()
    # The kernel's isspace() is ASCII-only: U+00A0 or U+2028 are not separators there.
    for group in re.split(r"[, \t\n\r\v\f]+", text.strip(_ASCII_SPACE)):
        if not group:
            continue
        match = _GROUP_RE.match(group)
        if match is None:
            shown = group if len(group) <= 40 else group[:40] + "..."
            hint = ""
            if group.endswith("-") or group.startswith("-"):
                hint = " (a range needs both ends, e.g. 2-3)"
            elif group == "N" or "N" in group.split("-"):
                hint = " ('N', the last CPU, is not supported: write the number)"
            raise ConfigError(
                f"{what}: {shown!r} is not a CPU number, a range N-M or N-M:used/group{hint}",
                Reason.MALFORMED_CPU_LIST,
            )
        start = _cpu_number(match.group(1), group, what)
        end = start if match.group(2) is None else _cpu_number(match.group(2), group, what)
        if start > end:
            raise ConfigError(
                f"{what}: range {group!r} runs backwards ({start} > {end})",
                Reason.MALFORMED_CPU_LIST,
            )
        used, size = 1, 1
        if match.group(3) is not None:
            used = _cpu_number(match.group(3), group, what)
            size = _cpu_number(match.group(4), group, what)
            if size == 0 or used > size:
                raise ConfigError(
                    f"{what}: in {group!r} the group size must be > 0 and at least the "
                    f"used count ({used}/{size})",
                    Reason.MALFORMED_CPU_LIST,
                )
        cpus.update(cpu for cpu in range(start, end + 1) if (cpu - start) % size < used)
    return frozenset(cpus)


def format_cpu_list(cpus: frozenset[int] | set[int] | Sequence[int]) -> str:
    """Format CPU ids the way sysfs does: ``0-3,6,8-9`` (``(none)`` when empty)."""
    ordered = sorted(set(cpus))
    if not ordered:
        return "(none)"
    parts: list[str] = []
    start = prev = ordered[0]
    for cpu in [*ordered[1:], None]:
        if cpu is not None and cpu == prev + 1:
            prev = cpu
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if cpu is not None:
            start = prev = cpu
    return ",".join(parts)


# --- describe-enclaves ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class EnclaveInfo:
    """One entry of ``nitro-cli describe-enclaves``.

    Attributes:
        enclave_id: ``EnclaveID`` (``i-...-enc...``).
        cid: ``EnclaveCID``.
        state: ``State`` (``RUNNING``, ``TERMINATING``, ...).
        flags: ``Flags`` (``NONE`` or ``DEBUG_MODE``).
        name: ``EnclaveName`` (newer nitro-cli), or None.
        cpu_ids: ``CPUIDs``, or None when absent (older nitro-cli).
        memory_mib: ``MemoryMiB``, or None.
    """

    enclave_id: str
    cid: int
    state: str
    flags: str
    name: str | None = None
    cpu_ids: tuple[int, ...] | None = None
    memory_mib: int | None = None

    @property
    def debug(self) -> bool:
        """Whether the launch flags include ``DEBUG_MODE``."""
        return DEBUG_FLAG in re.split(r"[\s|,]+", self.flags.upper())

    @property
    def running(self) -> bool:
        """Whether ``State`` is ``RUNNING``."""
        return self.state.upper() == RUNNING

    def describe(self) -> str:
        """Evidence text: ``EnclaveID 'i-..', CID 16, Flags 'NONE', State 'RUNNING'``."""
        name = f" ({self.name!r})" if self.name else ""
        return (
            f"EnclaveID {self.enclave_id!r}{name}, CID {self.cid}, "
            f"Flags {self.flags!r}, State {self.state!r}"
        )


def _bad_json(message: str) -> ConfigError:
    return ConfigError(f"describe-enclaves: {message}", Reason.MALFORMED_DESCRIBE_ENCLAVES)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _bad_json(f"duplicate key {key[:64]!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise _bad_json(f"{name} is not valid JSON")


def _field(entry: Mapping[str, Any], index: int, key: str, kind: type, required: bool) -> Any:
    if key not in entry:
        if required:
            raise _bad_json(f"enclave #{index}: missing {key!r}")
        return None
    value: Any = entry[key]
    # JSON true/false are Python bools, which are ints: never accept them as numbers.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = {int: "an integer", str: "a string", list: "an array"}[kind]
        raise _bad_json(f"enclave #{index}: {key!r} is not {expected}")
    if isinstance(value, str) and len(value) > 256:
        raise _bad_json(f"enclave #{index}: {key!r} is longer than 256 characters")
    if isinstance(value, int) and not 0 <= value < 2**64:
        raise _bad_json(f"enclave #{index}: {key!r} = {value} is out of range")
    return value


def parse_describe_enclaves(data: bytes | str) -> tuple[EnclaveInfo, ...]:
    """Parse the JSON that ``nitro-cli describe-enclaves`` prints.

    Unknown keys (``PCRs``, ``Measurements``, ``ProcessID`` ...) are ignored;
    ``EnclaveID``, ``EnclaveCID``, ``State`` and ``Flags`` are required.

    Args:
        data: the command's standard output (UTF-8).

    Returns:
        One `EnclaveInfo` per listed enclave (empty for ``[]``).

    Raises:
        ConfigError: `malformed_describe_enclaves` when the input is over 1 MiB,
            not UTF-8, not JSON (or uses NaN/Infinity or duplicate keys), nested
            too deeply, not an array of objects, lists more than 1024 enclaves, or
            an entry lacks a field or has one of the wrong type.
    """
    if len(data) > MAX_DESCRIBE_SIZE:
        raise _bad_json(f"input larger than {MAX_DESCRIBE_SIZE} bytes")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad_json(f"not UTF-8 (byte {exc.start})") from None
    else:
        text = data
    if not text.strip():
        raise _bad_json("empty input (expected the JSON array nitro-cli prints)")
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise _bad_json(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise _bad_json("nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more than 4300 digits
        raise _bad_json(f"not JSON: {str(exc)[:80]}") from None
    if isinstance(doc, dict):
        raise _bad_json(
            "expected a JSON array of enclaves (the output of nitro-cli describe-enclaves), "
            "got one object"
        )
    if not isinstance(doc, list):
        raise _bad_json(f"expected a JSON array of enclaves, got {type(doc).__name__}")
    if len(doc) > MAX_ENCLAVES:
        raise _bad_json(f"more than {MAX_ENCLAVES} enclaves listed")
    enclaves: list[EnclaveInfo] = []
    for index, entry in enumerate(doc):
        if not isinstance(entry, dict):
            raise _bad_json(f"enclave #{index} is not an object")
        cpu_ids = _field(entry, index, "CPUIDs", list, False)
        if cpu_ids is not None:
            if len(cpu_ids) > MAX_CPU_ID + 1:
                raise _bad_json(f"enclave #{index}: more than {MAX_CPU_ID + 1} CPUIDs")
            for cpu in cpu_ids:
                if not isinstance(cpu, int) or isinstance(cpu, bool) or not 0 <= cpu <= MAX_CPU_ID:
                    raise _bad_json(
                        f"enclave #{index}: CPUIDs holds {str(cpu)[:20]!r}, "
                        f"not a CPU number 0-{MAX_CPU_ID}"
                    )
            cpu_ids = tuple(cpu_ids)
        enclaves.append(
            EnclaveInfo(
                enclave_id=_field(entry, index, "EnclaveID", str, True),
                cid=_field(entry, index, "EnclaveCID", int, True),
                state=_field(entry, index, "State", str, True),
                flags=_field(entry, index, "Flags", str, True),
                name=_field(entry, index, "EnclaveName", str, False),
                cpu_ids=cpu_ids,
                memory_mib=_field(entry, index, "MemoryMiB", int, False),
            )
        )
    return tuple(enclaves)


def parse_cid(value: str | int) -> int:
    """Parse an enclave CID (``--expect-cid``): an integer in 4..4294967294.

    Raises:
        ConfigError: `invalid_argument` for anything else (0-2 are reserved, 3 is
            the parent, 4294967295 is VMADDR_CID_ANY).
    """
    if isinstance(value, bool):
        raise ConfigError(f"enclave CID: {value!r} is not an integer")
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[0-9]{1,10}", text):
            raise ConfigError(f"enclave CID: {value[:40]!r} is not a decimal integer")
        value = int(text)
    if not MIN_ENCLAVE_CID <= value <= MAX_ENCLAVE_CID:
        raise ConfigError(
            f"enclave CID {value} is out of range: enclave CIDs are "
            f"{MIN_ENCLAVE_CID}..{MAX_ENCLAVE_CID} (0-2 reserved, 3 is the parent)"
        )
    return value


# --- allocator.yaml -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class AllocatorConfig:
    """The settings of ``/etc/nitro_enclaves/allocator.yaml``.

    Attributes:
        memory_mib: ``memory_mib``, or None when absent.
        cpu_count: ``cpu_count``, or None.
        cpu_pool: ``cpu_pool`` parsed as a cpu-list, or None.
        cpu_pool_text: ``cpu_pool`` as written.
    """

    memory_mib: int | None = None
    cpu_count: int | None = None
    cpu_pool: frozenset[int] | None = None
    cpu_pool_text: str | None = None


_ALLOCATOR_KEYS = ("memory_mib", "cpu_count", "cpu_pool")
_KEY_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)[ \t]*:(.*)$")


def _bad_yaml(line: int | None, message: str) -> ConfigError:
    where = "allocator.yaml" if line is None else f"allocator.yaml line {line}"
    return ConfigError(f"{where}: {message}", Reason.MALFORMED_ALLOCATOR_CONFIG)


def _yaml_scalar(raw: str, line: int, key: str) -> str:
    # The plain and quoted scalars of the YAML subset: a '#' after whitespace starts a
    # comment (YAML 1.2 section 6.6); quotes must close on the same line, no escapes.
    value = raw.strip()
    if value[:1] in ("'", '"'):
        quote = value[0]
        close = value.find(quote, 1)
        if close < 0:
            raise _bad_yaml(line, f"{key}: unterminated {quote} quote")
        inner, rest = value[1:close], value[close + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise _bad_yaml(line, f"{key}: unexpected text after the closing quote")
        if "\\" in inner:
            raise _bad_yaml(line, f"{key}: escapes in quoted values are not supported")
        return inner
    comment = re.search(r"\s#", value)
    if comment is not None:
        value = value[: comment.start()].rstrip()
    if value[:1] in ("[", "{", "&", "*", "!", "|", ">", "@", "`", "%"):
        raise _bad_yaml(
            line, f"{key}: {value[:40]!r} uses YAML syntax outside the supported subset"
        )
    return value


def _yaml_int(value: str, line: int, key: str) -> int:
    if not re.fullmatch(r"[0-9]{1,10}", value):
        raise _bad_yaml(line, f"{key}: {value[:40]!r} is not a decimal integer")
    if len(value) > 1 and value.startswith("0"):
        # YAML 1.1 readers (and so some allocator versions) take 0644 as octal.
        raise _bad_yaml(line, f"{key}: {value!r} has a leading zero (octal in YAML 1.1)")
    number = int(value)
    if number > MAX_ALLOCATOR_INT:
        raise _bad_yaml(line, f"{key}: {number} is larger than {MAX_ALLOCATOR_INT}")
    return number


def parse_allocator_config(text: str) -> AllocatorConfig:
    """Parse ``allocator.yaml``: the tiny YAML subset nitro-cli ships.

    Accepted: an optional ``---`` first line, blank lines, ``#`` comments and
    top-level ``key: value`` lines for ``memory_mib``, ``cpu_count`` (decimal
    integers) and ``cpu_pool`` (a cpu-list), values optionally quoted and followed
    by a comment. Everything else is refused rather than guessed at.

    Args:
        text: the file content.

    Returns:
        The settings found (absent keys are None).

    Raises:
        ConfigError: `malformed_allocator_config`, naming the line, for indented or
            list lines, unknown or repeated keys, empty values, non-integers,
            YAML syntax outside the subset, a second document, or a bad cpu-list.
    """
    values: dict[str, tuple[int, str]] = {}
    seen_content = False
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.rstrip("\r")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped == "---" or stripped.startswith("--- #"):
            if seen_content:
                raise _bad_yaml(number, "a second YAML document ('---') is not supported")
            seen_content = True
            continue
        if stripped == "..." and line == stripped:
            break
        seen_content = True
        if line[:1] in (" ", "\t"):
            raise _bad_yaml(number, "indented line: nested YAML is not supported")
        if stripped.startswith("- ") or stripped == "-":
            raise _bad_yaml(number, "a YAML list ('- ...') is not supported")
        match = _KEY_RE.match(line)
        if match is None:
            raise _bad_yaml(number, f"{stripped[:40]!r} is not a 'key: value' line")
        key, rest = match.group(1), match.group(2)
        if rest and rest[0] not in (" ", "\t"):
            raise _bad_yaml(number, f"{key}: a space must follow the ':'")
        if key not in _ALLOCATOR_KEYS:
            raise _bad_yaml(
                number, f"unknown key {key[:40]!r} (known: {', '.join(_ALLOCATOR_KEYS)})"
            )
        if key in values:
            raise _bad_yaml(number, f"{key} is set twice (first on line {values[key][0]})")
        value = _yaml_scalar(rest, number, key)
        if not value:
            raise _bad_yaml(number, f"{key} has no value")
        values[key] = (number, value)
    memory = cpu_count = None
    pool: frozenset[int] | None = None
    pool_text: str | None = None
    if "memory_mib" in values:
        where, text_value = values["memory_mib"]
        memory = _yaml_int(text_value, where, "memory_mib")
    if "cpu_count" in values:
        where, text_value = values["cpu_count"]
        cpu_count = _yaml_int(text_value, where, "cpu_count")
    if "cpu_pool" in values:
        where, pool_text = values["cpu_pool"]
        try:
            pool = parse_cpu_list(pool_text, what="cpu_pool")
        except ConfigError as exc:
            raise _bad_yaml(where, exc.message) from None
    return AllocatorConfig(memory, cpu_count, pool, pool_text)


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


_CPU2_TITLE = "NE CPU pool is whole cores, not CPU 0's (parent)"
_CPU2_FIX = (
    "Give the enclaves whole cores and keep CPU 0's core for the parent: set cpu_pool in "
    "/etc/nitro_enclaves/allocator.yaml to complete sibling sets (see "
    "/sys/devices/system/cpu/cpuN/topology/thread_siblings_list) without CPU 0's core, or "
    "use cpu_count, then `systemctl restart nitro-enclaves-allocator.service`."
)


def check_cpu2(facts: ParentFacts) -> Finding:
    """CPU-2: the NE CPU pool is whole physical cores and excludes CPU 0's core."""
    title = _CPU2_TITLE
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


def check_att2_parent(facts: ParentFacts) -> Finding:
    """ATT-2 (parent): no enclave on this host runs with ``Flags: DEBUG_MODE``."""
    title = "No enclave runs in debug mode (describe-enclaves)"
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


def check_vs5_parent(facts: ParentFacts) -> Finding:
    """VS-5 (parent): the CID the operator proxies to is a running enclave's EnclaveCID."""
    title = "Proxied CID is the running enclave's (describe-enclaves)"
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


def check_allocator(facts: ParentFacts) -> Finding:
    """ALLOC-1: ``allocator.yaml`` is coherent and matches the live pool."""
    title = "Enclave allocator configuration (allocator.yaml)"
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


PARENT_CHECKS: tuple[ParentCheck, ...] = (
    ParentCheck("CPU-2", _CPU2_TITLE, check_cpu2),
    ParentCheck("ATT-2", "No enclave runs in debug mode (describe-enclaves)", check_att2_parent),
    ParentCheck(
        "VS-5", "Proxied CID is the running enclave's (describe-enclaves)", check_vs5_parent
    ),
    ParentCheck("ALLOC-1", "Enclave allocator configuration (allocator.yaml)", check_allocator),
)
