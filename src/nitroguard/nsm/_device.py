"""`DeviceNsm`: the ``/dev/nsm`` client. The only module in nitroguard that opens the device.

Kernel interface (``../shared/spec/nsm-protocol.md`` section 3; torvalds/linux
include/uapi/linux/nsm.h and drivers/misc/nsm.c):

- ``ioctl(fd, NSM_IOCTL_RAW = 0xC0200A00, &msg)`` where ``msg`` is 32 bytes,
  ``{u64 addr, u64 len}`` for the request then for the response;
- the request is at most 4096 bytes (the kernel answers EMSGSIZE above);
- the response buffer is 12288 bytes and the kernel rewrites ``response.len`` with
  the number of bytes written. Early drivers copied a device-reported length
  unclamped (fixed by "misc: nsm: bound the device-reported response length"), so
  the length read back is checked against the buffer before use.

Unlike aws-nsm-interface 1.0.0, which opens the device in text mode ``'r+'`` and fails
on a non-seekable character device (spec section 4.1), this opens it with
``os.open(O_RDWR | O_CLOEXEC)``.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
import struct
import threading
from typing import Final

from nitroguard.errors import NsmError, Reason
from nitroguard.nsm import _codec as codec
from nitroguard.nsm._interface import DEFAULT_DEVICE, IoctlFunc, Nsm

__all__ = ["NSM_IOCTL_RAW", "DeviceNsm", "pack_message", "unpack_message"]

#: ``_IOWR(0x0A, 0, struct nsm_raw)`` with a 32-byte struct.
NSM_IOCTL_RAW: Final = 0xC0200A00
#: ``struct nsm_raw { struct nsm_iovec request, response; }`` with ``{__u64 addr, len}``.
_MESSAGE: Final = struct.Struct("=QQQQ")
#: EINTR is retried; this bounds a pathological storm of signals.
_MAX_EINTR_RETRIES: Final = 1000


def pack_message(
    request_addr: int, request_len: int, response_addr: int, response_len: int
) -> bytearray:
    """The 32-byte ``struct nsm_raw`` for the ioctl, in native byte order."""
    return bytearray(_MESSAGE.pack(request_addr, request_len, response_addr, response_len))


def unpack_message(message: bytes | bytearray) -> tuple[int, int, int, int]:
    """``(request.addr, request.len, response.addr, response.len)`` from a message."""
    addr_in, len_in, addr_out, len_out = _MESSAGE.unpack(bytes(message))
    return addr_in, len_in, addr_out, len_out


def _system_ioctl(fd: int, request: int, arg: bytearray) -> object:
    return fcntl.ioctl(fd, request, arg, True)


class DeviceNsm(Nsm):
    """The real NSM through ``/dev/nsm``.

    Safe to share between threads: requests are serialized (the kernel driver
    serializes them too, on one shared buffer). A context manager.

    Args:
        path: the device node.
        ioctl: the ioctl call; tests inject a fake kernel boundary here so the real
            struct packing and buffer handling run without a device.

    Raises:
        NsmError: `nsm_unavailable` when the path does not exist, cannot be opened
            or is not a character device.
    """

    def __init__(self, path: str = DEFAULT_DEVICE, *, ioctl: IoctlFunc | None = None) -> None:
        self.path = path
        self._ioctl: IoctlFunc = ioctl or _system_ioctl
        self._lock = threading.Lock()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise NsmError(
                f"cannot open the NSM device {path}: {exc.strerror}"
                + (" (not inside a Nitro Enclave?)" if exc.errno == errno.ENOENT else ""),
                Reason.NSM_UNAVAILABLE,
                path=path,
                errno=exc.errno,
            ) from exc
        try:
            mode = os.fstat(fd).st_mode
        except OSError:  # pragma: no cover - fstat on a fresh fd does not fail
            mode = 0
        if not stat.S_ISCHR(mode):
            os.close(fd)
            # Threat checklist NSM-2: a regular file or socket at /dev/nsm is not an NSM.
            raise NsmError(f"{path} is not a character device", Reason.NSM_UNAVAILABLE, path=path)
        self._fd = fd

    def close(self) -> None:
        """Close the device. Idempotent; waits for an in-flight request."""
        with self._lock:
            if self._fd >= 0:
                fd, self._fd = self._fd, -1
                os.close(fd)

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._fd < 0

    def _transact(self, request: bytes) -> bytes:
        if len(request) > codec.MAX_REQUEST_SIZE:
            raise NsmError(
                f"request of {len(request)} bytes exceeds {codec.MAX_REQUEST_SIZE}",
                Reason.INPUT_TOO_LARGE,
            )
        # Both buffers live until the call returns (they are locals), so the addresses
        # handed to the kernel stay valid.
        request_buf = ctypes.create_string_buffer(request, max(len(request), 1))
        response_buf = ctypes.create_string_buffer(codec.MAX_RESPONSE_SIZE)
        message = pack_message(
            ctypes.addressof(request_buf),
            len(request),
            ctypes.addressof(response_buf),
            codec.MAX_RESPONSE_SIZE,
        )
        with self._lock:
            if self._fd < 0:
                raise NsmError(f"{self.path} is closed", Reason.NSM_UNAVAILABLE)
            self._call(message)
        response_len = unpack_message(message)[3]
        if response_len > codec.MAX_RESPONSE_SIZE:
            raise NsmError(
                f"the driver reported a {response_len}-byte response for a "
                f"{codec.MAX_RESPONSE_SIZE}-byte buffer",
                Reason.INVALID_RESPONSE,
            )
        return response_buf.raw[:response_len]

    def _call(self, message: bytearray) -> None:
        for _ in range(_MAX_EINTR_RETRIES):
            try:
                self._ioctl(self._fd, NSM_IOCTL_RAW, message)
            except InterruptedError:
                continue
            except OSError as exc:
                raise self._errno_error(exc) from exc
            return
        raise NsmError(
            f"NSM ioctl interrupted {_MAX_EINTR_RETRIES} times in a row", Reason.NSM_IO_ERROR
        )

    def _errno_error(self, exc: OSError) -> NsmError:
        code = exc.errno or 0
        name = errno.errorcode.get(code, str(code))
        if code == errno.EMSGSIZE:
            # The kernel's answer to a request over 4096 bytes (nsm-api maps it the same).
            return NsmError(
                "the kernel refused the request as too large (EMSGSIZE)",
                Reason.INPUT_TOO_LARGE,
                errno=name,
            )
        if code == errno.ETIMEDOUT:
            return NsmError(
                "the NSM did not answer within the driver's 120 s timeout",
                Reason.NSM_IO_ERROR,
                errno=name,
            )
        return NsmError(
            f"NSM ioctl failed: {exc.strerror or name} ({name})", Reason.NSM_IO_ERROR, errno=name
        )
