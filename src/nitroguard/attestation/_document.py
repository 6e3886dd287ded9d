"""The attestation document and its strict parser (nothing here is trusted yet).

`AttestationDocument.parse` runs verification steps 1-3 of
`nitroguard.attestation._verifier`: size, COSE envelope, payload schema. It accepts
every form real NSMs emit and nothing else (``../shared/spec/attestation.md``
sections 1.1-1.2; checklist ATT-8):

- untagged or tag-18 COSE_Sign1; definite or indefinite payload maps;
- optional fields (`public_key`, `user_data`, `nonce`) absent, ``null`` or byte
  strings of 0..4096 bytes (real documents carry 1024-byte fields and empty
  `public_key`; the NSM only bounds its whole 4096-byte request);
- nothing else: unknown or duplicate keys, trailing bytes, other tags, a protected
  header other than exactly ``{1: -35}``, a digest other than ``"SHA384"``, PCR indices
  outside 0..31 or values not 48 bytes, an empty or oversized `cabundle`.

A parsed document is a frozen value; only `Verifier.verify` turns it into a
`VerifiedDocument`.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any

from nitroguard._util import is_int
from nitroguard.errors import DecodeError, Reason, VerificationError
from nitroguard.hazmat import cbor, cose

__all__ = [
    "MAX_CABUNDLE_LEN",
    "MAX_CERTIFICATE_SIZE",
    "MAX_DOCUMENT_SIZE",
    "MAX_OPTIONAL_FIELD_SIZE",
    "MAX_PCR_INDEX",
    "PCR_LENGTH",
    "AttestationDocument",
]

#: Whole COSE_Sign1 limit, checked before decoding. The NSM's response buffer is
#: 12 KiB (aws-nitro-enclaves-nsm-api src/driver/mod.rs, 0x3000); AWS's CDDL bounds
#: the payload at 16384 bytes.
MAX_DOCUMENT_SIZE = 16 * 1024

#: `user_data`, `nonce`, `public_key`: the NSM enforces only its 4096-byte request
#: (NSM_REQUEST_MAX_SIZE); AWS's "512"/"1024" prose rejects real documents.
MAX_OPTIONAL_FIELD_SIZE = 4096

#: At most this many certificates in `cabundle` (AWS emits 4: root, regional,
#: zonal, instance).
MAX_CABUNDLE_LEN = 8

#: A DER certificate larger than this is not a Nitro certificate (real: 533-804 bytes).
MAX_CERTIFICATE_SIZE = 4096

#: PCR values in a SHA384 document are 48 bytes.
PCR_LENGTH = 48

#: PCR indices run 0..31 (16 platform/boot PCRs and 16 application PCRs).
MAX_PCR_INDEX = 31

#: The one signature size ES384 produces (raw r || s, 48 bytes each).
_SIGNATURE_LENGTH = 96

_MANDATORY = ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle")
_OPTIONAL = ("public_key", "user_data", "nonce")
_KNOWN = frozenset(_MANDATORY + _OPTIONAL)


def _schema_error(message: str, reason: Reason, field: str | None = None) -> VerificationError:
    if field is None:
        return VerificationError(message, reason, step="schema")
    return VerificationError(message, reason, step="schema", field=field)


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class AttestationDocument:
    """A strictly parsed but UNVERIFIED attestation document.

    Build it only with `AttestationDocument.parse`. Nothing in it is authenticated
    until `nitroguard.attestation.Verifier.verify` succeeds.

    Attributes:
        module_id: the enclave id, ``i-<instance>-enc<enclave>``.
        digest: always ``"SHA384"``.
        timestamp: milliseconds since the Unix epoch (UTC), as the NSM stamped it.
        pcrs: read-only map of PCR index (0..31) to its 48-byte value.
        certificate: the leaf certificate, DER.
        cabundle: the issuing chain, DER, root first (``cabundle[0]``).
        public_key: the optional `public_key` field (``None`` when absent or null).
        user_data: the optional `user_data` field.
        nonce: the optional `nonce` field.
        protected: the COSE protected header bytes as received.
        payload: the COSE payload bytes as received (the signature covers these).
        signature: the raw 96-byte ES384 signature.
        tagged: whether the COSE_Sign1 was wrapped in tag 18.
        raw: the whole document as received.
    """

    module_id: str
    digest: str
    timestamp: int
    pcrs: Mapping[int, bytes]
    certificate: bytes
    cabundle: tuple[bytes, ...]
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None
    protected: bytes
    payload: bytes
    signature: bytes
    tagged: bool
    raw: bytes

    @classmethod
    def parse(cls, data: bytes) -> AttestationDocument:
        """Parse a COSE_Sign1 attestation document strictly, without trusting it.

        Args:
            data: the document bytes exactly as received (raw CBOR, not base64).

        Returns:
            The parsed document.

        Raises:
            DecodeError: steps 1-2, with `details["step"]` ``"size"`` or ``"cose"``:
                `too_large`, `malformed_cbor`, `trailing_bytes`, `duplicate_key`,
                `unexpected_tag`, `too_deep`, `malformed_cose`,
                `unsupported_algorithm`, `bad_signature` (not 96 bytes).
            VerificationError: step 3 (``"schema"``): `invalid_document`,
                `missing_field`, `unknown_field`, `invalid_field`, `invalid_digest`,
                `invalid_pcr`, `malformed_cbor`, `duplicate_key`, ...
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(
                f"expected bytes, got {type(data).__name__}", Reason.INVALID_ARGUMENT, step="size"
            )
        data = bytes(data)
        # (1) Size, before any decoding.
        if len(data) > MAX_DOCUMENT_SIZE:
            raise DecodeError(
                f"document of {len(data)} bytes exceeds the limit of {MAX_DOCUMENT_SIZE}",
                Reason.TOO_LARGE,
                step="size",
            )
        # (2) COSE envelope.
        try:
            sign1 = cose.decode_sign1(data, max_size=MAX_DOCUMENT_SIZE)
        except DecodeError as exc:
            exc.details.setdefault("step", "cose")
            raise
        if sign1.protected != cose.ES384_PROTECTED:
            # Exactly {1: -35} as the 4 bytes every NSM emits; anything else (other
            # algs, extra parameters, text "ES384", non-minimal encodings) is refused.
            raise DecodeError(
                f"COSE protected header must be exactly {{1: -35}} (ES384), "
                f"got {sign1.protected[:32].hex()}",
                Reason.UNSUPPORTED_ALGORITHM,
                step="cose",
            )
        if len(sign1.signature) != _SIGNATURE_LENGTH:
            raise DecodeError(
                f"ES384 signature must be {_SIGNATURE_LENGTH} bytes, got {len(sign1.signature)}",
                Reason.BAD_SIGNATURE,
                step="cose",
            )
        # (3) Payload schema.
        try:
            fields = cbor.loads(sign1.payload, max_size=MAX_DOCUMENT_SIZE, max_depth=4)
        except DecodeError as exc:
            raise VerificationError(
                f"payload: {exc.message}", exc.reason, step="schema", **exc.details
            ) from None
        return cls._from_fields(fields, sign1, data)

    @classmethod
    def _from_fields(cls, fields: Any, sign1: cose.CoseSign1, raw: bytes) -> AttestationDocument:
        if not isinstance(fields, dict):
            raise _schema_error(
                f"payload must be a map, got {type(fields).__name__}", Reason.INVALID_DOCUMENT
            )
        unknown = [k for k in fields if k not in _KNOWN]
        if unknown:
            shown = ", ".join(repr(k)[:40] for k in unknown[:4])
            raise _schema_error(f"unknown payload field(s): {shown}", Reason.UNKNOWN_FIELD)
        for name in _MANDATORY:
            if name not in fields:
                raise _schema_error(f"missing field {name!r}", Reason.MISSING_FIELD, name)

        module_id = fields["module_id"]
        if not isinstance(module_id, str) or not module_id:
            raise _schema_error(
                "module_id must be non-empty text", Reason.INVALID_FIELD, "module_id"
            )

        digest = fields["digest"]
        if digest != "SHA384":
            raise _schema_error(
                f"digest must be 'SHA384', got {digest!r:.40}", Reason.INVALID_DIGEST, "digest"
            )

        timestamp = fields["timestamp"]
        if not is_int(timestamp) or timestamp <= 0:
            raise _schema_error(
                "timestamp must be a positive integer (milliseconds)",
                Reason.INVALID_FIELD,
                "timestamp",
            )

        pcrs = _parse_pcrs(fields["pcrs"])
        certificate = _parse_der(fields["certificate"], "certificate")

        bundle = fields["cabundle"]
        if not isinstance(bundle, list) or not bundle:
            raise _schema_error(
                "cabundle must be a non-empty array", Reason.INVALID_FIELD, "cabundle"
            )
        if len(bundle) > MAX_CABUNDLE_LEN:
            raise _schema_error(
                f"cabundle has {len(bundle)} certificates, at most {MAX_CABUNDLE_LEN} allowed",
                Reason.INVALID_FIELD,
                "cabundle",
            )
        cabundle = tuple(_parse_der(c, f"cabundle[{i}]") for i, c in enumerate(bundle))
        if len(set(cabundle)) != len(cabundle) or certificate in cabundle:
            raise _schema_error(
                "the same certificate appears twice in cabundle/certificate",
                Reason.INVALID_FIELD,
                "cabundle",
            )

        return cls(
            module_id=module_id,
            digest=digest,
            timestamp=timestamp,
            pcrs=pcrs,
            certificate=certificate,
            cabundle=cabundle,
            public_key=_parse_optional(fields, "public_key"),
            user_data=_parse_optional(fields, "user_data"),
            nonce=_parse_optional(fields, "nonce"),
            protected=sign1.protected,
            payload=sign1.payload,
            signature=sign1.signature,
            tagged=sign1.tagged,
            raw=raw,
        )

    @property
    def timestamp_seconds(self) -> float:
        """The timestamp in seconds since the epoch."""
        return self.timestamp / 1000


