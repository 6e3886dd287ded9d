"""Read and validate an EIF the way the hypervisor does, in one streaming pass.

Parsing follows the header's section table (``../shared/spec/eif.md`` 2.7: the
virtualization stack uses the table; nitro-cli walks the file sequentially). We also
do nitro-cli's sequential walk and report every place where the two disagree (gaps,
trailing bytes, table order differing from file order), because there the attested
PCRs and ``nitro-cli describe-eif`` can differ.

Memory stays constant: section data is streamed through a fixed buffer. Only the
cmdline, the metadata and the signature section are kept, each under a fixed bound
checked against the table *before* anything is read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import itertools
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from nitroguard.errors import EifError, Error, Reason

from ._format import (
    CRC_OFFSET,
    HEADER_SIZE,
    MAX_NUM_SECTIONS,
    SECTION_HEADER_SIZE,
    SIGNATURE_MAX_SIZE,
    SUPPORTED_VERSIONS,
    EifHeader,
    SectionHeader,
    SectionType,
    check_u64,
    section_type_name,
)
from ._measure import RING, Measurements, _Measurer
from ._signature import SignatureReport, SignatureSection, check, parse_signature_section

__all__ = [
    "MAX_CMDLINE_SIZE",
    "MAX_METADATA_SIZE",
    "EifImage",
    "Section",
    "read_eif",
]

#: Linux caps the command line at a few KiB (COMMAND_LINE_SIZE); 64 KiB is generous.
MAX_CMDLINE_SIZE = 64 * 1024
#: Metadata is unmeasured JSON (spec 5); nitro-cli's includes `docker inspect` output.
MAX_METADATA_SIZE = 1024 * 1024
#: The kernel prefix kept to read the bzImage version string (setup header, spec-free).
_KERNEL_PREFIX = 64 * 1024
_DEFAULT_CHUNK = 2 * 1024 * 1024
#: nitro-cli's sequential walk can be sent through crafted bytes; we follow it this far.
_MAX_WALK = MAX_NUM_SECTIONS + 1

EifSource = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO


@dataclasses.dataclass(frozen=True, slots=True)
class Section:
    """One section, as located by the header table.

    Attributes:
        index: the table index.
        type: the section type (from the section header).
        offset: absolute offset of the 12-byte section header.
        size: the data size (table and section header agree).
        flags: the section header flags (always 0 in practice).
    """

    index: int
    type: SectionType
    offset: int
    size: int
    flags: int

    @property
    def data_offset(self) -> int:
        """Absolute offset of the section data."""
        return self.offset + SECTION_HEADER_SIZE

    @property
    def end(self) -> int:
        """Absolute offset one past the section data."""
        return self.offset + SECTION_HEADER_SIZE + self.size


@dataclasses.dataclass(frozen=True, slots=True)
class EifImage:
    """A parsed, measured EIF.

    Attributes:
        header: the decoded header.
        sections: the sections in table order.
        file_size: the size of the file in bytes.
        measurements: PCR0/1/2 (and PCR8 when signed), as the hypervisor computes them.
        crc_computed: the CRC-32 we computed (header table order, like QEMU).
        cmdline: the kernel command line bytes exactly as measured.
        metadata: the parsed metadata JSON (None when absent). Not attested.
        metadata_raw: the metadata section bytes (None when absent).
        signature: the parsed signature section (None when unsigned).
        kernel_version: the version string from the x86 bzImage setup header, or else
            from the "Linux version" banner of an uncompressed (aarch64) Image: both are
            measured, unlike the metadata. None when neither is found.
        layout_issues: every disagreement with nitro-cli's sequential walk, and every
            oddity the hypervisor may treat differently from nitro-cli.
    """

    header: EifHeader
    sections: tuple[Section, ...]
    file_size: int
    measurements: Measurements
    crc_computed: int
    cmdline: bytes
    metadata: Any
    metadata_raw: bytes | None
    signature: SignatureSection | None
    kernel_version: str | None
    layout_issues: tuple[str, ...]

    @property
    def version(self) -> int:
        """The EIF format version."""
        return self.header.version

    @property
    def crc_ok(self) -> bool:
        """Whether the stored CRC matches ours."""
        return self.crc_computed == self.header.crc32

    @property
    def is_signed(self) -> bool:
        """Whether a signature section is present."""
        return self.signature is not None

    @property
    def cmdline_text(self) -> str:
        """The command line as text (undecodable bytes replaced)."""
        return self.cmdline.decode("utf-8", errors="replace")

    @property
    def metadata_kernel_version(self) -> str | None:
        """``BuildMetadata.KernelVersion`` from the (unattested) metadata, if any."""
        if isinstance(self.metadata, dict):
            build = self.metadata.get("BuildMetadata")
            if isinstance(build, dict):
                value = build.get("KernelVersion")
                if isinstance(value, str):
                    return value
        return None

    def check_signature(self, at: dt.datetime) -> SignatureReport | None:
        """Judge the signature at time `at` (None when unsigned). Never raises."""
        if self.signature is None:
            return None
        return check(self.signature, self.measurements.pcr0, at)


class _Source:
    """Positional reads over a binary file object, with exact-length guarantees."""

    def __init__(self, fh: BinaryIO, name: str) -> None:
        self.fh = fh
        self.name = name
        try:
            self.size = fh.seek(0, io.SEEK_END)
        except (OSError, ValueError) as exc:
            raise Error(f"{name}: cannot seek: {exc}", Reason.UNREADABLE_INPUT) from exc

    def read(self, offset: int, size: int) -> bytes:
        try:
            self.fh.seek(offset)
            data = self.fh.read(size)
        except (OSError, ValueError) as exc:
            raise Error(f"{self.name}: read failed: {exc}", Reason.UNREADABLE_INPUT) from exc
        if len(data) != size:
            # The table was checked against the size: the file shrank under us.
            raise EifError(
                f"{self.name}: short read at offset {offset} (file changed while reading?)",
                Reason.TRUNCATED_FILE,
            )
        return data

    def chunks(self, offset: int, size: int, buffers: Iterator[bytearray]) -> Iterator[memoryview]:
        """Yield the bytes [offset, offset + size) in chunks, each read into the next
        buffer of `buffers` (a rotation: the previous chunk may still be in use)."""
        try:
            self.fh.seek(offset)
            remaining = size
            while remaining:
                buf = next(buffers)
                view = memoryview(buf)
                want = min(remaining, len(buf))
                got = self.fh.readinto(view[:want])  # type: ignore[attr-defined]
                if not got:
                    raise EifError(
                        f"{self.name}: short read at offset {offset + size - remaining}"
                        " (file changed while reading?)",
                        Reason.TRUNCATED_FILE,
                    )
                remaining -= got
                yield view[:got]
        except (OSError, ValueError) as exc:
            raise Error(f"{self.name}: read failed: {exc}", Reason.UNREADABLE_INPUT) from exc


def _validate_header(header: EifHeader) -> None:
    if header.magic != b".eif":
        raise EifError(
            f"bad magic {header.magic.hex()} (expected 2e656966, '.eif')", Reason.BAD_MAGIC
        )
    if header.version not in SUPPORTED_VERSIONS:
        raise EifError(
            f"EIF version {header.version} is not supported (known: 2, 3, 4)",
            Reason.UNSUPPORTED_VERSION,
            version=header.version,
        )
    if header.num_sections > MAX_NUM_SECTIONS:
        raise EifError(
            f"header declares {header.num_sections} sections, more than {MAX_NUM_SECTIONS}",
            Reason.TOO_MANY_SECTIONS,
        )
    if header.num_sections == 0:
        raise EifError("header declares no sections", Reason.MISSING_SECTION)


def _locate(header: EifHeader, file_size: int) -> list[tuple[int, int, int]]:
    """Check the table's bounds and overlaps; return (index, offset, size) in table order."""
    entries = []
    for i in range(header.num_sections):
        offset, size = header.section_offsets[i], header.section_sizes[i]
        end = offset + SECTION_HEADER_SIZE + size
        check_u64(end, f"section {i} (offset {offset} + 12 + size {size})")
        if offset < HEADER_SIZE:
            raise EifError(
                f"section {i} at offset {offset} overlaps the {HEADER_SIZE}-byte header",
                Reason.OVERLAPPING_SECTIONS,
                section=i,
            )
        if end > file_size:
            if size > file_size:
                raise EifError(
                    f"section {i} declares {size} data bytes, more than the whole file "
                    f"({file_size} bytes)",
                    Reason.SECTION_OUT_OF_BOUNDS,
                    section=i,
                )
            raise EifError(
                f"section {i} at offset {offset} ends at {end}, past the end of the file "
                f"({file_size} bytes)",
                Reason.TRUNCATED_FILE,
                section=i,
            )
        entries.append((i, offset, size))
    ordered = sorted(entries, key=lambda e: e[1])
    for (ia, oa, sa), (ib, ob, _sb) in itertools.pairwise(ordered):
        if oa + SECTION_HEADER_SIZE + sa > ob:
            raise EifError(
                f"sections {ia} [{oa}, {oa + SECTION_HEADER_SIZE + sa}) and {ib} (at {ob}) overlap",
                Reason.OVERLAPPING_SECTIONS,
                sections=[ia, ib],
            )
    return entries


