"""Test helpers for code that uses an NSM: an ephemeral emulator and a fake ``/dev/nsm`` ioctl."""

from __future__ import annotations

import ctypes
import errno
from typing import Any

from nitroguard.nsm import (
    NSM_IOCTL_RAW,
    EmulatedNsm,
    EmulatorPki,
    IoctlFunc,
    codec,
    pack_message,
    unpack_message,
)

__all__ = ["emulator_ioctl", "ephemeral_nsm"]


def ephemeral_nsm(**kw: Any) -> EmulatedNsm:
    """An `EmulatedNsm` with a fresh in-memory PKI (unless `pki=` is given).

    Keyword arguments are those of `EmulatedNsm`. The root to pin is
    ``nsm.pki.root_certificate``.
    """
    if kw.get("pki") is None:
        kw["pki"] = EmulatorPki.ephemeral(clock=kw.get("clock"))
    return EmulatedNsm(**kw)


def emulator_ioctl(emulator: EmulatedNsm) -> IoctlFunc:
    """A fake kernel boundary for `DeviceNsm(ioctl=...)` answered by `emulator`.

    It behaves like drivers/misc/nsm.c: EINVAL for another ioctl number, EMSGSIZE
    for a request over 4096 bytes, reads the request from the address in the
    message, writes the answer to the response address truncated to the capacity,
    and rewrites ``response.len``. So the caller's real struct packing and buffers
    are exercised (a wrong address or length shows up as garbage, not as a pass).
    """

    def ioctl(fd: int, request: int, arg: bytearray) -> int:
        if request != NSM_IOCTL_RAW or len(arg) != 32:
            raise OSError(errno.EINVAL, "Invalid argument")
        req_addr, req_len, resp_addr, resp_cap = unpack_message(arg)
        if req_len > codec.MAX_REQUEST_SIZE:
            raise OSError(errno.EMSGSIZE, "Message too long")
        answer = emulator.process(ctypes.string_at(req_addr, req_len))
        written = min(len(answer), resp_cap)
        ctypes.memmove(resp_addr, answer, written)
        arg[:] = pack_message(req_addr, req_len, resp_addr, written)
        return 0

    return ioctl
