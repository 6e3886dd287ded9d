"""Sans-IO codec for the NSM wire protocol (CBOR, serde "externally tagged" enums).

The NSM speaks the `Request`/`Response` enums of aws/aws-nitro-enclaves-nsm-api
serialized by serde_cbor 0.11 (``../shared/spec/nsm-protocol.md`` sections 1.1-1.4):

- unit variants are a bare text string (``"DescribeNSM"``);
- struct variants are a definite one-entry map ``{"DescribePCR": {"index": 0}}`` whose
  inner map holds the field names as text, in declaration order;
- byte fields are byte strings, ``None`` is null, integers use the shortest form;
- errors are ``{"Error": "<Code>"}``, the code as text.

Client side: `encode_request` and the strict `decode_response`; the device side (the
serde-lenient `parse_request` and `encode_response`, used by the emulator) is in
`_device_codec`, and `nitroguard.nsm.codec` is the public namespace over both. Nothing
here does I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, Final

from nitroguard._util import is_int
from nitroguard.errors import DecodeError, NsmError, Reason
from nitroguard.hazmat import cbor

__all__ = [
    "DIGEST_SIZES",
    "MAX_PCRS",
    "MAX_REQUEST_SIZE",
    "MAX_RESPONSE_SIZE",
    "PCR_SIZE",
    "RANDOM_SIZE",
    "Attestation",
    "AttestationResponse",
    "DescribeNsm",
    "DescribePcr",
    "ErrorCode",
    "ExtendPcr",
    "ExtendPcrResponse",
    "GetRandom",
    "GetRandomResponse",
    "LockPcr",
    "LockPcrs",
    "NsmDescription",
    "PcrDescription",
    "Request",
    "Response",
    "UnitResponse",
    "bstr_header",
    "decode_response",
    "encode_request",
    "error_for",
]

#: ``NSM_REQUEST_MAX_SIZE`` (include/uapi/linux/nsm.h): the kernel answers EMSGSIZE above.
MAX_REQUEST_SIZE: Final = 0x1000
#: ``NSM_RESPONSE_MAX_SIZE``: the buffer the driver always hands the device.
MAX_RESPONSE_SIZE: Final = 0x3000
#: The NSM has 32 PCRs (nsm-check.rs asserts ``max_pcrs == 32``).
MAX_PCRS: Final = 32
#: SHA-384 PCRs.
PCR_SIZE: Final = 48
#: Bytes per GetRandom answer on the real device and in QEMU (spec section 2.4).
RANDOM_SIZE: Final = 256
#: Digest names the `Digest` enum knows, with their output size.
DIGEST_SIZES: Final[Mapping[str, int]] = {"SHA256": 32, "SHA384": 48, "SHA512": 64}

_U16_MAX: Final = 0xFFFF
#: Sanity bound on a module id (real ones are 39 characters; the C API keeps 99).
_MAX_MODULE_ID: Final = 256


class ErrorCode(enum.Enum):
    """The NSM `ErrorCode` enum; on the wire the variant name travels as text."""

    SUCCESS = "Success"
    INVALID_ARGUMENT = "InvalidArgument"
    INVALID_INDEX = "InvalidIndex"
    INVALID_RESPONSE = "InvalidResponse"
    READ_ONLY_INDEX = "ReadOnlyIndex"
    INVALID_OPERATION = "InvalidOperation"
    BUFFER_TOO_SMALL = "BufferTooSmall"
    INPUT_TOO_LARGE = "InputTooLarge"
    INTERNAL_ERROR = "InternalError"


_ERROR_REASONS: Final[Mapping[ErrorCode, Reason]] = {
    ErrorCode.SUCCESS: Reason.INVALID_RESPONSE,  # never valid on the wire
    ErrorCode.INVALID_ARGUMENT: Reason.INVALID_ARGUMENT_NSM,
    ErrorCode.INVALID_INDEX: Reason.INVALID_INDEX,
    ErrorCode.INVALID_RESPONSE: Reason.INVALID_RESPONSE,
    ErrorCode.READ_ONLY_INDEX: Reason.READ_ONLY_INDEX,
    ErrorCode.INVALID_OPERATION: Reason.INVALID_OPERATION,
    ErrorCode.BUFFER_TOO_SMALL: Reason.BUFFER_TOO_SMALL,
    ErrorCode.INPUT_TOO_LARGE: Reason.INPUT_TOO_LARGE,
    ErrorCode.INTERNAL_ERROR: Reason.INTERNAL_ERROR,
}

_ERROR_TEXT: Final[Mapping[ErrorCode, str]] = {
    ErrorCode.SUCCESS: "the NSM answered Error(Success), which is never valid on the wire",
    ErrorCode.INVALID_ARGUMENT: "the NSM rejected an argument",
    ErrorCode.INVALID_INDEX: "PCR index or range out of bounds",
    ErrorCode.INVALID_RESPONSE: "the NSM reported an invalid response",
    ErrorCode.READ_ONLY_INDEX: "PCR is locked (read-only)",
    ErrorCode.INVALID_OPERATION: "the NSM rejected the request as malformed or unknown",
    ErrorCode.BUFFER_TOO_SMALL: "buffer too small for the NSM's answer",
    ErrorCode.INPUT_TOO_LARGE: f"request larger than {MAX_REQUEST_SIZE} bytes",
    ErrorCode.INTERNAL_ERROR: "the NSM reported an internal error",
}


def error_for(code: ErrorCode, operation: str) -> NsmError:
    """The `NsmError` a client raises when the NSM answers ``{"Error": code}``."""
    return NsmError(
        f"{operation}: {_ERROR_TEXT[code]} ({code.value})",
        _ERROR_REASONS[code],
        nsm_error=code.value,
        operation=operation,
    )


# --------------------------------------------------------------------------- requests


@dataclasses.dataclass(frozen=True, slots=True)
class DescribePcr:
    """``DescribePCR { index: u16 }``."""

    index: int
    name = "DescribePCR"


@dataclasses.dataclass(frozen=True, slots=True)
class ExtendPcr:
    """``ExtendPCR { index: u16, data: bytes }``."""

    index: int
    data: bytes
    name = "ExtendPCR"


@dataclasses.dataclass(frozen=True, slots=True)
class LockPcr:
    """``LockPCR { index: u16 }``."""

    index: int
    name = "LockPCR"


@dataclasses.dataclass(frozen=True, slots=True)
class LockPcrs:
    """``LockPCRs { range: u16 }``: lock PCRs ``[0, range)``."""

    range: int
    name = "LockPCRs"


@dataclasses.dataclass(frozen=True, slots=True)
class DescribeNsm:
    """``DescribeNSM`` (unit variant)."""

    name = "DescribeNSM"


@dataclasses.dataclass(frozen=True, slots=True)
class Attestation:
    """``Attestation { user_data, nonce, public_key }``, each optional bytes."""

    user_data: bytes | None = None
    nonce: bytes | None = None
    public_key: bytes | None = None
    name = "Attestation"


@dataclasses.dataclass(frozen=True, slots=True)
class GetRandom:
    """``GetRandom`` (unit variant)."""

    name = "GetRandom"


Request = DescribePcr | ExtendPcr | LockPcr | LockPcrs | DescribeNsm | Attestation | GetRandom


def _check_u16(value: object, what: str) -> int:
    if not is_int(value) or not 0 <= value <= _U16_MAX:
        raise NsmError(
            f"{what} must be an integer in [0, {_U16_MAX}], got {value!r}",
            Reason.INVALID_ARGUMENT,
        )
    return value


def _check_bytes(value: object, what: str, *, optional: bool) -> bytes | None:
    if value is None and optional:
        return None
    if not isinstance(value, bytes | bytearray | memoryview):
        raise NsmError(f"{what} must be bytes, got {type(value).__name__}", Reason.INVALID_ARGUMENT)
    return bytes(value)


def bstr_header(length: int) -> bytes:
    """The shortest CBOR head of a definite byte string of `length` bytes."""
    if length < 24:
        return bytes((0x40 | length,))
    if length < 0x100:
        return bytes((0x58, length))
    if length < 0x10000:
        return b"\x59" + length.to_bytes(2, "big")
    if length < 0x1_0000_0000:
        return b"\x5a" + length.to_bytes(4, "big")
    return b"\x5b" + length.to_bytes(8, "big")


def _bstr_or_null(value: bytes | None) -> bytes:
    if value is None:
        return b"\xf6"
    return bstr_header(len(value)) + value


def _read_bstr_or_null(data: bytes, pos: int) -> tuple[bytes | None, int]:
    """A null or a *minimally* encoded byte string at `pos` (fast paths only).

    Raises:
        ValueError, IndexError: anything else; the caller falls back to the general,
            strict decoder, so a fast path never accepts what the general path rejects.
    """
    ib = data[pos]
    if ib == 0xF6:
        return None, pos + 1
    if 0x40 <= ib <= 0x57:
        length, pos = ib - 0x40, pos + 1
    elif ib == 0x58:
        length, pos = data[pos + 1], pos + 2
        if length < 24:
            raise ValueError("non-minimal")
    elif ib == 0x59:
        length, pos = int.from_bytes(data[pos + 1 : pos + 3], "big"), pos + 3
        if length < 0x100:
            raise ValueError("non-minimal")
    else:
        raise ValueError("not a short byte string")
    end = pos + length
    if end > len(data):
        raise ValueError("truncated")
    return data[pos:end], end


#: ``{"Attestation": {`` with three entries.
_ATTESTATION_REQUEST_HEAD: Final = b"\xa1" + cbor.dumps("Attestation") + b"\xa3"
_ATTESTATION_RESPONSE_HEAD: Final = (
    b"\xa1" + cbor.dumps("Attestation") + b"\xa1" + cbor.dumps("document")
)
_USER_DATA_KEY: Final = cbor.dumps("user_data")
_NONCE_KEY: Final = cbor.dumps("nonce")
_PUBLIC_KEY_KEY: Final = cbor.dumps("public_key")


def encode_request(request: Request) -> bytes:
    """Encode a request exactly as serde_cbor encodes the nsm-api `Request` enum.

    Returns:
        The CBOR bytes (not yet checked against `MAX_REQUEST_SIZE`: the caller does
        that, like nsm-api, before any I/O).

    Raises:
        NsmError: `invalid_argument` when an index is not a u16 or data is not bytes.
    """
    body: Any
    if isinstance(request, DescribeNsm | GetRandom):
        return cbor.dumps(request.name)
    if isinstance(request, DescribePcr | LockPcr):
        body = {"index": _check_u16(request.index, "PCR index")}
    elif isinstance(request, ExtendPcr):
        body = {
            "index": _check_u16(request.index, "PCR index"),
            "data": _check_bytes(request.data, "extend data", optional=False),
        }
    elif isinstance(request, LockPcrs):
        body = {"range": _check_u16(request.range, "PCR range")}
    elif isinstance(request, Attestation):
        # serde sends every Option field, None as null (spec 1.4): never omit them.
        # Built directly (the hot path of every attestation); the golden tests and a
        # hypothesis test pin it to the generic map encoding.
        return b"".join(
            (
                _ATTESTATION_REQUEST_HEAD,
                _USER_DATA_KEY,
                _bstr_or_null(_check_bytes(request.user_data, "user_data", optional=True)),
                _NONCE_KEY,
                _bstr_or_null(_check_bytes(request.nonce, "nonce", optional=True)),
                _PUBLIC_KEY_KEY,
                _bstr_or_null(_check_bytes(request.public_key, "public_key", optional=True)),
            )
        )
    else:  # pragma: no cover - exhaustive over Request
        raise NsmError(f"unknown request {request!r}", Reason.INVALID_ARGUMENT)
    return cbor.dumps({request.name: body})


# -------------------------------------------------------------------------- responses


@dataclasses.dataclass(frozen=True, slots=True)
class PcrDescription:
    """A PCR as DescribePCR reports it.

    Attributes:
        lock: whether the PCR is locked (read-only until the enclave stops).
        data: its current value (48 bytes for SHA-384).
    """

    lock: bool
    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class NsmDescription:
    """The answer to DescribeNSM.

    Attributes:
        version: ``(major, minor, patch)``; the real NSM reports ``(1, 0, 0)``.
        module_id: the enclave id, ``i-<17 hex>-enc<16 hex>`` on AWS.
        max_pcrs: number of PCRs (32).
        locked_pcrs: indices of the locked PCRs, ascending.
        digest: the PCR hash, ``"SHA384"`` on the real NSM.
    """

    version: tuple[int, int, int]
    module_id: str
    max_pcrs: int
    locked_pcrs: tuple[int, ...]
    digest: str

    @property
    def version_string(self) -> str:
        """The version as ``"major.minor.patch"``."""
        return ".".join(str(v) for v in self.version)


@dataclasses.dataclass(frozen=True, slots=True)
class ExtendPcrResponse:
    """``ExtendPCR { data }``: the PCR's new value."""

    data: bytes
    name = "ExtendPCR"


