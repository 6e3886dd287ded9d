"""``nitro-cli build-enclave`` without Docker: image + blobs -> EIF, deterministically.

The two ramdisks are made as nitro-cli's patched linuxkit makes them (`._image`), then
the EIF is written by `build_eif` with nitro-cli's section order. PCR0/1/2 equal
nitro-cli's for the same image (``../shared/spec/oci-eif.md``); the metadata section
differs on purpose (no wall-clock ``BuildTime``, no host-specific ``DockerInfo``) and is
not measured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from nitroguard.errors import ConfigError, Error, ImageError, Reason
from nitroguard.hazmat._cpio import CpioWriter

from ._image import (
    ImageConfig,
    Source,
    coalesce,
    customer_ramdisk_size,
    docker_export_entries,
    iter_customer_ramdisk,
    open_tar_stream,
    parse_image_config,
    write_bootstrap_ramdisk,
    write_customer_ramdisk,
)
from ._output import atomic_output
from ._writer import (
    EPOCH_BUILD_TIME,
    BuildResult,
    Signer,
    StreamedInput,
    build_eif,
    default_metadata,
)

__all__ = [
    "ImageBuildResult",
    "build_eif_from_image",
    "build_time_from_epoch",
    "compare_pcrs",
    "load_expected_pcrs",
    "read_blobs",
]

MAX_CONFIG = 16 * 1024 * 1024
KERNEL_NAMES = {"x86_64": "bzImage", "aarch64": "Image"}


@dataclasses.dataclass(frozen=True, slots=True)
class ImageBuildResult:
    """What `build_eif_from_image` wrote.

    Attributes:
        eif: the EIF's path, size, CRC and measurements.
        pcrs_path: the ``OUT.pcrs.json`` file (nitro-cli's ``Measurements`` shape).
        bootstrap_size, customer_size: ramdisk sizes in bytes.
        arch: the EIF architecture.
        warnings: reasons the PCRs may differ from a real nitro-cli build.
    """

    eif: BuildResult
    pcrs_path: Path
    bootstrap_size: int
    customer_size: int
    arch: str
    warnings: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Blobs:
    """nitro-cli's blob directory (spec 2.1)."""

    init: Path
    nsm_ko: Path
    kernel: Path
    cmdline: bytes
    kernel_version: str
    operating_system: str


def _read_small(path: Path, what: str, limit: int) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise Error(f"cannot read {what} {path}: {exc.strerror}", Reason.UNREADABLE_INPUT) from exc
    if len(data) > limit:
        raise ConfigError(f"{what} {path} exceeds {limit} bytes")
    return data


def read_blobs(
    directory: Path, arch: str, *, kernel: Path | None = None, cmdline: bytes | None = None
) -> Blobs:
    """Locate ``init``, ``nsm.ko``, ``cmdline`` and the kernel in a blob directory.

    The cmdline is trimmed as nitro-cli trims it (Rust ``str::trim``: leading and
    trailing whitespace), so the blob's final newline never reaches the EIF.

    Raises:
        Error: `unreadable_input` when a required blob is missing.
    """
    for name in ("init", "nsm.ko"):
        if not (directory / name).is_file():
            raise Error(f"blob {directory / name} is missing", Reason.UNREADABLE_INPUT)
    kernel = kernel or directory / KERNEL_NAMES[arch]
    if not kernel.is_file():
        raise Error(
            f"kernel {kernel} is missing (give --kernel, or put {KERNEL_NAMES[arch]} in the "
            "blob directory)",
            Reason.UNREADABLE_INPUT,
        )
    if cmdline is None:
        cmdline = _read_small(directory / "cmdline", "cmdline", 65536)
    cmdline = cmdline.strip()
    # Build info: words 2 and 4 of line 3 of <kernel>.config (nitro-cli src/lib.rs, spec 7).
    version, system = "unknown", "Linux"
    config = kernel.with_name(kernel.name + ".config")
    if config.is_file():
        lines = _read_small(config, "kernel config", 1 << 20).split(b"\n")
        if len(lines) >= 3:
            words = list(re.split(rb"[ /\-]", lines[2]))
            if len(words) >= 4:
                system = words[1].decode(errors="replace")
                version = words[3].decode(errors="replace")
    return Blobs(directory / "init", directory / "nsm.ko", kernel, cmdline, version, system)


def build_time_from_epoch(value: str | None) -> str:
    """``BuildTime`` from ``SOURCE_DATE_EPOCH`` (reproducible-builds.org), else the epoch.

    Raises:
        ConfigError: the value is not a non-negative integer.
    """
    if value is None or value == "":
        return EPOCH_BUILD_TIME
    if not value.isdigit() or len(value) > 12:
        raise ConfigError(f"SOURCE_DATE_EPOCH must be a non-negative integer, not {value!r}")
    return dt.datetime.fromtimestamp(int(value), dt.UTC).isoformat()


@contextlib.contextmanager
def _docker_export(
    export: Path, config_path: Path
) -> Iterator[tuple[ImageConfig, Callable[..., Source], list[str]]]:
    config = parse_image_config(_read_small(config_path, "image config", MAX_CONFIG))
    if not export.exists():
        raise Error(f"cannot read {export}: no such file", Reason.UNREADABLE_INPUT)

    def entries(skip_data: bool = False) -> Source:
        with open_tar_stream(export) as stream:
            yield from docker_export_entries(stream, skip_data=skip_data)

    yield config, entries, []


def build_eif_from_image(
    output: Path,
    *,
    blobs: Path,
    docker_export: Path | None = None,
    image_config: Path | None = None,
    oci: Path | None = None,
    platform: str | None = None,
    allow_unreproducible: bool = False,
    arch: str | None = None,
    kernel: Path | None = None,
    cmdline: bytes | None = None,
    ramdisk_dir: Path | None = None,
    signer: Signer | None = None,
    metadata: bytes | None = None,
    image_name: str | None = None,
    build_time: str = EPOCH_BUILD_TIME,
    progress: Callable[[int], None] | None = None,
) -> ImageBuildResult:
    """Build an EIF from a container image as ``nitro-cli build-enclave`` does.

    Give either `docker_export` + `image_config` (``docker export`` of a created
    container and its ``docker inspect``/OCI config) or `oci` (an OCI layout directory
    or tar, or a ``docker save`` tar). Outputs are written atomically: the EIF, then
    ``<output>.pcrs.json``, and with `ramdisk_dir` also ``bootstrap-initrd.img`` and
    ``customer-initrd.img``.

    Raises:
        ConfigError: conflicting or missing arguments, or an architecture mismatch.
        ImageError: the image cannot be converted like nitro-cli would (see reasons).
        Error: `unreadable_input` on I/O failures.
    """
    opened = _open_source(docker_export, image_config, oci, platform, allow_unreproducible)
    with opened as (config, entries, warnings):
        eif_arch = _eif_arch(config, arch)
        blob = read_blobs(blobs, eif_arch, kernel=kernel, cmdline=cmdline)
        config.launch  # noqa: B018 - fail on a missing Cmd/Entrypoint before any output
        with contextlib.ExitStack() as stack:
            if ramdisk_dir is None:
                work = Path(
                    stack.enter_context(
                        tempfile.TemporaryDirectory(dir=output.parent, prefix=".nitroguard-")
                    )
                )
            else:
                work = ramdisk_dir
            boot_path, cust_path = work / "bootstrap-initrd.img", work / "customer-initrd.img"
            with atomic_output(boot_path) as fh:
                boot_size = write_bootstrap_ramdisk(fh, blob.init, blob.nsm_ko)
            # A pipe cannot be read twice: write the ramdisk to a file first then.
            to_file = ramdisk_dir is not None or bool(docker_export and not docker_export.is_file())
            customer, cust_size = _customer(
                cust_path if to_file else None, entries, config, progress
            )
            if metadata is None:
                metadata = default_metadata(
                    image_name=image_name or "image",
                    image_version=config.image_id or "unknown",
                    build_time=build_time,
                    kernel_version=blob.kernel_version,
                    operating_system=blob.operating_system,
                )
            result = build_eif(
                output,
                kernel=blob.kernel,
                cmdline=blob.cmdline,
                ramdisks=[boot_path, customer],
                metadata=metadata,
                signer=signer,
                arch=eif_arch,
            )
    pcrs_path = output.with_name(output.name + ".pcrs.json")
    with atomic_output(pcrs_path) as fh:
        fh.write(json.dumps(result.measurements.to_dict(), indent=2).encode() + b"\n")
    return ImageBuildResult(result, pcrs_path, boot_size, cust_size, eif_arch, tuple(warnings))


def _open_source(
    docker_export: Path | None,
    image_config: Path | None,
    oci: Path | None,
    platform: str | None,
    allow_unreproducible: bool,
) -> contextlib.AbstractContextManager[tuple[ImageConfig, Callable[..., Source], list[str]]]:
    """The image's (config, entries, warnings) context, from a docker export or OCI."""
    if (docker_export is None) == (oci is None):
        raise ConfigError("give either a docker export (+ image config) or an OCI image")
    if docker_export is not None and image_config is None:
        raise ConfigError("--docker-export needs --image-config (docker inspect output)")
    if oci is not None:
        from ._oci import open_oci

        return open_oci(oci, platform=platform, allow_unreproducible=allow_unreproducible)
    assert docker_export is not None  # noqa: S101
    assert image_config is not None  # noqa: S101
    return _docker_export(docker_export, image_config)


def _eif_arch(config: ImageConfig, arch: str | None) -> str:
    """The EIF's architecture: the image's, which an explicit `arch` must agree with."""
    image_arch = config.eif_arch
    if image_arch == "?":
        raise ImageError(
            f"image architecture {config.architecture!r} is not amd64 or arm64 "
            "(nitro-cli refuses it)",
            Reason.INVALID_IMAGE_CONFIG,
        )
    if image_arch is None and arch is None:
        raise ConfigError("the image config has no Architecture; give --arch")
    if arch is not None and image_arch is not None and arch != image_arch:
        raise ConfigError(
            f"--arch {arch} disagrees with the image's architecture "
            f"{config.architecture} (nitro-cli takes the EIF flag from the image)"
        )
    eif_arch = arch or image_arch
    assert eif_arch is not None  # noqa: S101 - checked above
    return eif_arch


def _customer(
    path: Path | None,
    entries: Callable[..., Source],
    config: ImageConfig,
    progress: Callable[[int], None] | None,
) -> tuple[Path | StreamedInput, int]:
    """The customer ramdisk and its size: written to `path`, or else streamed."""
    if path is not None:
        with atomic_output(path) as fh:
            size = write_customer_ramdisk(fh, entries(), config, progress=progress)
        return path, size
    # Stream the customer ramdisk straight into the EIF: a headers-only pass
    # gives its size, the second pass copies the data once (bench/eif_build.py).
    size = customer_ramdisk_size(entries(skip_data=True), config)
    return StreamedInput(
        size,
        lambda: coalesce(
            iter_customer_ramdisk(CpioWriter(None), entries(), config, progress=progress)
        ),
    ), size


def load_expected_pcrs(path: Path) -> dict[str, str]:
    """Expected PCRs from a JSON file: ``{"PCR0": hex, ...}`` (nitro-cli's Measurements,
    ``HashAlgorithm`` ignored), or an object holding it under ``Measurements``.

    Raises:
        ConfigError: the file lists no PCR, or a value is not 96 hex digits.
        Error: `unreadable_input` when it cannot be read.
    """
    data = _read_small(path, "expected PCRs", 1 << 20)
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from None
    if isinstance(doc, dict) and isinstance(doc.get("Measurements"), dict):
        doc = doc["Measurements"]
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} must be a JSON object of PCRs")
    out: dict[str, str] = {}
    for key, value in doc.items():
        if key == "HashAlgorithm":
            continue
        if not re.fullmatch(r"PCR(0|1|2|8)", key):
            raise ConfigError(f"{path}: unknown key {key!r} (expected PCR0, PCR1, PCR2, PCR8)")
        if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{96}", value):
            raise ConfigError(f"{path}: {key} must be 96 hex digits (SHA-384)")
        out[key] = value.lower()
    if not out:
        raise ConfigError(f"{path} lists no PCR")
    return out


def compare_pcrs(actual: dict[str, str], expected: dict[str, str]) -> list[dict[str, object]]:
    """One row per expected PCR: name, expected, actual (None if absent), match."""
    return [
        {
            "PCR": key,
            "Expected": value,
            "Actual": actual.get(key),
            "Match": actual.get(key) == value,
        }
        for key, value in sorted(expected.items())
    ]
