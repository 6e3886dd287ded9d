"""DeviceNsm through a fake kernel boundary backed by the emulator.

The fake ioctl (`nitroguard.testing.emulator_ioctl`) reads the request from the
address packed in the 32-byte message and writes the answer to the response address,
so the real struct packing and ctypes buffers are exercised. /dev/null stands in for
the character device that DeviceNsm opens.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from nsm_helpers import Clock, check_document

from nitroguard.errors import NsmError, Reason
from nitroguard.nsm import (
    NSM_IOCTL_RAW,
    DeviceNsm,
    EmulatedNsm,
    codec,
    extend,
    pack_message,
    unpack_message,
)
from nitroguard.testing import emulator_ioctl, ephemeral_nsm

CHAR_DEVICE = "/dev/null"


@pytest.fixture
def emulator(clock: Clock) -> EmulatedNsm:
    return ephemeral_nsm(clock=clock)


def test_ioctl_number_and_struct_layout() -> None:
    # _IOWR(0x0A, 0, 32-byte struct): dir 3 << 30 | size 32 << 16 | type 0x0A << 8 | nr 0.
    assert NSM_IOCTL_RAW == (3 << 30) | (32 << 16) | (0x0A << 8) | 0 == 3223325184
    msg = pack_message(1, 2, 3, 4)
    assert len(msg) == 32
    assert unpack_message(msg) == (1, 2, 3, 4)
    assert bytes(msg[8:16]) == (2).to_bytes(8, sys.byteorder)


def test_device_round_trips(emulator: EmulatedNsm, clock: Clock) -> None:
    with DeviceNsm(CHAR_DEVICE, ioctl=emulator_ioctl(emulator)) as nsm:
        assert nsm.describe_nsm() == emulator.describe_nsm()
        assert nsm.extend_pcr(16, b"x") == extend(bytes(48), b"x")
        nsm.lock_pcr(16)
        assert nsm.describe_pcr(16).lock is True
        with pytest.raises(NsmError, match="ReadOnlyIndex") as info:
            nsm.lock_pcr(16)
        assert info.value.reason is Reason.READ_ONLY_INDEX
        with pytest.raises(NsmError, match="InvalidIndex") as info:
            nsm.describe_pcr(40)
        assert info.value.reason is Reason.INVALID_INDEX
        nsm.lock_pcrs(18)
        assert len(nsm.get_random(700)) == 700
        doc = nsm.get_attestation(nonce=b"n" * 32)
        payload = check_document(doc, emulator.pki.root_certificate, clock())
        assert payload["nonce"] == b"n" * 32
        # A 4096-byte request goes through; the emulator answers in full (<= 12288).
        big = nsm.get_attestation(user_data=bytes(4050))
        assert check_document(big, emulator.pki.root_certificate, clock())["user_data"] == bytes(
            4050
        )
    assert nsm.closed
    nsm.close()  # idempotent
    with pytest.raises(NsmError, match="is closed") as info:
        nsm.describe_nsm()
    assert info.value.reason is Reason.NSM_UNAVAILABLE


def test_request_over_4096_never_reaches_the_kernel(emulator: EmulatedNsm) -> None:
    calls: list[int] = []
    inner = emulator_ioctl(emulator)

    def counting(fd: int, request: int, arg: bytearray) -> object:
        calls.append(request)
        return inner(fd, request, arg)

    with DeviceNsm(CHAR_DEVICE, ioctl=counting) as nsm:
        with pytest.raises(NsmError, match="over the NSM limit") as info:
            nsm.extend_pcr(16, bytes(4070))
        assert info.value.reason is Reason.INPUT_TOO_LARGE
        with pytest.raises(NsmError, match="exceeds 4096") as info:
            nsm._transact(bytes(4097))
        assert info.value.reason is Reason.INPUT_TOO_LARGE
        assert calls == []
        nsm.extend_pcr(16, bytes(4069))  # exactly 4096 bytes
        assert calls == [NSM_IOCTL_RAW]


def test_many_threads_share_one_device(emulator: EmulatedNsm) -> None:
    threads_n, per_thread = 8, 25
    errors: list[BaseException] = []
    nsm = DeviceNsm(CHAR_DEVICE, ioctl=emulator_ioctl(emulator))
    start = threading.Barrier(threads_n)

    def work(k: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                nsm.extend_pcr(20, b"tick")
                assert nsm.describe_pcr(k).lock is True
                assert len(nsm.get_random(300)) == 300
                if i % 10 == 0:
                    nsm.get_attestation(nonce=bytes([k, i]))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    # Every extend happened exactly once, none lost or torn.
    expected = bytes(48)
    for _ in range(threads_n * per_thread):
        expected = extend(expected, b"tick")
    assert nsm.describe_pcr(20).data == expected
    nsm.close()


# -------------------------------------------------------------- kernel failures


def _failing(*errnos: int) -> tuple[Callable[[int, int, bytearray], object], list[int]]:
    """An ioctl raising the given errnos in turn, then answering LockPCRs."""
    pending = list(errnos)
    calls: list[int] = []

    def ioctl(fd: int, request: int, arg: bytearray) -> object:
        calls.append(request)
        if pending:
            code = pending.pop(0)
            raise OSError(code, os.strerror(code))
        req_addr, req_len, resp_addr, _cap = unpack_message(arg)
        answer = codec.encode_response(codec.UnitResponse("LockPCRs"))
        ctypes.memmove(resp_addr, answer, len(answer))
        arg[:] = pack_message(req_addr, req_len, resp_addr, len(answer))
        return 0

    return ioctl, calls


def test_eintr_is_retried() -> None:
    ioctl, calls = _failing(errno.EINTR, errno.EINTR, errno.EINTR)
    with DeviceNsm(CHAR_DEVICE, ioctl=ioctl) as nsm:
        nsm.lock_pcrs(5)
    assert len(calls) == 4


def test_endless_eintr_is_bounded() -> None:
    ioctl, calls = _failing(*([errno.EINTR] * 5000))
    with DeviceNsm(CHAR_DEVICE, ioctl=ioctl) as nsm:
        with pytest.raises(NsmError, match="interrupted 1000 times") as info:
            nsm.lock_pcrs(5)
        assert info.value.reason is Reason.NSM_IO_ERROR
    assert len(calls) == 1000


@pytest.mark.parametrize(
    ("code", "reason", "match"),
    [
        (errno.EMSGSIZE, Reason.INPUT_TOO_LARGE, "EMSGSIZE"),
        (errno.ETIMEDOUT, Reason.NSM_IO_ERROR, "120 s timeout"),
        (errno.EFAULT, Reason.NSM_IO_ERROR, "EFAULT"),
        (errno.EINVAL, Reason.NSM_IO_ERROR, "EINVAL"),
        (errno.ENODATA, Reason.NSM_IO_ERROR, "ENODATA"),
        (errno.EIO, Reason.NSM_IO_ERROR, "EIO"),
    ],
)
def test_errno_mapping(code: int, reason: Reason, match: str) -> None:
    ioctl, _ = _failing(code)
    with DeviceNsm(CHAR_DEVICE, ioctl=ioctl) as nsm:
        with pytest.raises(NsmError, match=match) as info:
            nsm.lock_pcrs(5)
        assert info.value.reason is reason
        nsm.lock_pcrs(5)  # the device stays usable


def _answer_with(length: int, payload: bytes) -> Callable[[int, int, bytearray], object]:
    def ioctl(fd: int, request: int, arg: bytearray) -> object:
        req_addr, req_len, resp_addr, cap = unpack_message(arg)
        ctypes.memmove(resp_addr, payload, min(len(payload), cap))
        arg[:] = pack_message(req_addr, req_len, resp_addr, length)
        return 0

    return ioctl


def test_response_length_past_the_buffer_is_rejected() -> None:
    # The pre-fix driver copied an unclamped device length (spec 3.2).
    with DeviceNsm(CHAR_DEVICE, ioctl=_answer_with(12289, b"\x67LockPCR")) as nsm:
        with pytest.raises(NsmError, match="12289-byte response") as info:
            nsm.lock_pcr(16)
        assert info.value.reason is Reason.INVALID_RESPONSE


def test_zero_padded_answer_is_invalid_response() -> None:
    # QEMU 9.2.0 reported the buffer length: the answer followed by zeros (spec 5.1 item 7).
    with DeviceNsm(CHAR_DEVICE, ioctl=_answer_with(12288, b"\x67LockPCR")) as nsm:
        with pytest.raises(NsmError, match="trailing") as info:
            nsm.lock_pcr(16)
        assert info.value.reason is Reason.INVALID_RESPONSE


def test_truncated_answer_is_invalid_response() -> None:
    answer = codec.encode_response(codec.GetRandomResponse(bytes(256)))
    with DeviceNsm(CHAR_DEVICE, ioctl=_answer_with(100, answer)) as nsm:
        with pytest.raises(NsmError, match="invalid NSM response") as info:
            nsm.get_random(16)
        assert info.value.reason is Reason.INVALID_RESPONSE


def test_real_ioctl_on_a_non_nsm_device_fails_cleanly() -> None:
    # The real fcntl.ioctl path: /dev/null does not know this ioctl (ENOTTY).
    with DeviceNsm(CHAR_DEVICE) as nsm:
        with pytest.raises(NsmError, match="NSM ioctl failed") as info:
            nsm.describe_nsm()
        assert info.value.reason is Reason.NSM_IO_ERROR
        assert info.value.details["errno"] == "ENOTTY"


# -------------------------------------------------------------------- opening


def test_missing_device(tmp_path: Path) -> None:
    with pytest.raises(NsmError, match="not inside a Nitro Enclave") as info:
        DeviceNsm(str(tmp_path / "nsm"))
    assert info.value.reason is Reason.NSM_UNAVAILABLE


def test_regular_file_is_not_an_nsm(tmp_path: Path) -> None:
    fake = tmp_path / "nsm"
    fake.write_bytes(b"")
    with pytest.raises(NsmError, match="not a character device") as info:
        DeviceNsm(str(fake))
    assert info.value.reason is Reason.NSM_UNAVAILABLE


def test_socket_is_not_an_nsm(tmp_path: Path) -> None:
    path = tmp_path / "nsm"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(NsmError, match="cannot open the NSM device") as info:
            DeviceNsm(str(path))
    assert info.value.reason is Reason.NSM_UNAVAILABLE
