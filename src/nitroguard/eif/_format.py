"""EIF binary layout: constants, the 548-byte header and the 12-byte section header.

Everything here follows ``../shared/spec/eif.md`` section 2 (itself taken from
``aws/aws-nitro-enclaves-image-format:src/defs/mod.rs`` and the README spec).
All multi-byte fields are big-endian. Pure functions, no I/O.
"""

from __future__ import annotations

import dataclasses
import enum
import struct

from nitroguard.errors import EifError, Reason

__all__ = [
    "CRC_OFFSET",
    "CURRENT_VERSION",
    "EIF_MAGIC",
    "HEADER_SIZE",
    "MAX_NUM_SECTIONS",
    "SECTION_HEADER_SIZE",
    "SIGNATURE_MAX_SIZE",
    "EifHeader",
    "SectionHeader",
    "SectionType",
    "crc32_combine",
]

EIF_MAGIC = b".eif"
#: The version the builder writes (spec 2.6: v4 adds the mandatory metadata section).
CURRENT_VERSION = 4
#: Versions we accept: 0 and 1 were never released, above 4 is undefined (spec 2.6).
SUPPORTED_VERSIONS = frozenset({2, 3, 4})
MAX_NUM_SECTIONS = 32
HEADER_SIZE = 548
#: The CRC field is the last 4 bytes of the header; the CRC covers everything else.
CRC_OFFSET = 544
SECTION_HEADER_SIZE = 12
#: ``SIGNATURE_MAX_SIZE`` in the README spec.
SIGNATURE_MAX_SIZE = 32768
#: Header flags bit 0: aarch64 image (``EIF_HDR_ARCH_ARM64``).
ARCH_ARM64 = 0x1
#: What the builder writes into the (unused) default_mem / default_cpus fields.
DEFAULT_MEM = 1024 * 1024 * 1024
DEFAULT_CPUS = 2

_U64_MAX = (1 << 64) - 1
_HEADER = struct.Struct(">4sHHQQHH32Q32QII")
_SECTION_HEADER = struct.Struct(">HHQ")


class SectionType(enum.IntEnum):
    """``EifSectionType`` (spec 2.3). The hypervisor rejects 0 and values >= 6."""

    INVALID = 0
    KERNEL = 1
    CMDLINE = 2
    RAMDISK = 3
    SIGNATURE = 4
    METADATA = 5


@dataclasses.dataclass(frozen=True, slots=True)
class EifHeader:
    """The decoded 548-byte EIF header (spec 2.1).

    Attributes:
        magic: the 4 magic bytes (``b".eif"`` when valid).
        version: the format version.
        flags: header flags; bit 0 is the aarch64 marker.
        default_mem: unused by the hypervisor; the builder writes 1 GiB.
        default_cpus: unused; the builder writes 2.
        reserved: the reserved u16 (0).
        num_sections: how many table entries are used.
        section_offsets: all 32 offsets (absolute offsets of the 12-byte section headers).
        section_sizes: all 32 data sizes (without the 12-byte section header).
        unused: the unused u32 before the CRC (0).
        crc32: the stored CRC-32.
    """

    magic: bytes
    version: int
    flags: int
    default_mem: int
    default_cpus: int
    reserved: int
    num_sections: int
    section_offsets: tuple[int, ...]
    section_sizes: tuple[int, ...]
    unused: int
    crc32: int

    @classmethod
    def decode(cls, data: bytes) -> EifHeader:
        """Decode the header bytes without validating them.

        Raises:
            EifError: `truncated_file` when fewer than 548 bytes are given.
        """
        if len(data) < HEADER_SIZE:
            raise EifError(
                f"file is {len(data)} bytes, shorter than the {HEADER_SIZE}-byte EIF header",
                Reason.TRUNCATED_FILE,
            )
        fields = _HEADER.unpack_from(data, 0)
        return cls(
            magic=fields[0],
            version=fields[1],
            flags=fields[2],
            default_mem=fields[3],
            default_cpus=fields[4],
            reserved=fields[5],
            num_sections=fields[6],
            section_offsets=tuple(fields[7:39]),
            section_sizes=tuple(fields[39:71]),
            unused=fields[71],
            crc32=fields[72],
        )

    def encode(self) -> bytes:
        """The 548 header bytes, big-endian."""
        return _HEADER.pack(
            self.magic,
            self.version,
            self.flags,
            self.default_mem,
            self.default_cpus,
            self.reserved,
            self.num_sections,
            *self.section_offsets,
            *self.section_sizes,
            self.unused,
            self.crc32,
        )

    @property
    def arch(self) -> str:
        """``"aarch64"`` when flag bit 0 is set, else ``"x86_64"``."""
        return "aarch64" if self.flags & ARCH_ARM64 else "x86_64"