def _read_sections(
    source: _Source, header: EifHeader, entries: list[tuple[int, int, int]]
) -> tuple[Section, ...]:
    sections = []
    for i, offset, size in entries:
        sh = SectionHeader.decode(source.read(offset, SECTION_HEADER_SIZE))
        if sh.type == SectionType.INVALID or sh.type not in SectionType._value2member_map_:
            raise EifError(
                f"section {i} at offset {offset} has "
                + ("the invalid section type 0" if sh.type == 0 else f"unknown type {sh.type}"),
                Reason.UNKNOWN_SECTION_TYPE,
                section=i,
            )
        if sh.size != size:
            raise EifError(
                f"section {i} ({section_type_name(sh.type)}) header says {sh.size} bytes, "
                f"the table says {size}",
                Reason.SECTION_SIZE_MISMATCH,
                section=i,
            )
        sections.append(Section(i, SectionType(sh.type), offset, size, sh.flags))
    return tuple(sections)


def _check_composition(header: EifHeader, sections: tuple[Section, ...]) -> None:
    """The hypervisor's rules on which sections appear (spec 2.7)."""
    counts = dict.fromkeys(SectionType, 0)
    for s in sections:
        counts[s.type] += 1
    for stype in (SectionType.KERNEL, SectionType.CMDLINE):
        if counts[stype] == 0:
            raise EifError(f"no {stype.name.lower()} section", Reason.MISSING_SECTION)
    for stype in (
        SectionType.KERNEL,
        SectionType.CMDLINE,
        SectionType.METADATA,
        SectionType.SIGNATURE,
    ):
        if counts[stype] > 1:
            raise EifError(
                f"{counts[stype]} {stype.name.lower()} sections (at most one allowed)",
                Reason.DUPLICATE_SECTION,
            )
    if header.version >= 4 and counts[SectionType.METADATA] == 0:
        raise EifError("version 4 image without a metadata section", Reason.MISSING_SECTION)
    seen_kernel = False
    for s in sections:
        if s.type == SectionType.KERNEL:
            seen_kernel = True
        elif s.type == SectionType.RAMDISK and not seen_kernel:
            raise EifError(f"ramdisk section {s.index} comes before the kernel", Reason.BAD_SECTION)
        if s.type == SectionType.CMDLINE and s.size > MAX_CMDLINE_SIZE:
            raise EifError(
                f"cmdline section of {s.size} bytes exceeds {MAX_CMDLINE_SIZE}",
                Reason.BAD_SECTION,
            )
        if s.type == SectionType.METADATA and s.size > MAX_METADATA_SIZE:
            raise EifError(
                f"metadata section of {s.size} bytes exceeds {MAX_METADATA_SIZE}",
                Reason.BAD_METADATA,
            )
        if s.type == SectionType.SIGNATURE and s.size > SIGNATURE_MAX_SIZE:
            raise EifError(
                f"signature section of {s.size} bytes exceeds {SIGNATURE_MAX_SIZE}",
                Reason.BAD_SIGNATURE_SECTION,
            )


