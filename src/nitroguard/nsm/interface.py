"""The `Nsm` interface shared by the device client, the emulator and the socket client.

Every implementation moves the same CBOR bytes: the public methods here encode the
request with `nitroguard.nsm.codec`, refuse anything over the device's 4096-byte
limit before any I/O (as nsm-api does), hand the bytes to the implementation's
`_transact`, and decode the answer strictly. An implementation only moves bytes.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Final, Self, TypeVar

from nitroguard.errors import ConfigError, NsmError, Reason
from nitroguard.nsm import codec
from nitroguard.nsm.codec import NsmDescription, PcrDescription

__all__ = [
    "DEFAULT_DEVICE",
    "ENV_VAR",
    "MAX_RANDOM_BYTES",
    "Nsm",
    "NsmDescription",
    "PcrDescription",
]

#: The NSM character device inside an enclave.
DEFAULT_DEVICE: Final = "/dev/nsm"
#: Environment variable selecting the implementation for `Nsm.open`.
ENV_VAR: Final = "NITROGUARD_NSM"
#: Upper bound for one `get_random` call (4096 device round trips).
MAX_RANDOM_BYTES: Final = 1 << 20

_HOW_TO_EMULATE: Final = (
    "to develop outside an enclave, start the emulator with "
    "`nitroguard nsm serve --socket /tmp/nsm.sock` and set "
    f"{ENV_VAR}=emulator:/tmp/nsm.sock (or pass --nsm emulator:/tmp/nsm.sock)"
)


_R = TypeVar("_R")


def _expect(response: codec.Response, cls: type[_R]) -> _R:
    # decode_response already checked the variant; this keeps the types honest
    # without an assert (which -O would strip).
    if not isinstance(response, cls):
        raise NsmError(
            f"invalid NSM response: expected {cls.__name__}, got {type(response).__name__}",
            Reason.INVALID_RESPONSE,
        )
    return response


class Nsm(abc.ABC):
    """A Nitro Secure Module: the real device, the emulator, or the emulator over a socket.

    Implementations: `nitroguard.nsm.DeviceNsm` (``/dev/nsm``),
    `nitroguard.nsm.EmulatedNsm` (in-process software NSM) and
    `nitroguard.nsm.SocketNsm` (an emulator served by ``nitroguard nsm serve``).
    All are safe to share between threads and are context managers.

    Every method raises `NsmError` on failure; its `reason` is the device's error
    (`invalid_index`, `read_only_index`, `invalid_operation`, `input_too_large`,
    `internal_error`, ...), `invalid_response` for a malformed answer, or
    `nsm_io_error` / `nsm_unavailable` for transport failures.
    """

    # ------------------------------------------------------------------ selection

    @staticmethod
    def open(
        spec: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        device_path: str = DEFAULT_DEVICE,
    ) -> Nsm:
        """Open the NSM selected by `spec`, the environment, or the device if present.

        Selection order: `spec` if given; else ``$NITROGUARD_NSM``; else ``/dev/nsm``
        if it exists. Otherwise this fails: it never falls back to an emulator
        silently, because code that believes it runs in an enclave must not be
        handed software keys (threat checklist NSM-2).

        Args:
            spec: ``"device"``, ``"device:PATH"`` or ``"emulator:SOCKET_PATH"``.
            env: the environment to read (defaults to `os.environ`).
            device_path: the device node probed when nothing is selected.

        Returns:
            An open `Nsm`; close it (or use it as a context manager).

        Raises:
            ConfigError: `spec` (or the environment variable) is malformed.
            NsmError: `nsm_unavailable` when nothing is selected and there is no
                device, or the selected one cannot be opened.
        """
        source = "argument"
        if spec is None:
            spec = (os.environ if env is None else env).get(ENV_VAR) or None
            source = f"${ENV_VAR}"
        if spec is None:
            if not Path(device_path).exists():
                raise NsmError(
                    f"no NSM: {device_path} does not exist (not inside a Nitro Enclave?) and "
                    f"${ENV_VAR} is not set; {_HOW_TO_EMULATE}",
                    Reason.NSM_UNAVAILABLE,
                )
            spec = "device:" + device_path
        kind, _, rest = spec.partition(":")
        if kind == "device":
            from nitroguard.nsm.device import DeviceNsm

            return DeviceNsm(rest or device_path)
        if kind == "emulator":
            if not rest:
                raise ConfigError(
                    f"NSM spec {spec!r} (from {source}) needs a socket path: emulator:PATH"
                )
            from nitroguard.nsm.socket import SocketNsm

            return SocketNsm(rest)
        raise ConfigError(
            f"NSM spec {spec!r} (from {source}) is not 'device', 'device:PATH' or 'emulator:PATH'"
        )

    # ------------------------------------------------------- implementation hooks

    @abc.abstractmethod
    def _transact(self, request: bytes) -> bytes:
        """Send one encoded request (at most 4096 bytes) and return the raw answer."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release the underlying resource. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------- requests

    def request(self, request: codec.Request) -> codec.Response:
        """Send one typed request; return the decoded success answer.

        Raises:
            NsmError: the device's error, `input_too_large` for an encoded request
                over 4096 bytes (refused before any I/O), `invalid_response`.
        """
        raw = codec.encode_request(request)
        if len(raw) > codec.MAX_REQUEST_SIZE:
            raise NsmError(
                f"{request.name}: encoded request is {len(raw)} bytes, "
                f"over the NSM limit of {codec.MAX_REQUEST_SIZE}",
                Reason.INPUT_TOO_LARGE,
                operation=request.name,
                size=len(raw),
            )
        response = codec.decode_response(self._transact(raw), request.name)
        if isinstance(response, codec.ErrorCode):
            raise codec.error_for(response, request.name)
        return response

    def describe_nsm(self) -> NsmDescription:
        """DescribeNSM: version, module id, PCR count, locked PCRs and digest."""
        return _expect(self.request(codec.DescribeNsm()), NsmDescription)

    def describe_pcr(self, index: int) -> PcrDescription:
        """DescribePCR: the lock state and value of PCR `index`.

        Raises:
            NsmError: `invalid_index` for an index of 32 or more.
        """
        return _expect(self.request(codec.DescribePcr(index)), PcrDescription)

    def extend_pcr(self, index: int, data: bytes) -> bytes:
        """ExtendPCR: ``PCR[index] = SHA-384(PCR[index] || data)``; returns the new value.

        Raises:
            NsmError: `read_only_index` when the PCR is locked, `invalid_index`,
                `input_too_large` when `data` does not fit in a 4096-byte request.
        """
        response = _expect(self.request(codec.ExtendPcr(index, data)), codec.ExtendPcrResponse)
        return response.data

    def lock_pcr(self, index: int) -> None:
        """LockPCR: make PCR `index` read-only for the rest of the enclave's life.

        Raises:
            NsmError: `read_only_index` when it is already locked, `invalid_index`.
        """
        self.request(codec.LockPcr(index))

    def lock_pcrs(self, range_: int) -> None:
        """LockPCRs: lock PCRs ``[0, range_)``; already-locked ones are fine.

        Raises:
            NsmError: `invalid_index` when `range_` exceeds 32.
        """
        self.request(codec.LockPcrs(range_))

    def get_attestation(
        self,
        user_data: bytes | None = None,
        nonce: bytes | None = None,
        public_key: bytes | None = None,
    ) -> bytes:
        """Attestation: a signed attestation document (untagged COSE_Sign1 bytes).

        `None` fields appear as null in the document; empty bytes as an empty byte
        string. The NSM enforces no per-field limit, only the 4096-byte request.

        Raises:
            NsmError: `input_too_large` when the fields do not fit in 4096 bytes.
        """
        response = _expect(
            self.request(codec.Attestation(user_data, nonce, public_key)), codec.AttestationResponse
        )
        return response.document

    def get_random(self, n: int) -> bytes:
        """`n` bytes from the NSM's hardware RNG (GetRandom, 256 bytes per call).

        Each answer's length is checked (1 to 256 bytes); calls repeat until `n`
        bytes are gathered.

        Raises:
            NsmError: `invalid_argument` when `n` is negative or over 1 MiB.
        """
        if type(n) is not int or not 0 <= n <= MAX_RANDOM_BYTES:  # bool is not a count
            raise NsmError(
                f"get_random: n must be an integer in [0, {MAX_RANDOM_BYTES}], got {n!r}",
                Reason.INVALID_ARGUMENT,
            )
        chunks: list[bytes] = []
        have = 0
        while have < n:
            response = _expect(self.request(codec.GetRandom()), codec.GetRandomResponse)
            chunks.append(response.random)
            have += len(response.random)
        return b"".join(chunks)[:n]
