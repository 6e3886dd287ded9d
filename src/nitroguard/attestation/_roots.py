"""Trust roots for attestation documents: the pinned AWS Nitro Enclaves Root-G1.

The PEM ships as package data (``_data/aws_nitro_root_g1.pem``, byte-identical to
``root.pem`` in AWS's ``AWS_NitroEnclaves_Root-G1.zip``). It is checked against the
SHA-256 of its DER encoding every time it is loaded, so a corrupted or swapped file
fails loudly instead of silently changing what we trust
(``../shared/spec/attestation.md`` section 4; checklist ATT-1).

NOTE: the pinned value is the DER fingerprint ``641a0321...``, not the SHA-256 of the
zip that AWS publishes (``8cf60e2b...``); epsilon-attestation-verifier's comment
confuses the two.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from nitroguard.errors import ConfigError, Error, Reason

__all__ = [
    "AWS_ROOT_G1_SHA256",
    "aws_root",
    "fingerprint",
    "load_pem_roots",
]

#: SHA-256 of the DER encoding of AWS Nitro Enclaves Root-G1.
AWS_ROOT_G1_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"

_ROOT_RESOURCE = "aws_nitro_root_g1.pem"


def fingerprint(cert: x509.Certificate) -> str:
    """The lowercase hex SHA-256 of a certificate's DER encoding."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


@functools.cache
def aws_root() -> x509.Certificate:
    """The pinned AWS Nitro Enclaves Root-G1 certificate.

    Returns:
        The certificate, loaded once per process from package data.

    Raises:
        Error: `internal_error` when the shipped PEM does not match the pinned
            fingerprint (a damaged or tampered installation).
    """
    pem = (
        importlib.resources.files("nitroguard.attestation")
        .joinpath("_data")
        .joinpath(_ROOT_RESOURCE)
        .read_bytes()
    )
    cert = x509.load_pem_x509_certificate(pem)
    actual = fingerprint(cert)
    if actual != AWS_ROOT_G1_SHA256:
        raise Error(
            f"the packaged AWS Nitro root has SHA-256 {actual}, expected {AWS_ROOT_G1_SHA256}; "
            "the installation is damaged",
            Reason.INTERNAL_ERROR,
        )
    return cert


def load_pem_roots(data: bytes) -> Sequence[x509.Certificate]:
    """Load one or more PEM certificates to use as trust roots.

    Args:
        data: PEM text holding at least one certificate.

    Returns:
        The certificates, in file order.

    Raises:
        ConfigError: `invalid_argument` when no certificate can be read.
    """
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(f"cannot read PEM trust roots: {exc}") from None
    if not certs:  # pragma: no cover - cryptography raises on an empty bundle
        raise ConfigError("no certificate in the PEM trust roots")
    return certs
