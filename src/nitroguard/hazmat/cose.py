"""COSE_Sign1 (RFC 9052) decoding, signing and signature verification: raw building blocks.

Signatures are always computed over the protected-header and payload bytes exactly
as received (RFC 9052 section 4.4): nothing is ever re-encoded before verification.
Signatures are raw ``r || s`` (IEEE P1363); both high-S and low-S forms are valid
(half of real NSM signatures are high-S, ``../shared/spec/attestation.md`` 1.1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from nitroguard._util import is_int
from nitroguard.errors import DecodeError, Reason, VerificationError
from nitroguard.hazmat import cbor

__all__ = [
    "ALGORITHMS",
    "COSE_SIGN1_TAG",
    "ES256",
    "ES384",
    "ES384_PROTECTED",
    "ES512",
    "CoseSign1",
    "decode_sign1",
    "der_to_raw",
    "encode_sign1",
    "protected_algorithm",
    "raw_to_der",
    "sig_structure",
    "sign",
    "verify_signature",
]

COSE_SIGN1_TAG = 18
ES256 = -7
ES384 = -35
ES512 = -36

#: COSE alg -> (curve, hash, coordinate size in bytes)
ALGORITHMS: dict[int, tuple[type[ec.EllipticCurve], type[hashes.HashAlgorithm], int]] = {
    ES256: (ec.SECP256R1, hashes.SHA256, 32),
    ES384: (ec.SECP384R1, hashes.SHA384, 48),
    ES512: (ec.SECP521R1, hashes.SHA512, 66),
}

#: The protected header every real NSM emits: bstr containing the map {1: -35}.
ES384_PROTECTED = bytes.fromhex("a1013822")

#: Generous bound for a protected header (a handful of small entries).
_MAX_PROTECTED = 256


@dataclasses.dataclass(frozen=True, slots=True)
class CoseSign1:
    """A decoded COSE_Sign1 message. Nothing in it is verified.

    Attributes:
        protected: the serialized protected header, as received.
        unprotected: the unprotected header map.
        payload: the payload bytes, as received.
        signature: the raw signature bytes.
        tagged: whether the message was wrapped in tag 18.
    """

    protected: bytes
    unprotected: dict[Any, Any]
    payload: bytes
    signature: bytes
    tagged: bool = False

    def to_be_signed(self) -> bytes:
        """The Sig_structure bytes the signature covers."""
        return sig_structure(self.protected, self.payload)


def decode_sign1(data: bytes, *, max_size: int) -> CoseSign1:
    """Strictly decode an untagged or tag-18 COSE_Sign1.

    Raises:
        DecodeError: any CBOR strictness failure (see `nitroguard.hazmat.cbor`), or
            `malformed_cose` when the structure is not ``[bstr, map, bstr, bstr]``.
    """
    obj = cbor.loads(data, max_size=max_size, top_level_tags=(COSE_SIGN1_TAG,))
    tagged = False
    if isinstance(obj, cbor2.CBORTag):
        tagged = True
        # NOTE: cbor2 decodes arrays under a tag as tuples.
        obj = list(obj.value) if isinstance(obj.value, tuple) else obj.value
    if not isinstance(obj, list) or len(obj) != 4:
        raise DecodeError("COSE_Sign1 must be an array of 4 items", Reason.MALFORMED_COSE)
    protected, unprotected, payload, signature = obj
    if not isinstance(protected, bytes):
        raise DecodeError("COSE protected header must be a byte string", Reason.MALFORMED_COSE)
    # NOTE: under a tag cbor2 yields an immutable mapping instead of a dict.
    if not isinstance(unprotected, Mapping):
        raise DecodeError("COSE unprotected header must be a map", Reason.MALFORMED_COSE)
    if not isinstance(payload, bytes):
        raise DecodeError("COSE payload must be a byte string", Reason.MALFORMED_COSE)
    if not isinstance(signature, bytes):
        raise DecodeError("COSE signature must be a byte string", Reason.MALFORMED_COSE)
    return CoseSign1(protected, dict(unprotected), payload, signature, tagged)


def protected_algorithm(protected: bytes) -> tuple[int, dict[Any, Any]]:
    """Decode a protected header strictly; return (alg, whole header map).

    Raises:
        DecodeError: malformed header (`malformed_cose`) or missing/odd alg
            (`unsupported_algorithm`).
    """
    header = cbor.loads(protected, max_size=_MAX_PROTECTED, max_depth=4)
    if not isinstance(header, dict):
        raise DecodeError("COSE protected header must be a map", Reason.MALFORMED_COSE)
    alg = header.get(1)
    if not is_int(alg):
        raise DecodeError("COSE protected header has no integer alg", Reason.UNSUPPORTED_ALGORITHM)
    return alg, header


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """``["Signature1", protected, external_aad, payload]`` encoded (RFC 9052 4.4)."""
    return cbor.dumps(["Signature1", protected, external_aad, payload])


def raw_to_der(signature: bytes, size: int) -> bytes:
    """Convert a raw ``r || s`` signature of `size`-byte halves to DER.

    Raises:
        VerificationError: `bad_signature` when the length is not ``2 * size``.
    """
    if len(signature) != 2 * size:
        raise VerificationError(
            f"signature is {len(signature)} bytes, expected {2 * size}", Reason.BAD_SIGNATURE
        )
    r = int.from_bytes(signature[:size], "big")
    s = int.from_bytes(signature[size:], "big")
    return encode_dss_signature(r, s)


def der_to_raw(signature: bytes, size: int) -> bytes:
    """Convert a DER ECDSA signature to raw ``r || s`` with `size`-byte halves."""
    r, s = decode_dss_signature(signature)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def verify_signature(
    key: ec.EllipticCurvePublicKey, alg: int, protected: bytes, payload: bytes, signature: bytes
) -> None:
    """Verify a COSE ECDSA signature with `key` over the received bytes.

    Raises:
        VerificationError: `unsupported_algorithm` when `alg` is unknown or does not
            match the key's curve; `bad_signature` when the signature is wrong.
    """
    spec = ALGORITHMS.get(alg)
    if spec is None:
        raise VerificationError(f"unsupported COSE alg {alg}", Reason.UNSUPPORTED_ALGORITHM)
    curve, hash_cls, size = spec
    if not isinstance(key.curve, curve):
        raise VerificationError(
            f"COSE alg {alg} does not match a {key.curve.name} key", Reason.UNSUPPORTED_ALGORITHM
        )
    der = raw_to_der(signature, size)
    try:
        key.verify(der, sig_structure(protected, payload), ec.ECDSA(hash_cls()))
    except InvalidSignature:
        raise VerificationError("COSE signature does not verify", Reason.BAD_SIGNATURE) from None


def encode_sign1(
    protected: bytes,
    unprotected: dict[Any, Any],
    payload: bytes,
    signature: bytes,
    *,
    tagged: bool = False,
) -> bytes:
    """Encode a COSE_Sign1 array (untagged by default, as the NSM emits it)."""
    body = cbor.dumps([protected, unprotected, payload, signature])
    if tagged:
        return b"\xd2" + body  # tag 18, one byte head
    return body


def sign(
    key: ec.EllipticCurvePrivateKey,
    payload: bytes,
    *,
    alg: int = ES384,
    protected: bytes | None = None,
    tagged: bool = False,
) -> bytes:
    """Sign `payload` and return the encoded COSE_Sign1.

    Args:
        key: the signing key; its curve must match `alg`.
        payload: the payload bytes, embedded as given.
        alg: COSE algorithm id (ES256, ES384 or ES512).
        protected: the serialized protected header; defaults to ``{1: alg}``.
        tagged: wrap in tag 18.
    """
    spec = ALGORITHMS.get(alg)
    if spec is None:
        raise VerificationError(f"unsupported COSE alg {alg}", Reason.UNSUPPORTED_ALGORITHM)
    _curve, hash_cls, size = spec
    if protected is None:
        protected = cbor.dumps({1: alg})
    der = key.sign(sig_structure(protected, payload), ec.ECDSA(hash_cls()))
    return encode_sign1(protected, {}, payload, der_to_raw(der, size), tagged=tagged)
