"""The `Nsm` interface shared by the device client, the emulator and the socket client.

Every implementation moves the same CBOR bytes: the public methods here encode the
request with `nitroguard.nsm._codec`, refuse anything over the device's 4096-byte
limit before any I/O (as nsm-api does), hand the bytes to the implementation's
`_transact`, and decode the answer strictly. An implementation only moves bytes.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Final, Protocol, TypeVar

from nitroguard._resource import Resource
from nitroguard.errors import NsmError, Reason
from nitroguard.nsm import _codec as codec
from nitroguard.nsm._codec import NsmDescription, PcrDescription

__all__ = [
    "DEFAULT_DEVICE",
    "ENV_VAR",
    "MAX_RANDOM_BYTES",
    "Attesting",
    "Describing",
    "IoctlFunc",
    "Nsm",
    "NsmDescription",
    "PcrDescription",
    "RandomSource",
    "ReadOnlyNsm",
]

#: The NSM character device inside an enclave.
DEFAULT_DEVICE: Final = "/dev/nsm"
#: Environment variable selecting the implementation for `nitroguard.nsm.open`.
ENV_VAR: Final = "NITROGUARD_NSM"
#: Upper bound for one `get_random` call (4096 device round trips).
MAX_RANDOM_BYTES: Final = 1 << 20

#: ``ioctl(fd, request, arg)``: `arg` is the mutable argument buffer, updated in place
#: (the signature of ``fcntl.ioctl(fd, request, arg, True)``). Tests inject a fake
#: kernel boundary of this type into `DeviceNsm` and `seed_from_nsm`.
IoctlFunc = Callable[[int, int, bytearray], object]


# The narrow roles below are what consumers type their NSM parameter with, so that
# a caller can pass any `Nsm` (device, emulator, socket) or a small fake that
# implements only the role the consumer uses. `Nsm` implements all three.


class Attesting(Protocol):
    """An NSM that signs attestation documents (the `Nsm.get_attestation` role)."""

    def get_attestation(
        self,
        user_data: bytes | None = None,
        nonce: bytes | None = None,
        public_key: bytes | None = None,
    ) -> bytes: ...  # pragma: no cover - protocol


class RandomSource(Protocol):
    """An NSM that hands out hardware randomness (the `Nsm.get_random` role)."""

    def get_random(self, n: int) -> bytes: ...  # pragma: no cover - protocol


class Describing(Protocol):
    """An NSM that describes itself and its PCRs (DescribeNSM / DescribePCR)."""

    def describe_nsm(self) -> NsmDescription: ...  # pragma: no cover - protocol

    def describe_pcr(self, index: int) -> PcrDescription: ...  # pragma: no cover - protocol


class ReadOnlyNsm(Attesting, RandomSource, Describing, Protocol):
    """All three read-only roles: everything but extending and locking PCRs (the audit's NSM)."""


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


class Nsm(Resource):
    """A Nitro Secure Module: the real device, the emulator, or the emulator over a socket.

    Open one with `nitroguard.nsm.open`. Implementations: `nitroguard.nsm.DeviceNsm` (``/dev/nsm``),
    `nitroguard.nsm.EmulatedNsm` (in-process software NSM) and
    `nitroguard.nsm.SocketNsm` (an emulator served by ``nitroguard nsm serve``).
    All are safe to share between threads and are context managers.

    Every method raises `NsmError` on failure; its `reason` is the device's error
    (`invalid_index`, `read_only_index`, `invalid_operation`, `input_too_large`,
    `internal_error`, ...), `invalid_response` for a malformed answer, or
    `nsm_io_error` / `nsm_unavailable` for transport failures.
    """

    # ------------------------------------------------------- implementation hooks

    @abc.abstractmethod
    def _transact(self, request: bytes) -> bytes:
        """Send one encoded request (at most 4096 bytes) and return the raw answer."""

    def close(self) -> None:
        """Release the underlying resource. Idempotent."""

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