@dataclasses.dataclass(frozen=True, slots=True)
class AttestationResponse:
    """``Attestation { document }``: the COSE_Sign1 bytes."""

    document: bytes
    name = "Attestation"


@dataclasses.dataclass(frozen=True, slots=True)
class GetRandomResponse:
    """``GetRandom { random }``."""

    random: bytes
    name = "GetRandom"


@dataclasses.dataclass(frozen=True, slots=True)
class UnitResponse:
    """A unit response: ``"LockPCR"`` or ``"LockPCRs"``."""

    name: str


Response = (
    PcrDescription
    | ExtendPcrResponse
    | UnitResponse
    | NsmDescription
    | AttestationResponse
    | GetRandomResponse
    | ErrorCode
)

_UNIT_RESPONSES: Final = frozenset({"LockPCR", "LockPCRs"})
_STRUCT_RESPONSES: Final = frozenset(
    {"DescribePCR", "ExtendPCR", "DescribeNSM", "Attestation", "GetRandom"}
)


def _bad(operation: str, message: str, **details: Any) -> NsmError:
    return NsmError(
        f"{operation}: invalid NSM response: {message}", Reason.INVALID_RESPONSE, **details
    )


def _field(body: Mapping[Any, Any], key: str, operation: str) -> Any:
    if key not in body:
        raise _bad(operation, f"missing field {key!r}")
    return body[key]


