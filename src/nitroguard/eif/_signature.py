"""The EIF signature section (type 4): parse, verify, build (``../shared/spec/eif.md`` 4).

The section is a CBOR array of ``{"signing_certificate": PEM, "signature": COSE_Sign1}``
maps whose byte fields are CBOR arrays of small integers (serde_cbor's ``Vec<u8>``).
The COSE_Sign1 signs ``{"register_index": 0, "register_value": PCR0}``.

Verification follows Trail of Bits' advice (spec 4.3): rebuild the payload from OUR
PCR0 and verify the signature over that, never over the embedded payload alone.
nitro-cli's ``run-enclave`` never compares the payload with PCR0, and its
``describe-eif`` never checks the certificate's validity dates; we do both.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import warnings
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.utils import CryptographyDeprecationWarning

from nitroguard.errors import DecodeError, EifError, Error, Reason
from nitroguard.hazmat import cbor, cose

from ._format import SIGNATURE_MAX_SIZE
from ._measure import pcr_of_bytes

__all__ = [
    "SignatureReport",
    "SignatureSection",
    "encode_signature_section",
    "parse_signature_section",
    "pcr_payload",
    "sign_pcr0",
]

_CERT_KEY = "signing_certificate"
_SIG_KEY = "signature"


def _to_list(value: Any) -> Any:
    # NOTE: cbor2 may hand back tuples/immutable maps; normalise for isinstance checks.
    if isinstance(value, tuple):
        return list(value)
    return value


def _byte_field(value: Any, name: str) -> bytes:
    """Accept a CBOR array of integers 0..255 (what serde writes) or a byte string."""
    if isinstance(value, bytes):
        return value
    value = _to_list(value)
    if not isinstance(value, list):
        raise EifError(
            f"signature entry field {name!r} must be an array of bytes, got {type(value).__name__}",
            Reason.BAD_SIGNATURE_SECTION,
        )
    for i, item in enumerate(value):
        if not isinstance(item, int) or isinstance(item, bool) or not 0 <= item <= 255:
            raise EifError(
                f"signature entry field {name!r} item {i} is not a byte value",
                Reason.BAD_SIGNATURE_SECTION,
            )
    return bytes(value)


def pcr_payload(pcr0: bytes) -> bytes:
    """The exact bytes nitro-cli signs: serde_cbor of ``PcrInfo{0, PCR0}`` (spec 4.1).

    ``a2 6e "register_index" 00 6e "register_value" 98 30 <48 integers>``.
    """
    return cbor.dumps({"register_index": 0, "register_value": list(pcr0)})


@dataclasses.dataclass(frozen=True, slots=True)
class SignatureSection:
    """A parsed (not yet verified) signature section.

    Attributes:
        certificate_pem: the ``signing_certificate`` bytes exactly as stored.
        certificate: the first certificate of that PEM.
        public_key: its EC public key.
        subject, issuer: its names (RFC 4514).
        not_before, not_after: its validity period (UTC).
        cose: the decoded COSE_Sign1.
        cose_bytes: the ``signature`` bytes exactly as stored.
        algorithm: the COSE alg from the protected header.
        certificate_der: the certificate's DER (what PCR8 measures).
        pcr8: the PCR8 value (extend over the certificate's DER).
    """

    certificate_pem: bytes
    certificate: x509.Certificate
    public_key: ec.EllipticCurvePublicKey
    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    cose: cose.CoseSign1
    cose_bytes: bytes
    algorithm: int
    certificate_der: bytes
    pcr8: bytes


_CertFields = tuple[x509.Certificate, Any, str, str, dt.datetime, dt.datetime, bytes]


def _load_certificate(pem: bytes) -> _CertFields:
    """Load the PEM and every field we use, turning every parser complaint into an
    `EifError`.

    cryptography parses some fields lazily and signals problems outside ValueError
    (`InvalidVersion`; a `CryptographyDeprecationWarning` for a non-positive serial,
    which RFC 5280 forbids and future releases reject): all three were found by
    ``bench/fuzz_eif.py``. Warnings are turned into rejections so that nothing escapes
    even under ``-W error``.
    """
    bad: tuple[type[BaseException], ...] = (
        ValueError,
        TypeError,
        x509.InvalidVersion,
        UnsupportedAlgorithm,
        CryptographyDeprecationWarning,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except bad as exc:
            raise EifError(
                f"signing_certificate is not a PEM X.509 certificate: {exc}",
                Reason.BAD_SIGNATURE_SECTION,
            ) from None
        try:
            return (
                certificate,
                certificate.public_key(),
                certificate.subject.rfc4514_string(),
                certificate.issuer.rfc4514_string(),
                certificate.not_valid_before_utc,
                certificate.not_valid_after_utc,
                certificate.public_bytes(serialization.Encoding.DER),
            )
        except bad as exc:
            raise EifError(
                f"signing_certificate cannot be used: {exc}", Reason.BAD_SIGNATURE_SECTION
            ) from None


def parse_signature_section(data: bytes) -> SignatureSection:
    """Strictly parse the signature section data.

    Strict where nitro-cli is lax (spec 3.4, 4.3): exactly one entry, exactly the two
    known keys, byte fields as integer arrays or byte strings, a PEM certificate, a
    well-formed COSE_Sign1 with an ES256/ES384/ES512 protected header.

    Raises:
        EifError: `bad_signature_section` for any structural fault (the message says which).
    """
    if len(data) > SIGNATURE_MAX_SIZE:
        raise EifError(
            f"signature section of {len(data)} bytes exceeds the {SIGNATURE_MAX_SIZE}-byte limit",
            Reason.BAD_SIGNATURE_SECTION,
        )
    try:
        entries = _to_list(cbor.loads(data, max_size=SIGNATURE_MAX_SIZE, max_depth=4))
    except DecodeError as exc:
        raise EifError(
            f"signature section is not valid CBOR: {exc.message}",
            Reason.BAD_SIGNATURE_SECTION,
            cbor_reason=exc.reason.value,
        ) from exc
    if not isinstance(entries, list):
        raise EifError("signature section must be a CBOR array", Reason.BAD_SIGNATURE_SECTION)
    if len(entries) != 1:
        # nitro-cli writes exactly one and reads only [0] (an empty array panics it).
        raise EifError(
            f"signature section must hold exactly one entry, found {len(entries)}",
            Reason.BAD_SIGNATURE_SECTION,
        )
    entry = entries[0]
    if not isinstance(entry, Mapping):
        raise EifError("signature entry must be a CBOR map", Reason.BAD_SIGNATURE_SECTION)
    keys = set(entry.keys())
    if keys != {_CERT_KEY, _SIG_KEY}:
        raise EifError(
            f"signature entry must have exactly the keys {_CERT_KEY!r} and {_SIG_KEY!r}, "
            f"found {sorted(map(repr, keys))}",
            Reason.BAD_SIGNATURE_SECTION,
        )
    pem = _byte_field(entry[_CERT_KEY], _CERT_KEY)
    cose_bytes = _byte_field(entry[_SIG_KEY], _SIG_KEY)
    certificate, public_key, subject, issuer, not_before, not_after, der = _load_certificate(pem)
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise EifError(
            "the signing certificate's key is not an EC key", Reason.UNSUPPORTED_ALGORITHM
        )
    try:
        message = cose.decode_sign1(cose_bytes, max_size=SIGNATURE_MAX_SIZE)
        alg, _header = cose.protected_algorithm(message.protected)
    except DecodeError as exc:
        raise EifError(
            f"signature is not a valid COSE_Sign1: {exc.message}",
            Reason.BAD_SIGNATURE_SECTION,
            cose_reason=exc.reason.value,
        ) from exc
    if alg not in cose.ALGORITHMS:
        raise EifError(f"COSE alg {alg} is not ES256, ES384 or ES512", Reason.UNSUPPORTED_ALGORITHM)
    return SignatureSection(
        certificate_pem=pem,
        certificate=certificate,
        public_key=public_key,
        subject=subject,
        issuer=issuer,
        not_before=not_before,
        not_after=not_after,
        cose=message,
        cose_bytes=cose_bytes,
        algorithm=alg,
        certificate_der=der,
        pcr8=pcr_of_bytes(der),
    )


def _int_array(data: bytes) -> list[int]:
    return list(data)


def encode_signature_section(certificate_pem: bytes, cose_sign1: bytes) -> bytes:
    """Encode the section as nitro-cli does: one map, byte fields as integer arrays."""
    return cbor.dumps([{_CERT_KEY: _int_array(certificate_pem), _SIG_KEY: _int_array(cose_sign1)}])


_CURVE_ALG: dict[type[ec.EllipticCurve], int] = {
    ec.SECP256R1: cose.ES256,
    ec.SECP384R1: cose.ES384,
    ec.SECP521R1: cose.ES512,
}


def algorithm_for_key(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> int:
    """The COSE alg nitro-cli picks for a key (by curve, spec 4.2).

    Raises:
        EifError: `unsupported_algorithm` for other curves.
    """
    alg = _CURVE_ALG.get(type(key.curve))
    if alg is None:
        raise EifError(
            f"only P-256, P-384 and P-521 keys can sign an EIF, not {key.curve.name}",
            Reason.UNSUPPORTED_ALGORITHM,
        )
    return alg


def sign_pcr0(key: ec.EllipticCurvePrivateKey, pcr0: bytes) -> bytes:
    """An untagged COSE_Sign1 over `pcr_payload(pcr0)`, as ``nitro-cli sign-eif`` makes it.

    Signing is deterministic (RFC 6979), so a signed build is byte-reproducible too.
    """
    alg = algorithm_for_key(key)
    _curve, hash_cls, size = cose.ALGORITHMS[alg]
    protected = cbor.dumps({1: alg})
    payload = pcr_payload(pcr0)
    der = key.sign(
        cose.sig_structure(protected, payload),
        ec.ECDSA(hash_cls(), deterministic_signing=True),
    )
    return cose.encode_sign1(protected, {}, payload, cose.der_to_raw(der, size))


@dataclasses.dataclass(frozen=True, slots=True)
class SignatureReport:
    """The outcome of checking an image's signature.

    Attributes:
        ok: everything below holds.
        reason: the first failure (None when `ok`).
        message: a readable summary of the first failure (empty when `ok`).
        algorithm: the COSE alg, when the section parsed.
        signature_valid: the signature verifies over the payload rebuilt from our PCR0.
        payload_matches: the embedded payload equals the rebuilt one.
        certificate_valid: `at` lies within the certificate's validity period.
        at: the time the validity was judged at.
        subject, issuer, not_before, not_after, fingerprint_sha256: certificate details.
    """

    ok: bool
    reason: Reason | None
    message: str
    algorithm: int | None
    signature_valid: bool
    payload_matches: bool
    certificate_valid: bool
    at: dt.datetime
    subject: str = ""
    issuer: str = ""
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    fingerprint_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (nitro-cli's ``SigningCertificate`` names where they exist)."""
        alg_names = {cose.ES256: "ES256", cose.ES384: "ES384", cose.ES512: "ES512"}
        return {
            "Ok": self.ok,
            "Reason": self.reason.value if self.reason else None,
            "Message": self.message,
            "Algorithm": alg_names.get(self.algorithm) if self.algorithm else None,
            "SignatureValid": self.signature_valid,
            "PayloadMatchesPCR0": self.payload_matches,
            "CertificateValidAt": self.certificate_valid,
            "At": self.at.isoformat(),
            "SubjectName": self.subject,
            "IssuerName": self.issuer,
            "NotBefore": self.not_before.isoformat() if self.not_before else None,
            "NotAfter": self.not_after.isoformat() if self.not_after else None,
            "FingerprintSHA256": self.fingerprint_sha256,
        }

    def raise_for_failure(self) -> None:
        """Raise the first failure as an `EifError`.

        Raises:
            EifError: with `reason` (e.g. `bad_signature`, `signature_payload_mismatch`,
                `expired_certificate`).
        """
        if not self.ok:
            raise EifError(self.message, self.reason)


def check(section: SignatureSection, pcr0: bytes, at: dt.datetime) -> SignatureReport:
    """Judge `section` against our own `pcr0` at time `at` (never raises on a bad image)."""
    not_before = section.not_before
    not_after = section.not_after
    expected = pcr_payload(pcr0)
    payload_matches = section.cose.payload == expected
    certificate_valid = not_before <= at <= not_after
    failures: list[tuple[Reason, str]] = []
    signature_valid = False
    try:
        # The payload is OUR rebuilt one; the embedded payload is only compared.
        cose.verify_signature(
            section.public_key,
            section.algorithm,
            section.cose.protected,
            expected,
            section.cose.signature,
        )
        signature_valid = True
    except Error as exc:
        if exc.reason is Reason.BAD_SIGNATURE:
            failures.append(
                (
                    Reason.BAD_SIGNATURE,
                    "the signature does not verify over the payload rebuilt from this image's PCR0",
                )
            )
        else:
            failures.append((exc.reason, exc.message))
    if not payload_matches:
        failures.append(
            (
                Reason.SIGNATURE_PAYLOAD_MISMATCH,
                "the signed payload does not name this image's PCR0",
            )
        )
    if at < not_before:
        failures.append(
            (
                Reason.NOT_YET_VALID_CERTIFICATE,
                f"the signing certificate is not valid before {not_before.isoformat()} "
                f"(checked at {at.isoformat()})",
            )
        )
    elif at > not_after:
        failures.append(
            (
                Reason.EXPIRED_CERTIFICATE,
                f"the signing certificate expired at {not_after.isoformat()} "
                f"(checked at {at.isoformat()})",
            )
        )
    reason, message = failures[0] if failures else (None, "")
    return SignatureReport(
        ok=not failures,
        reason=reason,
        message=message,
        signature_valid=signature_valid,
        payload_matches=payload_matches,
        certificate_valid=certificate_valid,
        algorithm=section.algorithm,
        at=at,
        subject=section.subject,
        issuer=section.issuer,
        not_before=not_before,
        not_after=not_after,
        fingerprint_sha256=hashlib.sha256(section.certificate_der).hexdigest(),
    )
