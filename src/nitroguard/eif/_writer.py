"""A deterministic EIF writer (``../shared/spec/eif.md`` 2.4, 4, 5 and 7).

Same inputs, same bytes: the section order is nitro-cli's (kernel, cmdline, metadata,
ramdisks, then the signature), the metadata carries no wall-clock time unless the
caller passes one, and signing uses deterministic ECDSA (RFC 6979), so even a signed
image is reproducible. The output is written to a temporary file beside the target
and renamed into place only when complete.

Inputs are streamed: the sections are written and checksummed once; the header's
own CRC contribution is prepended afterwards with `crc32_combine`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nitroguard import __version__
from nitroguard.errors import ConfigError, EifError, Error, Reason

from ._format import (
    ARCH_ARM64,
    CRC_OFFSET,
    CURRENT_VERSION,
    DEFAULT_CPUS,
    DEFAULT_MEM,
    EIF_MAGIC,
    HEADER_SIZE,
    MAX_NUM_SECTIONS,
    SECTION_HEADER_SIZE,
    EifHeader,
    SectionHeader,
    SectionType,
    crc32_combine,
)
from ._measure import Measurements, _Measurer, pcr_of_bytes
from ._output import atomic_output
from ._reader import MAX_CMDLINE_SIZE, MAX_METADATA_SIZE, _kernel_version
from ._signature import (
    algorithm_for_key,
    encode_signature_section,
    sign_pcr0,
)

__all__ = [
    "EPOCH_BUILD_TIME",
    "BuildResult",
    "Signer",
    "StreamedInput",
    "build_eif",
    "default_metadata",
    "kernel_version",
    "metadata_from_kernel",
    "sign_eif",
]

#: The BuildTime written unless the caller asks for another (monzo/aws-nitro-util pins
#: the epoch the same way, spec 7).
EPOCH_BUILD_TIME = "1970-01-01T00:00:00+00:00"
_CHUNK = 4 * 1024 * 1024

Input = str | os.PathLike[str] | bytes


@dataclasses.dataclass(frozen=True, slots=True)
class StreamedInput:
    """Section data produced on the fly (e.g. a ramdisk built while the EIF is
    written): its exact size, known in advance, and a function returning its bytes.
    A stream that yields another number of bytes aborts the build."""

    size: int
    chunks: Callable[[], Iterator[bytes]]


AnyInput = Input | StreamedInput


@dataclasses.dataclass(frozen=True, slots=True)
class Signer:
    """A signing certificate (PEM bytes, stored verbatim) and its EC private key."""

    certificate_pem: bytes
    key: ec.EllipticCurvePrivateKey

    def __post_init__(self) -> None:
        try:
            cert = x509.load_pem_x509_certificate(self.certificate_pem)
        except ValueError as exc:
            raise ConfigError(f"signing certificate is not PEM: {exc}") from None
        pub = cert.public_key()
        if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.public_numbers() != (
            self.key.public_key().public_numbers()
        ):
            raise ConfigError("the signing key does not match the certificate's public key")
        algorithm_for_key(self.key)


@dataclasses.dataclass(frozen=True, slots=True)
class BuildResult:
    """What `build_eif` wrote.

    Attributes:
        path: the output file.
        size: its size in bytes.
        crc32: the header CRC.
        measurements: the image's PCRs (PCR8 when signed).
    """

    path: Path
    size: int
    crc32: int
    measurements: Measurements


def default_metadata(
    *,
    image_name: str,
    image_version: str = "1.0",
    build_time: str = EPOCH_BUILD_TIME,
    kernel_version: str = "unknown",
    operating_system: str = "Linux",
    custom: Any = None,
) -> bytes:
    """Metadata JSON in nitro-cli's key order, compact like serde_json (spec 5).

    No field depends on the clock or the host unless the caller passes it.
    """
    doc = {
        "ImageName": image_name,
        "ImageVersion": image_version,
        "BuildMetadata": {
            "BuildTime": build_time,
            "BuildTool": "nitroguard",
            "BuildToolVersion": __version__,
            "OperatingSystem": operating_system,
            "KernelVersion": kernel_version,
        },
        "DockerInfo": None,
        "CustomMetadata": custom,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _size_of(item: AnyInput, what: str) -> int:
    if isinstance(item, StreamedInput):
        return item.size
    if isinstance(item, bytes):
        return len(item)
    try:
        return os.stat(item).st_size
    except OSError as exc:
        raise Error(f"cannot read {what} {item}: {exc.strerror}", Reason.UNREADABLE_INPUT) from exc


@contextlib.contextmanager
def _chunks(item: AnyInput, size: int, what: str) -> Iterator[Iterator[bytes]]:
    if isinstance(item, StreamedInput):
        yield _exactly(item.chunks(), size, what)
        return
    if isinstance(item, bytes):
        yield iter([item] if item else [])
        return
    try:
        fh = Path(item).open("rb")  # noqa: SIM115 - closed by the `with` below
    except OSError as exc:
        raise Error(f"cannot read {what} {item}: {exc.strerror}", Reason.UNREADABLE_INPUT) from exc

    def gen() -> Iterator[bytes]:
        remaining = size
        while True:
            block = fh.read(min(_CHUNK, remaining) if remaining else 1)
            if not block:
                break
            remaining -= len(block)
            if remaining < 0:
                break
            yield block
        if remaining != 0:
            # Never write an image whose table disagrees with its data.
            raise Error(f"{what} {item} changed size while being read", Reason.UNREADABLE_INPUT)

    with fh:
        yield gen()


def _exactly(chunks: Iterator[bytes], size: int, what: str) -> Iterator[bytes]:
    remaining = size
    for block in chunks:
        remaining -= len(block)
        if remaining < 0:
            break
        yield block
    if remaining != 0:
        raise Error(f"{what} produced a different size than announced", Reason.UNREADABLE_INPUT)


def _kernel_prefix(kernel: Input) -> bytes:
    if isinstance(kernel, bytes):
        return kernel[: 64 * 1024]
    try:
        with Path(kernel).open("rb") as fh:
            return fh.read(64 * 1024)
    except OSError as exc:
        raise Error(
            f"cannot read kernel {kernel}: {exc.strerror}", Reason.UNREADABLE_INPUT
        ) from exc


def kernel_version(kernel: Input) -> str | None:
    """The version string in an x86 bzImage's setup header, or None when it has none.

    For example ``"6.1.0 (builder@host) #1 SMP ..."``; `metadata_from_kernel` keeps
    its first word, as nitro-cli does.

    Args:
        kernel: a path to the kernel image, or its bytes (only the first 64 KiB are read).

    Raises:
        Error: `unreadable_input` when the file cannot be read.
    """
    return _kernel_version(_kernel_prefix(kernel))


def metadata_from_kernel(
    kernel: Input,
    *,
    image_name: str | None = None,
    image_version: str = "1.0",
    build_time: str = EPOCH_BUILD_TIME,
    custom: Any = None,
) -> bytes:
    """The default metadata for an image built from ``kernel`` (what `build_eif` writes
    when no metadata is given): `default_metadata` with the kernel's version.

    Args:
        kernel: a path to the kernel image, or its bytes.
        image_name: default: the kernel's file name (``"kernel"`` for bytes).
        image_version, build_time, custom: as in `default_metadata`.

    Raises:
        Error: `unreadable_input` when the kernel cannot be read.
    """
    version = kernel_version(kernel)
    if image_name is None:
        image_name = "kernel" if isinstance(kernel, bytes) else Path(kernel).name
    return default_metadata(
        image_name=image_name,
        image_version=image_version,
        build_time=build_time,
        kernel_version=version.split()[0] if version else "unknown",
        custom=custom,
    )


def build_eif(
    output: str | os.PathLike[str],
    *,
    kernel: Input,
    cmdline: bytes | str,
    ramdisks: Sequence[AnyInput],
    metadata: bytes | None = None,
    signer: Signer | None = None,
    arch: str = "x86_64",
    default_mem: int = DEFAULT_MEM,
    default_cpus: int = DEFAULT_CPUS,
) -> BuildResult:
    """Write an EIF deterministically and atomically.

    Args:
        output: the file to create or replace (written via a temporary file + rename).
        kernel: the kernel (bzImage / Image) as a path or bytes.
        cmdline: the kernel command line, stored exactly as given (no NUL, no newline).
        ramdisks: one or more ramdisks (path, bytes or `StreamedInput`); the first is
            measured in PCR1.
        metadata: the exact metadata section bytes (JSON); default: `default_metadata`
            with the epoch as build time.
        signer: sign like ``nitro-cli sign-eif`` (certificate PEM + matching EC key).
        arch: ``"x86_64"`` or ``"aarch64"`` (header flag bit 0).
        default_mem: the header's default_mem field (unused by the hypervisor).
        default_cpus: the header's default_cpus field (unused by the hypervisor).

    Returns:
        The path, size, CRC and measurements of the written image.

    Raises:
        ConfigError: invalid arguments (no ramdisk, bad metadata JSON, bad arch...).
        Error: `unreadable_input` when an input cannot be read, or the output written.
    """
    if arch not in ("x86_64", "aarch64"):
        raise ConfigError(f"arch must be x86_64 or aarch64, not {arch!r}")
    if not ramdisks:
        raise ConfigError("at least one ramdisk is required (QEMU refuses images without one)")
    if len(ramdisks) + 3 + (signer is not None) > MAX_NUM_SECTIONS:
        raise ConfigError(f"too many ramdisks: an EIF holds at most {MAX_NUM_SECTIONS} sections")
    cmdline_bytes = cmdline.encode() if isinstance(cmdline, str) else bytes(cmdline)
    if len(cmdline_bytes) > MAX_CMDLINE_SIZE or b"\0" in cmdline_bytes:
        raise ConfigError("cmdline must be under 64 KiB and contain no NUL byte")
    if metadata is None:
        metadata = metadata_from_kernel(kernel)
    try:
        json.loads(metadata.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"metadata is not valid UTF-8 JSON: {exc}") from None
    if len(metadata) > MAX_METADATA_SIZE:
        raise ConfigError(f"metadata exceeds {MAX_METADATA_SIZE} bytes")

    # nitro-cli's order: kernel, cmdline, metadata, ramdisks (spec 2.4).
    plan: list[tuple[SectionType, AnyInput, str]] = [
        (SectionType.KERNEL, kernel, "kernel"),
        (SectionType.CMDLINE, cmdline_bytes, "cmdline"),
        (SectionType.METADATA, metadata, "metadata"),
    ]
    plan += [(SectionType.RAMDISK, r, f"ramdisk {i}") for i, r in enumerate(ramdisks)]
    sizes = [_size_of(item, what) for _t, item, what in plan]

    out = Path(output)
    with atomic_output(out) as fh:
        result = _write(fh, plan, sizes, signer, arch, default_mem, default_cpus)
    return dataclasses.replace(result, path=out)


def _write(  # noqa: PLR0917 - private helper with one caller
    fh: BinaryIO,
    plan: list[tuple[SectionType, AnyInput, str]],
    sizes: list[int],
    signer: Signer | None,
    arch: str,
    default_mem: int,
    default_cpus: int,
) -> BuildResult:
    measurer = _Measurer()
    offsets: list[int] = []
    pos = HEADER_SIZE
    fh.seek(HEADER_SIZE)
    first_ramdisk = True
    for (stype, item, what), size in zip(plan, sizes, strict=True):
        offsets.append(pos)
        sh = SectionHeader(stype, 0, size).encode()
        fh.write(sh)
        measurer.crc_only(sh)
        if stype in (SectionType.KERNEL, SectionType.CMDLINE):
            feed = measurer.shared
        elif stype == SectionType.RAMDISK:
            feed = measurer.shared if first_ramdisk else measurer.later
            first_ramdisk = False
        else:
            feed = measurer.crc_only
        with _chunks(item, size, what) as chunks:
            for block in chunks:
                feed(block)
                fh.write(block)
        pos += SECTION_HEADER_SIZE + size
    measurer.close()
    pcr8 = None
    if signer is not None:
        pcr0 = measurer.result(None).pcr0
        data = encode_signature_section(signer.certificate_pem, sign_pcr0(signer.key, pcr0))
        offsets.append(pos)
        sizes = [*sizes, len(data)]
        block = SectionHeader(SectionType.SIGNATURE, 0, len(data)).encode() + data
        fh.write(block)
        measurer.crc_only(block)
        pos += len(block)
        pcr8 = pcr_of_bytes(
            x509.load_pem_x509_certificate(signer.certificate_pem).public_bytes(
                serialization.Encoding.DER
            )
        )
    count = len(offsets)
    header = EifHeader(
        magic=EIF_MAGIC,
        version=CURRENT_VERSION,
        flags=ARCH_ARM64 if arch == "aarch64" else 0,
        default_mem=default_mem,
        default_cpus=default_cpus,
        reserved=0,
        num_sections=count,
        section_offsets=tuple(offsets) + (0,) * (MAX_NUM_SECTIONS - count),
        section_sizes=tuple(sizes) + (0,) * (MAX_NUM_SECTIONS - count),
        unused=0,
        crc32=0,
    )
    head = header.encode()
    crc = crc32_combine(zlib.crc32(head[:CRC_OFFSET]), measurer.crc, pos - HEADER_SIZE)
    fh.seek(0)
    fh.write(dataclasses.replace(header, crc32=crc).encode())
    return BuildResult(path=Path(), size=pos, crc32=crc, measurements=measurer.result(pcr8))


def sign_eif(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    signer: Signer,
    at: dt.datetime | None = None,
) -> BuildResult:
    """Sign an unsigned image like ``nitro-cli sign-eif``: append a signature section.

    The input is fully validated first (layout, CRC). The signed copy is written to a
    temporary file, read back and its signature verified against its own PCR0 before
    it is renamed into place, so a source that changes while being copied can never
    yield a signature over the wrong image.

    Args:
        source: the unsigned image.
        output: where to write the signed image (may equal `source`).
        signer: the certificate and matching EC key.
        at: the time for the read-back certificate check (default now).

    Raises:
        ConfigError: the image is already signed, has layout issues, or has 32 sections.
        EifError: the input is malformed, or the read-back check failed.
        Error: `unreadable_input` on I/O failures.
    """
    from ._reader import read_eif
    from ._signature import check

    image = read_eif(source)
    if image.is_signed:
        # nitro-cli's replace path leaves section_sizes stale (image-format issue #54).
        raise ConfigError("the image is already signed; sign the unsigned image instead")
    if image.layout_issues:
        raise ConfigError(
            "refusing to sign an image whose layout is ambiguous: " + "; ".join(image.layout_issues)
        )
    header = image.header
    n = header.num_sections
    if n >= MAX_NUM_SECTIONS:
        raise ConfigError(f"the image already has {MAX_NUM_SECTIONS} sections")
    data = encode_signature_section(
        signer.certificate_pem, sign_pcr0(signer.key, image.measurements.pcr0)
    )
    offsets = list(header.section_offsets)
    sizes = list(header.section_sizes)
    offsets[n], sizes[n] = image.file_size, len(data)
    new_header = dataclasses.replace(
        header,
        num_sections=n + 1,
        section_offsets=tuple(offsets),
        section_sizes=tuple(sizes),
        crc32=0,
    )
    out = Path(output)
    with atomic_output(out) as dst:
        size, total = _append_signature(dst, source, image.file_size, new_header, data)
        # Read the copy back before it replaces anything (the rename happens on exit).
        signed = read_eif(dst.name)
        if signed.signature is None:  # pragma: no cover - we just wrote it
            raise Error("signature section missing after writing", Reason.INTERNAL_ERROR)
        report = check(signed.signature, signed.measurements.pcr0, at or dt.datetime.now(dt.UTC))
        if not report.signature_valid or not report.payload_matches:
            raise EifError(
                "the signed copy does not verify (did the source change while signing?)",
                Reason.BAD_SIGNATURE,
            )
    return BuildResult(path=out, size=size, crc32=total, measurements=signed.measurements)


def _append_signature(
    dst: BinaryIO, source: str | os.PathLike[str], file_size: int, header: EifHeader, data: bytes
) -> tuple[int, int]:
    """Copy the image's sections, append the signature section, then write the new
    header with the CRC (combined, so the copy is read once). Returns (size, crc32)."""
    crc = 0
    dst.seek(HEADER_SIZE)
    with _chunks(source, file_size, "image") as chunks:
        skip = HEADER_SIZE
        for block in chunks:
            part = block[skip:] if skip else block
            skip = max(0, skip - len(block))
            crc = zlib.crc32(part, crc)
            dst.write(part)
    tail = SectionHeader(SectionType.SIGNATURE, 0, len(data)).encode() + data
    crc = zlib.crc32(tail, crc)
    dst.write(tail)
    size = dst.tell()
    head = header.encode()
    total = crc32_combine(zlib.crc32(head[:CRC_OFFSET]), crc, size - HEADER_SIZE)
    dst.seek(0)
    dst.write(dataclasses.replace(header, crc32=total).encode())
    dst.flush()
    return size, total