def _layout_issues(source: _Source, header: EifHeader, sections: tuple[Section, ...]) -> list[str]:
    """Where nitro-cli's sequential walk (or QEMU's stricter rules) disagree with the table."""
    issues: list[str] = []
    if header.flags & ~0x1:
        issues.append(f"reserved header flag bits set (flags {header.flags:#06x})")
    if header.reserved or header.unused:
        issues.append("reserved header fields are not zero")
    for i in range(header.num_sections, MAX_NUM_SECTIONS):
        if header.section_offsets[i] or header.section_sizes[i]:
            issues.append(f"unused section table entry {i} is not zero")
            break
    issues.extend(
        f"section {s.index} has flags {s.flags:#06x} (QEMU rejects non-zero)"
        for s in sections
        if s.flags
    )
    if not any(s.type == SectionType.RAMDISK for s in sections):
        issues.append("no ramdisk section (QEMU refuses such an image)")
    by_offset = sorted(sections, key=lambda s: s.offset)
    if [s.index for s in by_offset] != [s.index for s in sections]:
        issues.append(
            "the section table is not in file order: the hypervisor measures in table "
            "order, nitro-cli in file order, so their PCRs can differ"
        )
    pos = HEADER_SIZE
    for s in by_offset:
        if s.offset > pos:
            issues.append(
                f"{s.offset - pos} byte gap before section {s.index} at offset {pos}: "
                "not covered by the CRC; nitro-cli would parse it as section headers"
            )
        pos = s.end
    if pos < source.size:
        issues.append(
            f"{source.size - pos} trailing byte(s) after the last section: not covered by "
            "the CRC"
            + ("; nitro-cli would parse them as a section" if source.size - pos >= 12 else "")
        )
    # nitro-cli's EifReader: sections back to back from byte 548, table ignored.
    walk: list[tuple[int, int, int]] = []
    pos = HEADER_SIZE
    while pos + SECTION_HEADER_SIZE <= source.size and len(walk) < _MAX_WALK:
        sh = SectionHeader.decode(source.read(pos, SECTION_HEADER_SIZE))
        walk.append((pos, sh.type, sh.size))
        pos += SECTION_HEADER_SIZE + sh.size
    table = [(s.offset, int(s.type), s.size) for s in sections]
    if walk != table:
        issues.append(
            f"nitro-cli's sequential walk finds {len(walk)} section(s) "
            f"{[(o, section_type_name(t), n) for o, t, n in walk[:8]]}, the table lists "
            f"{len(table)} {[(o, section_type_name(t), n) for o, t, n in table[:8]]}"
        )
    return issues