def _parse_pcrs(value: Any) -> Mapping[int, bytes]:
    if not isinstance(value, dict) or not value:
        raise _schema_error("pcrs must be a non-empty map", Reason.INVALID_PCR, "pcrs")
    out: dict[int, bytes] = {}
    for index, pcr in value.items():
        if not is_int(index) or not 0 <= index <= MAX_PCR_INDEX:
            raise _schema_error(
                f"PCR index must be an integer in 0..{MAX_PCR_INDEX}, got {index!r:.40}",
                Reason.INVALID_PCR,
                "pcrs",
            )
        if not isinstance(pcr, bytes) or len(pcr) != PCR_LENGTH:
            got = f"{len(pcr)} bytes" if isinstance(pcr, bytes) else type(pcr).__name__
            raise _schema_error(
                f"PCR{index} must be {PCR_LENGTH} bytes, got {got}", Reason.INVALID_PCR, "pcrs"
            )
        out[index] = pcr
    return types.MappingProxyType(dict(sorted(out.items())))


def _parse_der(value: Any, name: str) -> bytes:
    if not isinstance(value, bytes) or not value:
        raise _schema_error(
            f"{name} must be a non-empty byte string (DER)", Reason.INVALID_FIELD, name
        )
    if len(value) > MAX_CERTIFICATE_SIZE:
        raise _schema_error(
            f"{name} is {len(value)} bytes, at most {MAX_CERTIFICATE_SIZE} allowed",
            Reason.INVALID_FIELD,
            name,
        )
    # A DER certificate is a SEQUENCE; the full parse happens in the chain step.
    if value[0] != 0x30:
        raise _schema_error(f"{name} is not a DER certificate", Reason.INVALID_FIELD, name)
    return value


def _parse_optional(fields: dict[Any, Any], name: str) -> bytes | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise _schema_error(
            f"{name} must be a byte string or null, got {type(value).__name__}",
            Reason.INVALID_FIELD,
            name,
        )
    if len(value) > MAX_OPTIONAL_FIELD_SIZE:
        raise _schema_error(
            f"{name} is {len(value)} bytes, at most {MAX_OPTIONAL_FIELD_SIZE} allowed",
            Reason.INVALID_FIELD,
            name,
        )
    return value