@dataclasses.dataclass(frozen=True, slots=True)
class SectionHeader:
    """The 12-byte header in front of each section's data (spec 2.2)."""

    type: int
    flags: int
    size: int

    @classmethod
    def decode(cls, data: bytes) -> SectionHeader:
        """Decode 12 bytes (the caller guarantees the length)."""
        stype, flags, size = _SECTION_HEADER.unpack(data)
        return cls(stype, flags, size)

    def encode(self) -> bytes:
        """The 12 header bytes."""
        return _SECTION_HEADER.pack(self.type, self.flags, self.size)


def section_type_name(value: int) -> str:
    """A readable name for a section type value, known or not."""
    try:
        return SectionType(value).name.lower()
    except ValueError:
        return f"type {value}"


def check_u64(value: int, what: str) -> None:
    """Reject a value that does not fit in a u64 (the format's width).

    Raises:
        EifError: `section_out_of_bounds`.
    """
    if value > _U64_MAX:
        raise EifError(f"{what} overflows 64 bits", Reason.SECTION_OUT_OF_BOUNDS)


# --- CRC-32 combination -------------------------------------------------------------
# zlib's crc32_combine (not exposed by Python's zlib), in GF(2) matrix form. It lets the
# writer checksum the sections while streaming them and prepend the header's CRC later,
# without reading the sections twice.
_CRC_POLY = 0xEDB88320


def _gf2_times(mat: list[int], vec: int) -> int:
    total = 0
    i = 0
    while vec:
        if vec & 1:
            total ^= mat[i]
        vec >>= 1
        i += 1
    return total


def _gf2_square(mat: list[int]) -> list[int]:
    return [_gf2_times(mat, mat[n]) for n in range(32)]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of ``A || B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)``.

    Same result as zlib's ``crc32_combine`` (CRC-32/ISO-HDLC).
    """
    if len2 <= 0:
        return crc1
    odd = [_CRC_POLY] + [1 << (n - 1) for n in range(1, 32)]
    even = _gf2_square(odd)
    odd = _gf2_square(even)
    while True:
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def _gf2_compose(a: list[int], b: list[int]) -> list[int]:
    return [_gf2_times(a, b[n]) for n in range(32)]


def crc32_shift_operator(length: int) -> list[int]:
    """The GF(2) matrix that advances a CRC-32 over `length` zero bytes.

    ``crc32(A || B) == crc32_shift(op, crc32(A), crc32(B))`` for ``op`` built from
    ``len(B)``: the same maths as `crc32_combine`, with the operator kept so that many
    equal-length blocks can be combined for the price of one matrix-vector product.
    """
    op = [_CRC_POLY] + [1 << (n - 1) for n in range(1, 32)]  # one zero bit
    for _ in range(3):
        op = _gf2_square(op)  # one zero byte
    result = [1 << n for n in range(32)]  # identity
    while length:
        if length & 1:
            result = _gf2_compose(op, result)
        length >>= 1
        if length:
            op = _gf2_square(op)
    return result


def crc32_shift(op: list[int], crc1: int, crc2: int) -> int:
    """``crc32(A || B)`` from ``crc32(A)``, ``crc32(B)`` and B's shift operator."""
    return _gf2_times(op, crc1) ^ crc2
