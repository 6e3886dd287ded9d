"""Seed the kernel's CRNG from the NSM (threat-checklist RNG-1/RNG-4, §2.1).

The NSM's ``GetRandom`` returns 256 bytes from the hypervisor per request. Writing
them to ``/dev/random`` mixes them into the pool, but only the ``RNDADDENTROPY``
ioctl *credits* them, so that a CRNG waiting for entropy (``random.trust_cpu=off``)
can initialise. The kernel counts that credit in **bits** (``struct rand_pool_info``
``entropy_count``, drivers/char/random.c); crediting a byte count under-credits by a
factor of 8, a mistake seen in hand-rolled seeders. The ioctl needs CAP_SYS_ADMIN;
without it we fall back to a plain write (mixed, not credited) and say so.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import logging
import os
import struct

from nitroguard.errors import AuditError, NsmError, Reason
from nitroguard.nsm import DeviceNsm, IoctlFunc, RandomSource

__all__ = [
    "RNDADDENTROPY",
    "SeedReport",
    "pack_rand_pool_info",
    "seed_from_nsm",
]

log = logging.getLogger("nitroguard.audit.entropy")  # the pre-_-module name users filter on


def _ioc(direction: int, kind: int, number: int, size: int) -> int:
    # include/uapi/asm-generic/ioctl.h: dir<<30 | size<<16 | type<<8 | nr.
    return (direction << 30) | (size << 16) | (kind << 8) | number


_IOC_WRITE = 1
#: ``_IOW('R', 0x03, int[2])`` (include/uapi/linux/random.h) = 0x40085203.
RNDADDENTROPY = _ioc(_IOC_WRITE, ord("R"), 0x03, struct.calcsize("ii"))
#: The NSM returns 256 bytes per GetRandom (spec/nsm-protocol.md §2.4).
NSM_REPLY_SIZE = 256
#: Upper bound on a single seeding (the kernel's input pool is 256 bits; more is waste).
MAX_SEED = 64 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class SeedReport:
    """What `seed_from_nsm` did.

    Attributes:
        nbytes: bytes of NSM randomness fed to the kernel.
        replies: GetRandom requests made.
        credited_bits: entropy credited to the kernel (0 for the fallback).
        method: ``"ioctl"`` (RNDADDENTROPY, credited) or ``"write"`` (mixed only).
        note: why the fallback was used, if it was.
    """

    nbytes: int
    replies: int
    credited_bits: int
    method: str
    note: str = ""

    @property
    def credited(self) -> bool:
        """Whether the kernel credited the entropy."""
        return self.credited_bits > 0


def pack_rand_pool_info(data: bytes, entropy_bits: int) -> bytes:
    """Build ``struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }``.

    Args:
        data: the random bytes (``buf_size`` is their length in bytes).
        entropy_bits: the credit, in bits (at most ``8 * len(data)``).

    Returns:
        The packed structure in native byte order, as the ioctl expects.

    Raises:
        ValueError: the credit is negative or larger than the data can hold.
    """
    if not 0 <= entropy_bits <= 8 * len(data):
        raise ValueError(f"entropy credit {entropy_bits} bits is outside 0..{8 * len(data)}")
    # buf is declared __u32[] but the kernel copies buf_size *bytes*; pad to 4 anyway so
    # the buffer is a whole number of words.
    pad = b"\x00" * (-len(data) % 4)
    return struct.pack("=ii", entropy_bits, len(data)) + data + pad


def _pull(nsm: RandomSource, nbytes: int) -> tuple[bytes, int]:
    chunks: list[bytes] = []
    total = replies = 0
    # Each reply is 256 bytes; allow short replies but never loop forever on empty ones.
    max_replies = 4 * (nbytes // NSM_REPLY_SIZE + 1)
    while total < nbytes:
        if replies >= max_replies:
            raise NsmError(
                f"NSM gave only {total} of {nbytes} random bytes in {replies} replies",
                Reason.INVALID_RESPONSE,
            )
        chunk = nsm.get_random(NSM_REPLY_SIZE)
        replies += 1
        if not chunk:
            raise NsmError("NSM GetRandom returned no bytes", Reason.INVALID_RESPONSE)
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)[:nbytes], replies


def seed_from_nsm(
    nsm: RandomSource,
    nbytes: int = 512,
    *,
    device: str = "/dev/random",
    ioctl: IoctlFunc | None = None,
    bits_per_byte: int = 8,
    credit_untrusted: bool = False,
) -> SeedReport:
    """Feed `nbytes` of NSM randomness into the kernel pool, crediting it if allowed.

    Bytes are requested from the NSM in 256-byte replies and handed to the kernel with
    ``RNDADDENTROPY`` on `device`, credited at `bits_per_byte` bits per byte (the NSM is
    a full-entropy source; nsm-hwrng registers with quality 1000). If the ioctl is
    refused (EPERM: not root / no CAP_SYS_ADMIN) the same bytes are written to the
    device instead: mixed into the pool but not credited, and the report says so.

    Only a `DeviceNsm` (the kernel's /dev/nsm) is credited: bytes from an emulator or
    any other source are written without credit, and the report and log say so, since
    crediting them would tell the kernel it holds hardware entropy it does not have.

    Args:
        nsm: the NSM (device or emulator).
        nbytes: how many random bytes to feed (1..65536).
        device: the random device (tests point this at a temporary file).
        ioctl: the ioctl call, ``(fd, request, arg) -> result`` (default `fcntl.ioctl`).
        bits_per_byte: entropy credited per byte (0..8).
        credit_untrusted: credit bytes from an NSM that is not a `DeviceNsm` anyway
            (tests that drive the ioctl path with an emulator; never in production).

    Returns:
        A `SeedReport`.

    Raises:
        NsmError: the NSM failed or returned no randomness.
        AuditError: the device could not be opened or written.
        ValueError: `nbytes` or `bits_per_byte` is out of range.
    """
    if not 0 < nbytes <= MAX_SEED:
        raise ValueError(f"nbytes must be in 1..{MAX_SEED}, got {nbytes}")
    if not 0 <= bits_per_byte <= 8:
        raise ValueError(f"bits_per_byte must be in 0..8, got {bits_per_byte}")
    call = ioctl if ioctl is not None else fcntl.ioctl
    data, replies = _pull(nsm, nbytes)
    try:
        fd = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise AuditError(
            f"cannot open {device} for writing: {exc.strerror}", Reason.INTERNAL_ERROR
        ) from exc
    if not isinstance(nsm, DeviceNsm) and not credit_untrusted:
        try:
            note = (
                f"{type(nsm).__name__} is not the NSM device: wrote {len(data)} bytes to "
                f"{device} without entropy credit"
            )
            log.warning("seed_from_nsm: %s", note)
            _write_all(fd, data, device)
            return SeedReport(len(data), replies, 0, "write", note)
        finally:
            os.close(fd)
    try:
        credited = done = 0
        try:
            # One ioctl per NSM reply keeps each struct small and mirrors the kernel's
            # own hwrng feeding granularity.
            for offset in range(0, len(data), NSM_REPLY_SIZE):
                chunk = data[offset : offset + NSM_REPLY_SIZE]
                bits = len(chunk) * bits_per_byte
                call(fd, RNDADDENTROPY, bytearray(pack_rand_pool_info(chunk, bits)))
                credited += bits
                done += len(chunk)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EACCES, errno.ENOTTY, errno.EINVAL):
                raise AuditError(
                    f"RNDADDENTROPY on {device} failed: {exc.strerror}", Reason.INTERNAL_ERROR
                ) from exc
            # Without CAP_SYS_ADMIN (or on a non-device in tests) the ioctl is refused:
            # the bytes still help once mixed in, but nothing is credited.
            note = (
                f"RNDADDENTROPY refused ({errno.errorcode.get(exc.errno or 0, exc.errno)}): "
                f"wrote {len(data)} bytes to {device} without entropy credit"
            )
            log.warning("seed_from_nsm: %s", note)
            _write_all(fd, data[done:], device)
            return SeedReport(len(data), replies, credited, "write", note)
        return SeedReport(len(data), replies, credited, "ioctl")
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes, device: str) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
        except OSError as exc:
            raise AuditError(f"write to {device} failed: {exc.strerror}") from exc
        if written <= 0:  # pragma: no cover - a regular write never returns 0 for data
            raise AuditError(f"write to {device} made no progress")
        view = view[written:]