def _bytes_field(
    body: Mapping[Any, Any], key: str, operation: str, *, sizes: range | frozenset[int]
) -> bytes:
    value = _field(body, key, operation)
    if not isinstance(value, bytes):
        raise _bad(operation, f"field {key!r} must be a byte string, got {type(value).__name__}")
    if len(value) not in sizes:
        raise _bad(operation, f"field {key!r} has an implausible length {len(value)}")
    return value


def _u16_field(body: Mapping[Any, Any], key: str, operation: str) -> int:
    value = _field(body, key, operation)
    if not is_int(value) or not 0 <= value <= _U16_MAX:
        raise _bad(operation, f"field {key!r} must be a u16, got {value!r}")
    return value


_PCR_SIZES: Final = frozenset(DIGEST_SIZES.values())


def _decode_body(name: str, body: Mapping[Any, Any], operation: str) -> Response:
    # serde-derived structs ignore unknown fields (spec 1.4), so extra keys are allowed;
    # missing or mistyped ones are not.
    if name == "DescribePCR":
        lock = _field(body, "lock", operation)
        if not isinstance(lock, bool):
            raise _bad(operation, f"field 'lock' must be a bool, got {type(lock).__name__}")
        return PcrDescription(lock, _bytes_field(body, "data", operation, sizes=_PCR_SIZES))
    if name == "ExtendPCR":
        return ExtendPcrResponse(_bytes_field(body, "data", operation, sizes=_PCR_SIZES))
    if name == "Attestation":
        return AttestationResponse(
            _bytes_field(body, "document", operation, sizes=range(1, MAX_RESPONSE_SIZE))
        )
    if name == "GetRandom":
        # A zero-length answer would make get_random() loop forever: refuse it.
        return GetRandomResponse(
            _bytes_field(body, "random", operation, sizes=range(1, RANDOM_SIZE + 1))
        )
    # DescribeNSM
    version = tuple(
        _u16_field(body, k, operation) for k in ("version_major", "version_minor", "version_patch")
    )
    module_id = _field(body, "module_id", operation)
    if not isinstance(module_id, str) or not 0 < len(module_id) <= _MAX_MODULE_ID:
        raise _bad(operation, "field 'module_id' must be a non-empty text string")
    max_pcrs = _u16_field(body, "max_pcrs", operation)
    locked = _field(body, "locked_pcrs", operation)
    if not isinstance(locked, list) or len(locked) > max_pcrs:
        raise _bad(operation, "field 'locked_pcrs' must be an array of at most max_pcrs indices")
    previous = -1
    for index in locked:
        # A BTreeSet serializes ascending and without duplicates.
        if not is_int(index) or not previous < index < max_pcrs:
            raise _bad(operation, "field 'locked_pcrs' is not an ascending set of valid indices")
        previous = index
    digest = _field(body, "digest", operation)
    if not isinstance(digest, str) or digest not in DIGEST_SIZES:
        raise _bad(operation, f"unknown digest {digest!r:.64}")
    return NsmDescription(
        (version[0], version[1], version[2]), module_id, max_pcrs, tuple(locked), digest
    )


