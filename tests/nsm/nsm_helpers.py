"""Helpers for the NSM tests: a settable clock and an independent document checker.

`check_document` re-implements the checks a relying party makes (COSE ES384 signature
over the received bytes, the chain root -> regional -> zonal -> instance -> leaf with
the AWS profile) with `cryptography` directly, so emulator documents are validated
without depending on the attestation verifier. The verifier itself is exercised in
test_nsm_verifier.py.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from nitroguard.hazmat import cbor, cose

PAYLOAD_KEYS = [
    "module_id",
    "digest",
    "timestamp",
    "pcrs",
    "certificate",
    "cabundle",
    "public_key",
    "user_data",
    "nonce",
]

T0 = dt.datetime(2026, 11, 27, 9, 0, 0, tzinfo=dt.UTC)


class Clock:
    """A settable clock for `EmulatedNsm(clock=...)`."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += dt.timedelta(**kw)


def _bc(cert: x509.Certificate) -> x509.BasicConstraints:
    ext = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert ext.critical
    return ext.value


def _ku(cert: x509.Certificate) -> x509.Extension[x509.KeyUsage]:
    return cert.extensions.get_extension_for_class(x509.KeyUsage)


def check_document(doc: bytes, root: x509.Certificate, at: dt.datetime) -> dict[str, Any]:
    """Validate an emulator document like a strict relying party; return its payload."""
    msg = cose.decode_sign1(doc, max_size=16384)
    assert not msg.tagged, "real NSM documents are untagged"
    assert msg.protected == cose.ES384_PROTECTED
    assert msg.unprotected == {}
    assert len(msg.signature) == 96
    assert doc[:8] == bytes.fromhex("8444a1013822a059")  # like every real document
    assert msg.payload[0] == 0xBF, "payload must be an indefinite-length map"
    assert msg.payload[-1] == 0xFF
    payload: dict[str, Any] = cbor.loads(msg.payload, max_size=16384)
    assert list(payload) == PAYLOAD_KEYS
    assert payload["digest"] == "SHA384"
    assert isinstance(payload["timestamp"], int)
    assert payload["timestamp"] > 0
    assert all(isinstance(v, bytes) and len(v) == 48 for v in payload["pcrs"].values())
    assert list(payload["pcrs"]) == sorted(payload["pcrs"])

    leaf = x509.load_der_x509_certificate(payload["certificate"])
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    cose.verify_signature(key, cose.ES384, msg.protected, msg.payload, msg.signature)

    bundle = [x509.load_der_x509_certificate(c) for c in payload["cabundle"]]
    assert len(bundle) == 4
    assert bundle[0] == root, "cabundle[0] must be the pinned root"
    path = [*bundle, leaf]
    for parent, child in itertools.pairwise(path):
        child.verify_directly_issued_by(parent)
        assert child.issuer == parent.subject
    for cert in path:
        assert cert.not_valid_before_utc <= at <= cert.not_valid_after_utc
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)
        pub = cert.public_key()
        assert isinstance(pub, ec.EllipticCurvePublicKey)
        assert isinstance(pub.curve, ec.SECP384R1)
    # AWS profile (attestation.md 1.3): pathLen None/2/1/0 on the CAs; a non-CA leaf.
    assert [_bc(c).ca for c in path] == [True, True, True, True, False]
    assert [_bc(c).path_length for c in path[1:4]] == [2, 1, 0]
    assert _bc(path[0]).path_length is None
    for cert in path[:3]:
        usage = _ku(cert)
        assert usage.critical
        assert usage.value.key_cert_sign
        assert usage.value.crl_sign
        assert usage.value.digital_signature
    instance_usage = _ku(path[3])
    assert instance_usage.critical
    assert instance_usage.value.key_cert_sign
    assert not instance_usage.value.digital_signature
    leaf_usage = _ku(leaf)
    assert not leaf_usage.critical
    assert leaf_usage.value.digital_signature
    assert leaf_usage.value.content_commitment
    assert not leaf_usage.value.key_cert_sign
    with pytest.raises(x509.ExtensionNotFound, match="ExtendedKeyUsage"):
        leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    return payload
