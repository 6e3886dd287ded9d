"""A throwaway PKI shaped like AWS's Nitro attestation chain, and documents signed by it.

For tests only: keys are generated in memory each time and never meant to be trusted.
The shape follows ``../shared/spec/attestation.md`` section 1.3 (root, regional, zonal,
instance, leaf; the same basicConstraints, pathLen and keyUsage as AWS's), and every
certificate property can be overridden one by one so each verifier check can be
exercised in isolation. Certificates come from `nitroguard.hazmat.certs.issue`, the
issuer the NSM emulator's PKI uses too::

    pki = AwsLikePki.build(at)                                   # a valid chain at `at`
    doc = pki.document(nonce=b"n" * 32)                          # a signed document
    bad = AwsLikePki.build(at, leaf={"curve": ec.SECP256R1()})   # P-256 leaf
    Verifier(roots=[pki.root.cert]).verify(doc, at=at)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nitroguard.hazmat import cbor, cose
from nitroguard.hazmat.certs import CertSpec, Issued, issue

__all__ = [
    "ROLES",
    "AwsLikePki",
    "CertSpec",
    "Issued",
    "default_pcrs",
    "default_specs",
    "encode_map",
    "issue",
]

#: Certificate roles in chain order, root first.
ROLES = ("root", "regional", "zonal", "instance", "leaf")

#: The test chain's subject attributes before the CN.
_TEST_NAME: Final = (
    x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nitroguard-test"),
    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "TEST"),
)


def _spec(common_name: str, not_before: dt.datetime, not_after: dt.datetime, **kw: Any) -> CertSpec:
    return CertSpec(common_name, not_before, not_after, name_prefix=_TEST_NAME, **kw)


def default_specs(at: dt.datetime) -> dict[str, CertSpec]:
    """AWS-shaped specs whose validity windows all contain `at` (lifetimes as AWS's)."""
    hour = dt.timedelta(hours=1)
    return {
        "root": _spec(
            "test.nitro-enclaves", at - 365 * 24 * hour, at + 29 * 365 * 24 * hour, path_length=None
        ),
        "regional": _spec(
            "0123456789abcdef.us-test-1.test.nitro-enclaves",
            at - 240 * hour,
            at + 240 * hour,
            path_length=2,
        ),
        "zonal": _spec(
            "fedcba9876543210.zonal.us-test-1.test.nitro-enclaves",
            at - 70 * hour,
            at + 70 * hour,
            path_length=1,
        ),
        "instance": _spec(
            "i-0123456789abcdef0.us-test-1.test.nitro-enclaves",
            at - 12 * hour,
            at + 12 * hour,
            path_length=0,
            key_usage=frozenset({"key_cert_sign"}),
        ),
        "leaf": _spec(
            "i-0123456789abcdef0-enc0123456789abcdef.us-test-1.test",
            at - hour,
            at + 2 * hour,
            ca=False,
            key_usage=frozenset({"digital_signature", "content_commitment"}),
            key_usage_critical=False,
        ),
    }


def _map_head(count: int) -> bytes:
    if count < 24:
        return bytes([0xA0 | count])
    if count < 256:
        return bytes([0xB8, count])
    return bytes([0xB9]) + count.to_bytes(2, "big")


def encode_map(items: Iterable[tuple[Any, Any]], *, indefinite: bool = False) -> bytes:
    """Encode (key, value) pairs as a CBOR map in the given order, duplicates included.

    Args:
        items: the pairs; values are encoded with `nitroguard.hazmat.cbor.dumps`.
        indefinite: use the indefinite-length form (``bf ... ff``) the NSM emits since 2025.
    """
    pairs = list(items)
    if indefinite:
        return cbor.dumps_indefinite_map(pairs)
    return _map_head(len(pairs)) + b"".join(cbor.dumps(k) + cbor.dumps(v) for k, v in pairs)


def default_pcrs() -> dict[int, bytes]:
    """16 PCRs like a production enclave: 0-4 non-zero, the rest zero."""
    pcrs = {i: bytes(48) for i in range(16)}
    for i in range(5):
        pcrs[i] = bytes([0x10 + i]) * 48
    return pcrs


@dataclasses.dataclass(frozen=True)
class AwsLikePki:
    """Root, regional, zonal, instance and leaf certificates with their keys."""

    __test__ = False  # not a pytest test class

    at: dt.datetime
    root: Issued
    regional: Issued
    zonal: Issued
    instance: Issued
    leaf: Issued

    @classmethod
    def build(cls, at: dt.datetime, **overrides: Mapping[str, Any]) -> AwsLikePki:
        """Generate a chain valid at `at`, with per-role `CertSpec` field overrides.

        Args:
            at: a time inside every certificate's validity (unless overridden).
            **overrides: role name (`ROLES`) -> {CertSpec field: value}.
        """
        unknown = set(overrides) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles: {sorted(unknown)}")
        specs = default_specs(at)
        issued: dict[str, Issued] = {}
        parent: Issued | None = None
        for role in ROLES:
            spec = dataclasses.replace(specs[role], **overrides.get(role, {}))
            parent = issued[role] = issue(spec, parent)
        return cls(at=at, **issued)

    @property
    def cabundle(self) -> list[bytes]:
        """``[root, regional, zonal, instance]`` as DER, the order AWS uses."""
        return [self.root.der, self.regional.der, self.zonal.der, self.instance.der]

    def fields(
        self,
        *,
        module_id: str = "i-0123456789abcdef0-enc0123456789abcdef",
        digest: Any = "SHA384",
        timestamp: Any = None,
        pcrs: Any = None,
        certificate: Any = None,
        cabundle: Any = None,
        public_key: Any = None,
        user_data: Any = None,
        nonce: Any = None,
    ) -> list[tuple[Any, Any]]:
        """The nine payload fields in the NSM's order, as (key, value) pairs."""
        return [
            ("module_id", module_id),
            ("digest", digest),
            ("timestamp", round(self.at.timestamp() * 1000) if timestamp is None else timestamp),
            ("pcrs", default_pcrs() if pcrs is None else pcrs),
            ("certificate", self.leaf.der if certificate is None else certificate),
            ("cabundle", self.cabundle if cabundle is None else cabundle),
            ("public_key", public_key),
            ("user_data", user_data),
            ("nonce", nonce),
        ]

    def sign_payload(
        self,
        payload: bytes,
        *,
        protected: bytes = cose.ES384_PROTECTED,
        unprotected: Any = None,
        tagged: bool = False,
        signer: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        """Wrap `payload` (bytes as given) in a COSE_Sign1 signed by the leaf key."""
        key = self.leaf.key if signer is None else signer
        der = key.sign(cose.sig_structure(protected, payload), ec.ECDSA(hashes.SHA384()))
        signature = cose.der_to_raw(der, 48)
        return cose.encode_sign1(
            protected, {} if unprotected is None else unprotected, payload, signature, tagged=tagged
        )

    def document(
        self,
        *,
        items: Sequence[tuple[Any, Any]] | None = None,
        indefinite: bool = False,
        tagged: bool = False,
        protected: bytes = cose.ES384_PROTECTED,
        signer: ec.EllipticCurvePrivateKey | None = None,
        **fields: Any,
    ) -> bytes:
        """A signed attestation document.

        Args:
            items: the exact payload (key, value) pairs; default `fields(**fields)`.
            indefinite: encode the payload map with indefinite length.
            tagged: wrap the COSE_Sign1 in tag 18.
            protected: the serialized protected header.
            signer: the signing key (default: the leaf's).
            **fields: overrides passed to `fields`.
        """
        pairs = self.fields(**fields) if items is None else list(items)
        payload = encode_map(pairs, indefinite=indefinite)
        return self.sign_payload(payload, protected=protected, tagged=tagged, signer=signer)