def _kernel_version(prefix: bytes) -> str | None:
    """The version string of an x86 bzImage (boot protocol setup header), if present."""
    if len(prefix) < 0x210 or prefix[0x202:0x206] != b"HdrS":
        return None
    if int.from_bytes(prefix[0x206:0x208], "little") < 0x0200:
        return None
    ptr = int.from_bytes(prefix[0x20E:0x210], "little")
    if not ptr:
        return None
    start = ptr + 0x200
    end = prefix.find(b"\0", start, start + 256)
    if start >= len(prefix) or end < 0:
        return None
    text = prefix[start:end].decode("ascii", errors="replace").strip()
    return text or None


def _parse_metadata(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise EifError(f"metadata is not UTF-8: {exc.reason}", Reason.BAD_METADATA) from None
    except json.JSONDecodeError as exc:
        raise EifError(f"metadata is not valid JSON: {exc}", Reason.BAD_METADATA) from None
    except RecursionError:
        raise EifError("metadata JSON nests too deeply", Reason.BAD_METADATA) from None


_BANNER = b"Linux version "
_BANNER_RE = re.compile(re.escape(_BANNER))
_BANNER_MAX = 200


class _BannerScanner:
    """Find ``linux_banner`` ("Linux version X ...") in a streamed, uncompressed kernel.

    An aarch64 ``Image`` has no setup header, but the banner string is in its (measured)
    data. Chunk boundaries are handled by carrying a small tail over.
    """

    def __init__(self) -> None:
        self._tail = b""
        self._found: bytearray | None = None
        self.version: str | None = None

    def feed(self, chunk: memoryview) -> None:
        if self.version is not None:
            return
        if self._found is not None:
            self._found += chunk[: _BANNER_MAX - len(self._found)]
            self._finish()
            return
        keep = len(_BANNER) - 1
        # A banner straddling the previous chunk and this one.
        joined = self._tail + bytes(chunk[:keep])
        at = joined.find(_BANNER)
        if at >= 0:
            start = at + len(_BANNER) - len(self._tail)
        else:
            # `re` searches the buffer in place: no copy of the (2 MiB) chunk.
            match = _BANNER_RE.search(chunk)
            if match is None:
                self._tail = (self._tail + bytes(chunk[-keep:]))[-keep:]
                return
            start = match.end()
        self._found = bytearray(chunk[start : start + _BANNER_MAX])
        self._finish()

    def _finish(self, final: bool = False) -> None:
        found = self._found
        if found is None:
            return
        for stop in (b"\n", b"\0"):
            end = found.find(stop)
            if end >= 0:
                del found[end:]
                final = True
        if final or len(found) >= _BANNER_MAX:
            text = bytes(found).decode("ascii", errors="replace").strip()
            self.version = text or None

    def close(self) -> None:
        """End of the kernel: accept a banner cut short by the end of the data."""
        if self.version is None and self._found is not None:
            self._finish(final=True)


def _read(source: _Source, *, check_crc: bool, chunk_size: int) -> EifImage:
    if source.size < HEADER_SIZE:
        raise EifError(
            f"file is {source.size} bytes, shorter than the {HEADER_SIZE}-byte EIF header",
            Reason.TRUNCATED_FILE,
        )
    header_bytes = source.read(0, HEADER_SIZE)
    header = EifHeader.decode(header_bytes)
    _validate_header(header)
    entries = _locate(header, source.size)
    sections = _read_sections(source, header, entries)
    _check_composition(header, sections)

    measurer = _Measurer(chunk_size=chunk_size)
    measurer.crc_only(header_bytes[:CRC_OFFSET])
    # One rotation across all sections: the worker may still read a previous chunk.
    buffers = itertools.cycle([bytearray(chunk_size) for _ in range(RING)])
    kept: dict[SectionType, bytearray] = {}
    kernel_prefix = bytearray()
    banner = _BannerScanner()
    first_ramdisk_seen = False
    try:
        for s in sections:
            measurer.crc_only(s_header := source.read(s.offset, SECTION_HEADER_SIZE))
            del s_header
            if s.type in (SectionType.KERNEL, SectionType.CMDLINE):
                feed = measurer.shared
            elif s.type == SectionType.RAMDISK:
                feed = measurer.later if first_ramdisk_seen else measurer.shared
                first_ramdisk_seen = True
            else:
                feed = measurer.crc_only
            keep = s.type in (SectionType.CMDLINE, SectionType.METADATA, SectionType.SIGNATURE)
            store = kept.setdefault(s.type, bytearray()) if keep else None
            for chunk in source.chunks(s.data_offset, s.size, buffers):
                feed(chunk)
                if store is not None:
                    store += chunk
                elif s.type == SectionType.KERNEL:
                    if len(kernel_prefix) < _KERNEL_PREFIX:
                        kernel_prefix += chunk[: _KERNEL_PREFIX - len(kernel_prefix)]
                    if kernel_prefix[0x202:0x206] != b"HdrS":  # not a bzImage
                        banner.feed(chunk)
            if s.type == SectionType.KERNEL:
                banner.close()
    finally:
        measurer.close()

    crc = measurer.crc
    if check_crc and crc != header.crc32:
        raise EifError(
            f"CRC-32 mismatch: header says {header.crc32:#010x}, contents give {crc:#010x}",
            Reason.BAD_CRC,
            stored=f"{header.crc32:#010x}",
            computed=f"{crc:#010x}",
        )
    metadata_raw = bytes(kept[SectionType.METADATA]) if SectionType.METADATA in kept else None
    metadata = _parse_metadata(metadata_raw) if metadata_raw is not None else None
    signature = None
    if SectionType.SIGNATURE in kept:
        signature = parse_signature_section(bytes(kept[SectionType.SIGNATURE]))
    return EifImage(
        header=header,
        sections=sections,
        file_size=source.size,
        measurements=measurer.result(signature.pcr8 if signature else None),
        crc_computed=crc,
        cmdline=bytes(kept.get(SectionType.CMDLINE, b"")),
        metadata=metadata,
        metadata_raw=metadata_raw,
        signature=signature,
        kernel_version=_kernel_version(bytes(kernel_prefix)) or banner.version,
        layout_issues=tuple(_layout_issues(source, header, sections)),
    )


def read_eif(
    source: EifSource, *, check_crc: bool = True, chunk_size: int = _DEFAULT_CHUNK
) -> EifImage:
    """Parse, validate and measure an EIF in one streaming pass.

    Args:
        source: a path, the image bytes, or a seekable binary file object.
        check_crc: raise on a CRC mismatch (False: report it via `EifImage.crc_ok`).
        chunk_size: the size of each of the 4 rotating read buffers (memory use is
            about 4 x this, plus the cmdline, metadata and signature sections, each
            bounded).

    Returns:
        The parsed image with its measurements.

    Raises:
        Error: `unreadable_input` when the file cannot be opened or read.
        EifError: with a precise reason for every malformed input: `truncated_file`,
            `bad_magic`, `unsupported_version`, `too_many_sections`,
            `section_out_of_bounds`, `overlapping_sections`, `unknown_section_type`,
            `section_size_mismatch`, `missing_section`, `duplicate_section`,
            `bad_section`, `bad_crc`, `bad_metadata`, `bad_signature_section`,
            `unsupported_algorithm`.
    """
    if chunk_size < 4096:
        raise EifError("chunk_size must be at least 4096", Reason.INVALID_ARGUMENT)
    if isinstance(source, bytes | bytearray | memoryview):
        return _read(
            _Source(io.BytesIO(source), "<bytes>"), check_crc=check_crc, chunk_size=chunk_size
        )
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise Error(f"cannot open {path}: {exc.strerror}", Reason.UNREADABLE_INPUT) from exc
        with fh:
            return _read(_Source(fh, str(path)), check_crc=check_crc, chunk_size=chunk_size)
    return _read(
        _Source(source, getattr(source, "name", "<file>")),
        check_crc=check_crc,
        chunk_size=chunk_size,
    )
