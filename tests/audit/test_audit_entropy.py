"""seed_from_nsm: NSM bytes into the kernel pool, credited in bits.

The NSM is the real emulator. The kernel boundary is exercised three ways: a fake
ioctl that decodes `struct rand_pool_info` exactly as drivers/char/random.c lays it
out (ctypes, native ABI), the real kernel as root, and the real kernel as an
unprivileged user (EPERM, so the plain-write fallback).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nitroguard.audit._entropy import RNDADDENTROPY, pack_rand_pool_info, seed_from_nsm
from nitroguard.errors import AuditError, NsmError
from nitroguard.nsm import EmulatedNsm
from nitroguard.testing import ephemeral_nsm


class RandPoolInfo(ctypes.Structure):
    """``struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[0]; }``."""

    _fields_ = [("entropy_count", ctypes.c_int), ("buf_size", ctypes.c_int)]


def ioc_w(kind: str, number: int, size: int) -> int:
    # include/uapi/asm-generic/ioctl.h, written out independently of the module.
    ioc_write, nrbits, typebits, sizebits = 1, 8, 8, 14
    return (
        (ioc_write << (nrbits + typebits + sizebits))
        | (size << (nrbits + typebits))
        | (ord(kind) << nrbits)
        | number
    )


class FakeKernel:
    """The RNDADDENTROPY side of drivers/char/random.c, over the caller's real bytes."""

    def __init__(self, refuse: int | None = None) -> None:
        self.refuse = refuse
        self.credited_bits = 0
        self.mixed = bytearray()
        self.calls = 0

    def ioctl(self, fd: int, request: int, arg: bytes) -> int:
        self.calls += 1
        os.fstat(fd)  # a real, open descriptor
        if request != ioc_w("R", 0x03, 2 * ctypes.sizeof(ctypes.c_int)):
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
        if self.refuse is not None:
            raise OSError(self.refuse, os.strerror(self.refuse))
        header = RandPoolInfo.from_buffer_copy(arg[: ctypes.sizeof(RandPoolInfo)])
        if header.entropy_count < 0 or header.buf_size < 0:
            raise OSError(errno.EINVAL, "Invalid argument")
        payload = arg[ctypes.sizeof(RandPoolInfo) :]
        if len(payload) < header.buf_size:
            raise OSError(errno.EFAULT, "Bad address")
        self.mixed += payload[: header.buf_size]
        self.credited_bits += header.entropy_count
        return 0


class RecordingRng:
    """The emulator's randomness source, recording what GetRandom handed out."""

    def __init__(self) -> None:
        self.given = bytearray()

    def __call__(self, n: int) -> bytes:
        data = os.urandom(n)
        if n == 256:
            self.given += data
        return data


@pytest.fixture
def recorded() -> tuple[EmulatedNsm, RecordingRng]:
    rng = RecordingRng()
    return ephemeral_nsm(rng=rng), rng


def test_ioctl_number_and_struct_layout() -> None:
    assert RNDADDENTROPY == 0x40085203 == ioc_w("R", 0x03, 8)
    packed = pack_rand_pool_info(b"\x01\x02\x03", 24)
    header = RandPoolInfo.from_buffer_copy(packed[:8])
    assert (header.entropy_count, header.buf_size) == (24, 3)
    assert packed[8:] == b"\x01\x02\x03\x00"  # padded to whole __u32 words
    with pytest.raises(ValueError, match=r"outside 0\.\.24"):
        pack_rand_pool_info(b"abc", 25)
    with pytest.raises(ValueError, match=r"outside 0\.\.24"):
        pack_rand_pool_info(b"abc", -1)


def test_credits_bits_not_bytes(tmp_path: Path, recorded: tuple[EmulatedNsm, RecordingRng]) -> None:
    nsm, rng = recorded
    kernel = FakeKernel()
    device = tmp_path / "random"
    device.write_bytes(b"")
    report = seed_from_nsm(nsm, 512, device=str(device), ioctl=kernel.ioctl, credit_untrusted=True)
    assert report.method == "ioctl"
    assert report.credited
    assert report.nbytes == 512
    assert report.replies == 2  # 256-byte GetRandom replies
    assert report.credited_bits == kernel.credited_bits == 4096  # 512 bytes * 8 bits
    assert kernel.calls == 2
    assert bytes(kernel.mixed) == bytes(rng.given)  # exactly the NSM's bytes, in order
    assert device.read_bytes() == b""  # the ioctl path writes nothing


