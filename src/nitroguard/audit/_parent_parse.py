"""Parsers for the parent-side audit: CPU lists, ``describe-enclaves`` JSON, allocator.yaml.

Everything here is pure: the parsers take text and raise only `ConfigError`, with a
precise message and a `Reason`; the fuzz tests hold them to that. The checks that use
them are in `nitroguard.audit._parent`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from nitroguard._util import is_int
from nitroguard.errors import ConfigError, Reason

__all__ = [
    "ALLOCATOR_PATH",
    "CPU_DIR",
    "MAX_CPU_ID",
    "MAX_DESCRIBE_SIZE",
    "NE_CPUS_PATH",
    "NE_MODULE_DIR",
    "PARENT_AREAS",
    "AllocatorConfig",
    "EnclaveInfo",
    "format_cpu_list",
    "parse_allocator_config",
    "parse_cid",
    "parse_cpu_list",
    "parse_describe_enclaves",
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
                if not is_int(cpu) or not 0 <= cpu <= MAX_CPU_ID:
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