def decode_response(data: bytes, expected: str) -> Response:
    """Strictly decode one NSM response.

    Args:
        data: the response bytes (exactly the length the device reported).
        expected: the request's variant name; any other success variant is rejected.

    Returns:
        The decoded response, or an `ErrorCode` when the device answered an error
        (turn it into an exception with `error_for`).

    Raises:
        NsmError: reason `invalid_response` for anything malformed: bad or non-strict
            CBOR, trailing bytes, an envelope that is not text or a one-entry definite
            map (serde_cbor refuses indefinite maps for enums), an unknown or unexpected
            variant, a missing or mistyped field, an implausible length.
    """
    operation = expected
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _bad(operation, f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_RESPONSE_SIZE:
        raise _bad(operation, f"{len(data)} bytes exceeds {MAX_RESPONSE_SIZE}")
    if expected == "Attestation" and data.startswith(_ATTESTATION_RESPONSE_HEAD):
        # The exact canonical answer; anything else takes the general path below.
        try:
            document, end = _read_bstr_or_null(data, len(_ATTESTATION_RESPONSE_HEAD))
        except (ValueError, IndexError):
            document, end = None, -1
        if document and end == len(data):
            return AttestationResponse(document)
    return _decode_general(data, expected)


def _decode_general(data: bytes, expected: str) -> Response:
    operation = expected
    try:
        obj = cbor.loads(data, max_size=MAX_RESPONSE_SIZE, max_depth=4)
    except DecodeError as exc:
        raise _bad(operation, exc.message, cause=exc.reason.value) from exc
    if isinstance(obj, str):
        if obj == expected and obj in _UNIT_RESPONSES:
            return UnitResponse(obj)
        raise _bad(operation, f"unexpected unit variant {obj[:64]!r}")
    # serde_cbor accepts an enum only as a definite map of exactly one entry (spec 1.4).
    if not isinstance(obj, dict) or data[0] != 0xA1:
        raise _bad(operation, "envelope is neither a variant name nor a one-entry definite map")
    ((name, body),) = obj.items()
    if name == "Error":
        if not isinstance(body, str):
            raise _bad(operation, "error code must be text")
        try:
            return ErrorCode(body)
        except ValueError:
            raise _bad(operation, f"unknown error code {body[:64]!r}") from None
    if not isinstance(name, str) or name not in _STRUCT_RESPONSES:
        raise _bad(operation, f"unknown variant {name!r:.64}")
    if name != expected:
        raise _bad(operation, f"answered {name} to a {expected} request")
    if not isinstance(body, dict):
        raise _bad(operation, f"{name} content must be a map")
    return _decode_body(name, body, operation)