def test_partial_reply_and_custom_credit(
    tmp_path: Path, recorded: tuple[EmulatedNsm, RecordingRng]
) -> None:
    nsm, rng = recorded
    kernel = FakeKernel()
    device = tmp_path / "random"
    device.write_bytes(b"")
    report = seed_from_nsm(
        nsm, 300, device=str(device), ioctl=kernel.ioctl, bits_per_byte=4, credit_untrusted=True
    )
    assert (report.replies, report.nbytes, report.credited_bits) == (2, 300, 1200)
    assert bytes(kernel.mixed) == bytes(rng.given)[:300]


def test_without_privilege_falls_back_to_an_uncredited_write(
    tmp_path: Path, recorded: tuple[EmulatedNsm, RecordingRng], caplog: pytest.LogCaptureFixture
) -> None:
    nsm, rng = recorded
    kernel = FakeKernel(refuse=errno.EPERM)
    device = tmp_path / "random"
    device.write_bytes(b"")
    report = seed_from_nsm(nsm, 512, device=str(device), ioctl=kernel.ioctl, credit_untrusted=True)
    assert report.method == "write"
    assert not report.credited
    assert report.credited_bits == 0
    assert "RNDADDENTROPY refused (EPERM)" in report.note
    assert "without entropy credit" in report.note
    assert device.read_bytes() == bytes(rng.given)
    assert any("without entropy credit" in r.getMessage() for r in caplog.records)


def test_other_ioctl_errors_are_reported(tmp_path: Path) -> None:
    device = tmp_path / "random"
    device.write_bytes(b"")
    with pytest.raises(AuditError, match=r"RNDADDENTROPY on .* failed"):
        seed_from_nsm(
            ephemeral_nsm(),
            16,
            device=str(device),
            ioctl=FakeKernel(refuse=errno.EIO).ioctl,
            credit_untrusted=True,
        )


def test_emulator_bytes_are_never_credited_unless_asked(
    tmp_path: Path, recorded: tuple[EmulatedNsm, RecordingRng], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 14 section 3: only a DeviceNsm is credited; the kernel is not even asked."""
    nsm, rng = recorded
    kernel = FakeKernel()
    device = tmp_path / "random"
    device.write_bytes(b"")
    report = seed_from_nsm(nsm, 512, device=str(device), ioctl=kernel.ioctl)
    assert (report.method, report.credited_bits, kernel.calls) == ("write", 0, 0)
    assert "EmulatedNsm is not the NSM device" in report.note
    assert "without entropy credit" in report.note
    assert device.read_bytes() == bytes(rng.given)
    assert any("is not the NSM device" in r.getMessage() for r in caplog.records)


def test_unopenable_device(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match=r"cannot open .* for writing"):
        seed_from_nsm(ephemeral_nsm(), 16, device=str(tmp_path / "missing" / "random"))


@pytest.mark.parametrize("nbytes", [0, -1, 64 * 1024 + 1])
def test_nbytes_bounds(nbytes: int) -> None:
    with pytest.raises(ValueError, match="nbytes must be in"):
        seed_from_nsm(ephemeral_nsm(), nbytes)


def test_bits_per_byte_bounds() -> None:
    with pytest.raises(ValueError, match="bits_per_byte must be in"):
        seed_from_nsm(ephemeral_nsm(), 16, bits_per_byte=9)


def test_empty_nsm_reply_is_an_error(tmp_path: Path) -> None:
    nsm = ephemeral_nsm(rng=lambda n: b"" if n == 256 else os.urandom(n))
    device = tmp_path / "random"
    device.write_bytes(b"")
    with pytest.raises(NsmError):
        seed_from_nsm(nsm, 16, device=str(device), ioctl=FakeKernel().ioctl)


def test_real_kernel(recorded: tuple[EmulatedNsm, RecordingRng]) -> None:
    # The real /dev/random: emulator bytes are mixed in but never credited, even as
    # root (the host pool must not count them as hardware entropy).
    nsm, _ = recorded
    report = seed_from_nsm(nsm, 256)
    assert (report.method, report.credited_bits) == ("write", 0)
    assert "not the NSM device" in report.note


# Everything is imported and the emulator built before dropping privileges (the
# interpreter's files may not be readable by nobody); then only the syscalls run.
_UNPRIVILEGED = """
import errno, json, logging, os
from nitroguard.audit._entropy import seed_from_nsm
from nitroguard.testing import ephemeral_nsm
nsm = ephemeral_nsm()
nsm.get_random(1)
os.setgroups([]); os.setgid(65534); os.setuid(65534)
r = seed_from_nsm(nsm, 512, credit_untrusted=True)  # refused anyway: unprivileged
print(json.dumps({"method": r.method, "bits": r.credited_bits, "note": r.note}))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")
def test_real_kernel_refuses_an_unprivileged_credit() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _UNPRIVILEGED],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["method"] == "write"
    assert result["bits"] == 0
    assert result["note"].startswith(
        "RNDADDENTROPY refused (EPERM): wrote 512 bytes to /dev/random"
    )
