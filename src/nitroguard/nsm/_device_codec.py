"""The device side of the NSM codec (what the emulator runs): parse requests the way the
NSM does (serde-lenient), encode its answers and errors. Nothing here does I/O.
"""

from __future__ import annotations

from typing import Any

from nitroguard._util import is_int
from nitroguard.errors import DecodeError
from nitroguard.hazmat import cbor

# The private helpers are shared with the client side on purpose: one byte format.
from nitroguard.nsm._codec import (
    _ATTESTATION_REQUEST_HEAD,
    _NONCE_KEY,
    _PUBLIC_KEY_KEY,
    _U16_MAX,
    _USER_DATA_KEY,
    MAX_REQUEST_SIZE,
    Attestation,
    AttestationResponse,
    DescribeNsm,
    DescribePcr,
    ErrorCode,
    ExtendPcr,
    ExtendPcrResponse,
    GetRandom,
    LockPcr,
    LockPcrs,
    NsmDescription,
    PcrDescription,
    Request,
    Response,
    UnitResponse,
    _read_bstr_or_null,
)

__all__ = ["encode_error", "encode_response", "parse_request"]


# ------------------------------------------------------------- device side (emulator)


def _lenient_bytes(value: Any) -> bytes:
    # serde_bytes::ByteBuf accepts text too; the real NSM takes text for every byte
    # field and stores its UTF-8 bytes (spec 2.1, QEMU d4ee9a113e36).
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise ValueError("not bytes")


def _lenient_u16(value: Any) -> int:
    if not is_int(value) or not 0 <= value <= _U16_MAX:
        raise ValueError("not a u16")
    return value


def parse_request(data: bytes) -> Request | ErrorCode:
    """Parse a request the way the NSM does (serde_cbor into nsm-api's `Request`).

    Used by the emulator. Accepts what serde accepts and the real device was seen to
    accept (spec 2.1): unknown inner keys are ignored, missing or null optional
    attestation fields are absent, text is accepted for byte fields, unit commands may
    also come as ``{"GetRandom": null}`` (serde's map form, inferred).

    Returns:
        The request, or the `ErrorCode` the device answers: `INPUT_TOO_LARGE` over 4096
        bytes, `INVALID_OPERATION` for anything malformed (invalid CBOR, unknown
        command, a map with other than one key, a missing field, a wrong type, an
        integer outside u16).
    """
    if len(data) > MAX_REQUEST_SIZE:
        return ErrorCode.INPUT_TOO_LARGE
    fast = _parse_attestation_fast(data)
    return fast if fast is not None else _parse_request_general(data)


def _parse_attestation_fast(data: bytes) -> Attestation | None:
    """The exact canonical Attestation request (what every client sends), or None.

    Accepts only keys in serde order with null or minimally encoded byte strings and
    nothing after them, a subset of what `_parse_request_general` accepts with the
    same result (a hypothesis test checks the equivalence).
    """
    if not data.startswith(_ATTESTATION_REQUEST_HEAD):
        return None
    pos = len(_ATTESTATION_REQUEST_HEAD)
    fields: list[bytes | None] = []
    try:
        for key in (_USER_DATA_KEY, _NONCE_KEY, _PUBLIC_KEY_KEY):
            if not data.startswith(key, pos):
                return None
            value, pos = _read_bstr_or_null(data, pos + len(key))
            fields.append(value)
    except (ValueError, IndexError):
        return None
    if pos != len(data):
        return None
    return Attestation(fields[0], fields[1], fields[2])


def _parse_request_general(data: bytes) -> Request | ErrorCode:
    try:
        obj = cbor.loads(data, max_size=MAX_REQUEST_SIZE, max_depth=4)
    except DecodeError:
        return ErrorCode.INVALID_OPERATION
    try:
        return _parse_request_obj(obj, data)
    except (ValueError, KeyError, TypeError):
        return ErrorCode.INVALID_OPERATION


def _parse_request_obj(obj: Any, data: bytes) -> Request | ErrorCode:
    if isinstance(obj, str):
        if obj == "DescribeNSM":
            return DescribeNsm()
        if obj == "GetRandom":
            return GetRandom()
        return ErrorCode.INVALID_OPERATION
    if not isinstance(obj, dict) or len(obj) != 1 or data[0] != 0xA1:
        return ErrorCode.INVALID_OPERATION
    ((name, body),) = obj.items()
    if name in ("DescribeNSM", "GetRandom"):
        if body is not None:
            return ErrorCode.INVALID_OPERATION
        return DescribeNsm() if name == "DescribeNSM" else GetRandom()
    if name == "Attestation":
        if not isinstance(body, dict):
            return ErrorCode.INVALID_OPERATION
        fields: dict[str, bytes | None] = {}
        for key in ("user_data", "nonce", "public_key"):
            value = body.get(key)
            fields[key] = None if value is None else _lenient_bytes(value)
        return Attestation(**fields)
    if not isinstance(body, dict):
        return ErrorCode.INVALID_OPERATION
    if name == "DescribePCR":
        return DescribePcr(_lenient_u16(body["index"]))
    if name == "LockPCR":
        return LockPcr(_lenient_u16(body["index"]))
    if name == "LockPCRs":
        return LockPcrs(_lenient_u16(body["range"]))
    if name == "ExtendPCR":
        return ExtendPcr(_lenient_u16(body["index"]), _lenient_bytes(body["data"]))
    return ErrorCode.INVALID_OPERATION


def encode_error(code: ErrorCode) -> bytes:
    """``{"Error": "<Code>"}``."""
    return cbor.dumps({"Error": code.value})


def encode_response(response: Response) -> bytes:
    """Encode a response as serde_cbor does (definite maps, fields in declaration order)."""
    if isinstance(response, ErrorCode):
        return encode_error(response)
    if isinstance(response, UnitResponse):
        return cbor.dumps(response.name)
    body: dict[str, Any]
    if isinstance(response, PcrDescription):
        return cbor.dumps({"DescribePCR": {"lock": response.lock, "data": response.data}})
    if isinstance(response, NsmDescription):
        body = {
            "version_major": response.version[0],
            "version_minor": response.version[1],
            "version_patch": response.version[2],
            "module_id": response.module_id,
            "max_pcrs": response.max_pcrs,
            "locked_pcrs": list(response.locked_pcrs),
            "digest": response.digest,
        }
        return cbor.dumps({"DescribeNSM": body})
    if isinstance(response, ExtendPcrResponse):
        return cbor.dumps({"ExtendPCR": {"data": response.data}})
    if isinstance(response, AttestationResponse):
        return cbor.dumps({"Attestation": {"document": response.document}})
    return cbor.dumps({"GetRandom": {"random": response.random}})
