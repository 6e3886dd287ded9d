"""One certificate issuer: a declarative `CertSpec` in, a key and certificate out.

Both AWS-shaped PKIs in nitroguard are built on `issue`: the NSM emulator's CA
hierarchy (`nitroguard.nsm.EmulatorPki`) and the test kit's fully configurable chain
(`nitroguard.testing.AwsLikePki`). Every certificate property is a field, so a
test can break exactly one of them. Nothing here decides trust.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Final, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

__all__ = ["CA_USAGE", "CertSpec", "Issued", "issue"]

#: keyUsage of AWS's root, regional and zonal CAs.
CA_USAGE: Final = frozenset({"digital_signature", "key_cert_sign", "crl_sign"})
_KU_FIELDS: Final = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


@dataclasses.dataclass(frozen=True)
class CertSpec:
    """How to build one certificate.

    Attributes:
        common_name: the subject CN.
        not_before: start of validity.
        not_after: end of validity.
        ca: basicConstraints CA flag; ``None`` omits the extension.
        path_length: basicConstraints pathLen (only when `ca` is true).
        basic_constraints_critical: criticality of basicConstraints.
        key_usage: keyUsage flags (names of `x509.KeyUsage` arguments); ``None`` omits it.
        key_usage_critical: criticality of keyUsage.
        curve: the subject key's curve.
        hash_algorithm: the hash the ISSUER signs this certificate with.
        extra_extensions: more (extension, critical) pairs.
        name_prefix: subject attributes placed before the CN (organization, ...).
        subject_key_identifier: add a subjectKeyIdentifier; ``None`` means "CAs only".
    """

    common_name: str
    not_before: dt.datetime
    not_after: dt.datetime
    ca: bool | None = True
    path_length: int | None = None
    basic_constraints_critical: bool = True
    key_usage: frozenset[str] | None = CA_USAGE
    key_usage_critical: bool = True
    curve: ec.EllipticCurve = dataclasses.field(default_factory=ec.SECP384R1)
    hash_algorithm: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 = dataclasses.field(
        default_factory=hashes.SHA384
    )
    extra_extensions: tuple[tuple[x509.ExtensionType, bool], ...] = ()
    name_prefix: tuple[x509.NameAttribute[str], ...] = ()
    subject_key_identifier: bool | None = None


class Issuer(Protocol):
    """What signs a certificate: a private key and its certificate."""

    @property
    def key(self) -> ec.EllipticCurvePrivateKey: ...  # pragma: no cover - protocol

    @property
    def cert(self) -> x509.Certificate: ...  # pragma: no cover - protocol


@dataclasses.dataclass(frozen=True)
class Issued:
    """A generated certificate and its private key."""

    spec: CertSpec
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def der(self) -> bytes:
        """The DER encoding."""
        return self.cert.public_bytes(Encoding.DER)


def issue(spec: CertSpec, parent: Issuer | None) -> Issued:
    """Generate a key and a certificate for `spec`, signed by `parent` (self-signed if None).

    Raises:
        ValueError / TypeError: from `cryptography` for an impossible spec.
    """
    key = ec.generate_private_key(spec.curve)
    subject = x509.Name(
        [*spec.name_prefix, x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name)]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(parent.cert.subject if parent else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
    )
    if spec.ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=spec.ca, path_length=spec.path_length if spec.ca else None),
            critical=spec.basic_constraints_critical,
        )
    if parent is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),
            critical=False,
        )
    ski = bool(spec.ca) if spec.subject_key_identifier is None else spec.subject_key_identifier
    if ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    if spec.key_usage is not None:
        flags = {name: name in spec.key_usage for name in _KU_FIELDS}
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=spec.key_usage_critical)
    for ext, critical in spec.extra_extensions:
        builder = builder.add_extension(ext, critical=critical)
    signer = parent.key if parent else key
    cert = builder.sign(signer, spec.hash_algorithm)
    return Issued(spec=spec, key=key, cert=cert)
