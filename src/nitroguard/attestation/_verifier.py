"""The attestation verification pipeline: parse everything, then trust step by step.

`Verifier.verify` runs these numbered steps, in this order, and every failure raises
`VerificationError` (or `PolicyError` for step 7) whose ``details["step"]`` names the
step:

1. ``size``      -- the input is at most 16 KiB, checked before any decoding.
2. ``cose``      -- strict CBOR; untagged or tag-18 COSE_Sign1; protected header exactly
                    ``{1: -35}``; 96-byte signature.
3. ``schema``    -- the payload, field by field (`AttestationDocument.parse`).
4. ``root``      -- ``cabundle[0]`` is byte-equal to a configured trust root (by default
                    the pinned AWS Nitro Enclaves Root-G1). A root supplied in the
                    message is never trusted because it is there (ATT-1).
5. ``chain``     -- ``cabundle[0] -> ... -> cabundle[-1] -> certificate`` in exactly that
                    order: ecdsa-with-SHA384 and P-384 keys only; every certificate valid
                    at `at`; issuers CA=true with keyCertSign and pathLen respected; the
                    leaf (always ``certificate``, never searched for in the bundle) CA=false
                    with digitalSignature; no unknown critical extension.
6. ``signature`` -- ES384 over the Sig_structure of the protected header and payload
                    bytes exactly as received (never re-encoded); high-S and low-S both
                    valid (half of real documents are high-S).
7. ``policy``    -- `NotDebug` unless ``allow_debug=True``, then the caller's policy.

Chain cache: a bounded LRU of (issuer DER, certificate DER) pairs whose signature
verified, plus a bounded LRU of parsed certificates keyed by DER. Documents from the
same parent instance share the root, regional, zonal and instance certificates, so a
warm verification costs about one ECDSA verify (the COSE signature, and the leaf
certificate's when the enclave restarted). Only facts that depend on nothing but the
bytes are cached: validity at `at`, CA constraints and policies are evaluated every
time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Generic, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, SignatureAlgorithmOID

from nitroguard._util import is_int
from nitroguard.attestation import _roots
from nitroguard.attestation._document import AttestationDocument
from nitroguard.attestation._policy import NotDebug, Policy
from nitroguard.errors import ConfigError, DecodeError, Error, Reason, VerificationError
from nitroguard.hazmat import cose

__all__ = ["STEPS", "VerifiedDocument", "Verifier", "step_label", "verify"]

#: Step names in pipeline order; ``STEPS.index(name) + 1`` is the step number.
STEPS = ("size", "cose", "schema", "root", "chain", "signature", "policy")


def step_label(error: Error) -> str:
    """``"step N (name)"`` for an error raised by the verification pipeline, else ``"input"``.

    Uses ``error.details["step"]``, which every pipeline error carries (see `STEPS`).
    """
    step = error.details.get("step")
    if isinstance(step, str) and step in STEPS:
        return f"step {STEPS.index(step) + 1} ({step})"
    return "input"


#: Default number of cached verified signature pairs per `Verifier`.
DEFAULT_CACHE_SIZE = 256

#: Parsed certificates (a pure function of their DER) shared by every `Verifier` in
#: the process. Parsing, and OpenSSL's first use of a freshly loaded public key, cost
#: about a fifth of an ECDSA verify per certificate; trust decisions (root pin,
#: signatures, validity, constraints) are never shared between verifiers.
PARSED_CACHE_SIZE = 512

_HANDLED_CRITICAL = frozenset({ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE})

#: AlgorithmIdentifier of ecdsa-with-SHA384 (1.2.840.10045.4.3.3, parameters absent).
_ECDSA_SHA384_ALGID = bytes.fromhex("300a06082a8648ce3d040303")
_ECDSA_SHA384 = ec.ECDSA(hashes.SHA384())
_NOT_DEBUG = NotDebug()


def _der_content(buf: bytes, pos: int) -> tuple[int, int]:
    """(content start, content end) of the DER element at `pos`."""
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        width = length & 0x7F
        length = int.from_bytes(buf[pos : pos + width], "big")
        pos += width
    return pos, pos + length


def _tbs_fields(tbs: bytes) -> tuple[bytes, bytes, bytes]:
    """(signature AlgorithmIdentifier, issuer Name, subject Name) of a TBSCertificate, as DER.

    Only called on a TBSCertificate cryptography has already parsed strictly, so the
    element boundaries are trusted; a malformed one raises IndexError/ValueError.
    """
    pos, _ = _der_content(tbs, 0)  # into the TBSCertificate SEQUENCE
    if tbs[pos] == 0xA0:  # [0] EXPLICIT version (absent in v1)
        pos = _der_content(tbs, pos)[1]
    pos = _der_content(tbs, pos)[1]  # serialNumber
    alg_end = _der_content(tbs, pos)[1]
    issuer_end = _der_content(tbs, alg_end)[1]
    validity_end = _der_content(tbs, issuer_end)[1]
    subject_end = _der_content(tbs, validity_end)[1]
    return tbs[pos:alg_end], tbs[alg_end:issuer_end], tbs[validity_end:subject_end]


_K = TypeVar("_K")
_V = TypeVar("_V")


class _Lru(Generic[_K, _V]):
    """A small thread-safe LRU map; `maxsize == 0` disables it."""

    __slots__ = ("_data", "_lock", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[_K, _V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _K) -> _V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: _K, value: _V) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


@dataclasses.dataclass(frozen=True, slots=True)
class _CertInfo:
    """What the chain step needs from one certificate; a pure function of its DER."""

    der: bytes
    cert: x509.Certificate
    tbs: bytes
    issuer_name: bytes
    subject_name: bytes
    not_before: dt.datetime
    not_after: dt.datetime
    signature_ok: bool
    key: ec.EllipticCurvePublicKey | None
    key_description: str
    ca: bool | None
    path_length: int | None
    key_cert_sign: bool | None
    digital_signature: bool | None
    unhandled_critical: tuple[str, ...]

    def name(self) -> str:
        """The subject for messages (parsed lazily: it may be malformed)."""
        return _name_text(self.cert, "subject")


def _name_text(cert: x509.Certificate, which: str) -> str:
    # NOTE: cryptography parses names lazily, may raise ValueError, and warns about
    # odd attributes (for example a country code that is not 2 letters).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            name: x509.Name = getattr(cert, which)
            return name.rfc4514_string() or "<empty name>"
        except Exception:  # noqa: BLE001 - any parse failure of an untrusted name
            return "<malformed name>"


_PARSED: _Lru[bytes, _CertInfo] = _Lru(PARSED_CACHE_SIZE)


def clear_parsed_cache() -> None:
    """Forget every parsed certificate (process-wide); for benchmarks and tests."""
    _PARSED.clear()


def _chain_error(message: str, reason: Reason, index: int) -> VerificationError:
    return VerificationError(message, reason, step="chain", certificate=index)


def _load_info(der: bytes, index: int, label: str) -> _CertInfo:
    """Parse a certificate and extract every static fact, or fail precisely."""
    # NOTE: cryptography warns (UserWarning) about some malformed name attributes while
    # parsing extensions lazily; a hostile certificate must not turn into warning spam
    # or, under -W error, an exception. Only runs once per new certificate DER.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _parse_info(der, index, label)


def _parse_info(der: bytes, index: int, label: str) -> _CertInfo:
    try:
        # cryptography's parser is strict DER (rust-asn1): BER forms and trailing data
        # are refused, so the bytes we pinned and hashed are the bytes we parsed.
        cert = x509.load_der_x509_certificate(der)
        not_before = cert.not_valid_before_utc
        not_after = cert.not_valid_after_utc
        tbs = cert.tbs_certificate_bytes
        inner_algorithm, issuer_name, subject_name = _tbs_fields(tbs)
        # Both the outer and the signed (TBS) algorithm must be ecdsa-with-SHA384
        # (RFC 5280 4.1.1.2: they must match).
        signature_ok = (
            cert.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA384
            and inner_algorithm == _ECDSA_SHA384_ALGID
        )
        try:
            public = cert.public_key()
        except (UnsupportedAlgorithm, ValueError) as exc:
            public = None
            key_description = f"unusable key ({exc})"
        key: ec.EllipticCurvePublicKey | None = None
        if isinstance(public, ec.EllipticCurvePublicKey):
            key_description = f"EC {public.curve.name}"
            if isinstance(public.curve, ec.SECP384R1):
                key = public
        elif public is not None:
            key_description = type(public).__name__
        extensions = cert.extensions
        ca: bool | None = None
        path_length: int | None = None
        key_cert_sign: bool | None = None
        digital_signature: bool | None = None
        unhandled: list[str] = []
        for ext in extensions:
            value = ext.value
            if isinstance(value, x509.BasicConstraints):
                ca, path_length = value.ca, value.path_length
            elif isinstance(value, x509.KeyUsage):
                key_cert_sign, digital_signature = value.key_cert_sign, value.digital_signature
            elif ext.critical and ext.oid not in _HANDLED_CRITICAL:
                unhandled.append(ext.oid.dotted_string)
    # cryptography parses X.509 lazily and reports hostile input with many exception
    # types (ValueError, TypeError, InvalidVersion, DuplicateExtension,
    # UnsupportedGeneralNameType, ...; several found by bench/fuzz_attestation.py).
    # Any failure while reading an untrusted certificate means it is invalid.
    except Exception as exc:  # noqa: BLE001
        raise _chain_error(
            f"{label} is not a valid X.509 certificate: {exc}", Reason.INVALID_CERTIFICATE, index
        ) from None
    return _CertInfo(
        der=der,
        cert=cert,
        tbs=tbs,
        issuer_name=issuer_name,
        subject_name=subject_name,
        not_before=not_before,
        not_after=not_after,
        signature_ok=signature_ok,
        key=key,
        key_description=key_description,
        ca=ca,
        path_length=path_length,
        key_cert_sign=key_cert_sign,
        digital_signature=digital_signature,
        unhandled_critical=tuple(unhandled),
    )


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class VerifiedDocument:
    """An attestation document that passed every step of `Verifier.verify`.

    Attributes:
        module_id: the enclave id, ``i-<instance>-enc<enclave>``.
        digest: ``"SHA384"``.
        timestamp: milliseconds since the Unix epoch, as stamped by the NSM.
        pcrs: read-only map PCR index -> 48-byte value.
        certificate: the leaf certificate that signed the document.
        cabundle: the verified chain, root first.
        public_key: the `public_key` field (``None`` when absent or null).
        user_data: the `user_data` field.
        nonce: the `nonce` field.
        raw: the document bytes as received.
        verified_at: the time the chain was checked at.
        document: the parsed `AttestationDocument` (COSE parts included).
    """

    module_id: str
    digest: str
    timestamp: int
    pcrs: Mapping[int, bytes]
    certificate: x509.Certificate
    cabundle: tuple[x509.Certificate, ...]
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None
    raw: bytes
    verified_at: dt.datetime
    document: AttestationDocument

    @property
    def timestamp_datetime(self) -> dt.datetime:
        """The document timestamp as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.timestamp / 1000, tz=dt.UTC)

    @property
    def is_debug(self) -> bool:
        """Whether PCR0, PCR1 or PCR2 is all zeros (a debug-mode enclave)."""
        zero = bytes(48)
        return any(self.pcrs.get(i) == zero for i in (0, 1, 2))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_time(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        return _now()
    if not isinstance(at, dt.datetime):
        raise ConfigError(f"at must be a datetime, got {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ConfigError("at must be timezone-aware (for example datetime.now(UTC))")
    return at.astimezone(dt.UTC)


class Verifier:
    """Verifies Nitro attestation documents against pinned roots.

    One `Verifier` is meant to be long-lived and shared (it is thread-safe): its
    chain cache makes repeated documents from the same parent instance cheap.

    Example:
        >>> from nitroguard.attestation import Verifier, policy
        >>> verifier = Verifier()                       # pinned AWS Root-G1
        >>> doc = verifier.verify(data, policy.AllOf([  # doctest: +SKIP
        ...     policy.PCRs({0: expected_pcr0}),
        ...     policy.Nonce(my_nonce),
        ...     policy.MaxAge(300),
        ... ]))
    """

    def __init__(
        self,
        roots: Sequence[x509.Certificate] | None = None,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        """Build a verifier.

        Args:
            roots: trust roots; ``cabundle[0]`` must be byte-equal to one of them.
                ``None`` means the pinned AWS Nitro Enclaves Root-G1 only. Pass the
                emulator's root to verify emulated documents.
            cache_size: how many verified (issuer, certificate) signature pairs to
                keep; 0 disables the signature cache (parsed certificates are
                shared process-wide, see `PARSED_CACHE_SIZE`).

        Raises:
            ConfigError: empty `roots`, something other than certificates, or a
                negative `cache_size`.
        """
        if roots is None:
            roots = [_roots.aws_root()]
        roots = list(roots)
        if not roots:
            raise ConfigError("at least one trust root is required")
        for root in roots:
            if not isinstance(root, x509.Certificate):
                raise ConfigError(f"trust roots must be x509.Certificate, got {root!r}")
        size: object = cache_size
        if not is_int(size) or cache_size < 0:
            raise ConfigError(f"cache_size must be an integer >= 0, got {cache_size!r}")
        self._roots: frozenset[bytes] = frozenset(r.public_bytes(Encoding.DER) for r in roots)
        self._pairs: _Lru[tuple[bytes, bytes], bool] = _Lru(cache_size)

    @property
    def roots(self) -> tuple[x509.Certificate, ...]:
        """The configured trust roots."""
        return tuple(x509.load_der_x509_certificate(der) for der in sorted(self._roots))

    def clear_cache(self) -> None:
        """Forget every cached signature pair of this verifier."""
        self._pairs.clear()

    def verify(
        self,
        data: bytes,
        policy: Policy | None = None,
        *,
        at: dt.datetime | None = None,
        allow_debug: bool = False,
    ) -> VerifiedDocument:
        """Verify an attestation document (steps 1-7, see the module docstring).

        Args:
            data: the COSE_Sign1 document bytes exactly as received.
            policy: checks on the authenticated fields (PCRs, nonce, freshness, ...).
                ``None`` runs only the default `NotDebug` check: any production
                enclave signed by AWS passes, so relying parties should pass one.
            at: the verification time (timezone-aware). ``None`` means now, read
                once here. Every certificate must be valid at `at`; `MaxAge` measures
                against it.
            allow_debug: accept debug-mode documents (PCR0/1/2 all zero). For
                development only.

        Returns:
            The `VerifiedDocument`.

        Raises:
            VerificationError: steps 1-6, `details["step"]` names the step; reasons
                include `too_large`, `malformed_cbor`, `trailing_bytes`,
                `duplicate_key`, `unexpected_tag`, `malformed_cose`,
                `unsupported_algorithm`, `invalid_field`, `invalid_digest`,
                `invalid_pcr`, `unknown_field`, `missing_field`, `untrusted_root`,
                `invalid_certificate`, `invalid_chain`, `weak_key`,
                `expired_certificate`, `not_yet_valid_certificate`, `bad_signature`.
            PolicyError: step 7: `debug_mode`, `pcr_mismatch`, `pcr_missing`,
                `nonce_mismatch`, `stale_document`, `future_document`, ...
            ConfigError: `at` is naive or not a datetime, or `policy` is not a policy.
        """
        when = _check_time(at)
        if policy is not None and not isinstance(policy, Policy):
            raise ConfigError(f"policy must have verify(doc, *, at), got {policy!r}")
        # (1)-(3) size, COSE, schema: everything is parsed before anything is trusted.
        try:
            doc = AttestationDocument.parse(data)
        except DecodeError as exc:
            raise VerificationError(exc.message, exc.reason, **exc.details) from None
        return self._verify_parsed(doc, policy, when, allow_debug)

    def _verify_parsed(
        self,
        doc: AttestationDocument,
        policy: Policy | None,
        at: dt.datetime,
        allow_debug: bool,
    ) -> VerifiedDocument:
        # (4) Root pin: byte equality with a configured root, never "a root was sent".
        if doc.cabundle[0] not in self._roots:
            raise VerificationError(
                "cabundle[0] is not a configured trust root (the AWS Nitro Enclaves "
                "Root-G1 unless you passed roots=)",
                Reason.UNTRUSTED_ROOT,
                step="root",
            )
        # (5) Chain, root first, leaf last; the leaf is always doc.certificate.
        chain = [*doc.cabundle, doc.certificate]
        infos = [self._info(der, i, len(chain)) for i, der in enumerate(chain)]
        last = len(infos) - 1
        for i, info in enumerate(infos):
            label = _label(i, last)
            self._check_static(info, i, label)
            if i > 0:
                self._check_issued(infos[i - 1], info, i, label)
            if at < info.not_before:
                raise _chain_error(
                    f"{label} ({info.name()}) is not valid before "
                    f"{info.not_before.isoformat()} (verification time {at.isoformat()})",
                    Reason.NOT_YET_VALID_CERTIFICATE,
                    i,
                )
            if at > info.not_after:
                raise _chain_error(
                    f"{label} ({info.name()}) expired at {info.not_after.isoformat()} "
                    f"(verification time {at.isoformat()})",
                    Reason.EXPIRED_CERTIFICATE,
                    i,
                )
            if i < last:
                self._check_issuer(info, i, label, cas_below=last - 1 - i)
            else:
                self._check_leaf(info, i, label)
        leaf = infos[last]
        # (6) COSE signature with the leaf key over the bytes as received.
        if leaf.key is None:  # pragma: no cover - _check_static already refused it
            raise _chain_error("leaf has no P-384 key", Reason.WEAK_KEY, last)
        # ES384 and a P-384 key are already guaranteed (steps 2 and 5), so verify directly
        # with a shared ECDSA(SHA384) instead of going through cose.verify_signature.
        try:
            leaf.key.verify(
                cose.raw_to_der(doc.signature, 48),
                cose.sig_structure(doc.protected, doc.payload),
                _ECDSA_SHA384,
            )
        except InvalidSignature:
            raise VerificationError(
                "COSE signature does not verify with the leaf certificate's key",
                Reason.BAD_SIGNATURE,
                step="signature",
            ) from None
        verified = VerifiedDocument(
            module_id=doc.module_id,
            digest=doc.digest,
            timestamp=doc.timestamp,
            pcrs=doc.pcrs,
            certificate=leaf.cert,
            cabundle=tuple(info.cert for info in infos[:last]),
            public_key=doc.public_key,
            user_data=doc.user_data,
            nonce=doc.nonce,
            raw=doc.raw,
            verified_at=at,
            document=doc,
        )
        # (7) Policies: the debug check first (clearer reason), then the caller's.
        if not allow_debug:
            _NOT_DEBUG.verify(verified, at=at)
        if policy is not None:
            policy.verify(verified, at=at)
        return verified

    def _info(self, der: bytes, index: int, length: int) -> _CertInfo:
        info = _PARSED.get(der)
        if info is None:
            info = _load_info(der, index, _label(index, length - 1))
            _PARSED.put(der, info)
        return info

    @staticmethod
    def _check_static(info: _CertInfo, index: int, label: str) -> None:
        if not info.signature_ok:
            oid = info.cert.signature_algorithm_oid
            raise _chain_error(
                f"{label} is signed with {getattr(oid, '_name', oid.dotted_string)}; only "
                "ecdsa-with-SHA384 is accepted",
                Reason.UNSUPPORTED_ALGORITHM,
                index,
            )
        if info.key is None:
            raise _chain_error(
                f"{label} has a {info.key_description} key; only P-384 is accepted",
                Reason.WEAK_KEY,
                index,
            )
        if info.unhandled_critical:
            raise _chain_error(
                f"{label} has unsupported critical extension(s) "
                f"{', '.join(info.unhandled_critical)}",
                Reason.INVALID_CERTIFICATE,
                index,
            )

    def _check_issued(self, issuer: _CertInfo, child: _CertInfo, index: int, label: str) -> None:
        pair = (issuer.der, child.der)
        if self._pairs.get(pair):
            return
        # Equivalent to `verify_directly_issued_by` (name chaining + signature), with
        # the issuer key parsed once and cached, and the algorithm already pinned to
        # ecdsa-with-SHA384 by `_check_static`.
        # Byte equality of the DER names: stricter than RFC 5280's name matching, and
        # what every AWS chain does (all shared vectors checked).
        if child.issuer_name != issuer.subject_name:
            raise _chain_error(
                f"{label} ({child.name()}) names issuer "
                f"{_name_text(child.cert, 'issuer')!r}, but the certificate before it is "
                f"{issuer.name()!r}",
                Reason.INVALID_CHAIN,
                index,
            )
        if issuer.key is None:  # pragma: no cover - _check_static refused it already
            raise _chain_error("issuer has no P-384 key", Reason.WEAK_KEY, index - 1)
        try:
            issuer.key.verify(child.cert.signature, child.tbs, _ECDSA_SHA384)
        except InvalidSignature:
            raise _chain_error(
                f"{label} ({child.name()}) is not signed by the certificate before it "
                f"({issuer.name()})",
                Reason.BAD_SIGNATURE,
                index,
            ) from None
        self._pairs.put(pair, True)

    @staticmethod
    def _check_issuer(info: _CertInfo, index: int, label: str, cas_below: int) -> None:
        if info.ca is not True:
            raise _chain_error(
                f"{label} ({info.name()}) issues a certificate but is not a CA "
                "(basicConstraints CA=true is required)",
                Reason.INVALID_CHAIN,
                index,
            )
        if info.key_cert_sign is not True:
            raise _chain_error(
                f"{label} ({info.name()}) issues a certificate but lacks keyUsage keyCertSign",
                Reason.INVALID_CHAIN,
                index,
            )
        if info.path_length is not None and cas_below > info.path_length:
            raise _chain_error(
                f"{label} ({info.name()}) allows {info.path_length} CA(s) below it, "
                f"the chain has {cas_below}",
                Reason.INVALID_CHAIN,
                index,
            )

    @staticmethod
    def _check_leaf(info: _CertInfo, index: int, label: str) -> None:
        if info.ca is True:
            raise _chain_error(
                f"{label} ({info.name()}) is a CA certificate; the signing leaf must have CA=false",
                Reason.INVALID_CERTIFICATE,
                index,
            )
        if info.digital_signature is not True:
            raise _chain_error(
                f"{label} ({info.name()}) lacks keyUsage digitalSignature",
                Reason.INVALID_CERTIFICATE,
                index,
            )


def _label(index: int, last: int) -> str:
    return "certificate (leaf)" if index == last else f"cabundle[{index}]"


_default_lock = threading.Lock()
_default: Verifier | None = None


def _default_verifier() -> Verifier:
    global _default  # noqa: PLW0603 - one lazily built, process-wide verifier
    with _default_lock:
        if _default is None:
            _default = Verifier()
        return _default


def verify(
    data: bytes,
    policy: Policy | None = None,
    *,
    at: dt.datetime | None = None,
    allow_debug: bool = False,
) -> VerifiedDocument:
    """Verify a document against the pinned AWS root with a shared, process-wide `Verifier`.

    Same arguments, result and errors as `Verifier.verify`.
    """
    return _default_verifier().verify(data, policy, at=at, allow_debug=allow_debug)
