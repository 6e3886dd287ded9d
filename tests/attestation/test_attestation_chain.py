"""Each chain, root and signature check, one by one, with a PKI generated at test time."""

from __future__ import annotations

import datetime as dt
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from nitroguard.attestation import STEPS, Verifier, policy, verify
from nitroguard.errors import ConfigError, PolicyError, Reason, VerificationError
from nitroguard.hazmat import cose
from nitroguard.testing import AwsLikePki, default_specs, issue

AT = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
P384_ORDER = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
    16,
)


@pytest.fixture(scope="module")
def pki() -> AwsLikePki:
    return AwsLikePki.build(AT)


def _verifier(pki: AwsLikePki, **kwargs: Any) -> Verifier:
    return Verifier(roots=[pki.root.cert], **kwargs)


def _reject(pki: AwsLikePki, data: bytes, reason: Reason, step: str, **kwargs: Any) -> Any:
    with pytest.raises(VerificationError) as info:
        _verifier(pki).verify(data, at=kwargs.pop("at", AT), **kwargs)
    assert info.value.reason is reason, info.value.diagnostics()
    assert info.value.details["step"] == step
    assert info.value.details["step"] in STEPS
    return info.value


class TestAccepts:
    def test_definite_map(self, pki: AwsLikePki) -> None:
        doc = _verifier(pki).verify(pki.document(nonce=b"n" * 32), at=AT)
        assert doc.nonce == b"n" * 32
        assert doc.certificate == pki.leaf.cert
        assert doc.cabundle == (pki.root.cert, pki.regional.cert, pki.zonal.cert, pki.instance.cert)
        assert doc.timestamp == round(AT.timestamp() * 1000)
        assert doc.timestamp_datetime == AT

    def test_indefinite_map_and_tag18(self, pki: AwsLikePki) -> None:
        for indefinite in (False, True):
            for tagged in (False, True):
                data = pki.document(indefinite=indefinite, tagged=tagged)
                assert data[0] == (0xD2 if tagged else 0x84)
                doc = _verifier(pki).verify(data, at=AT)
                assert doc.document.tagged is tagged
                assert doc.document.payload[0] == (0xBF if indefinite else 0xA9)

    def test_optional_fields_null_absent_empty_and_4096(self, pki: AwsLikePki) -> None:
        for value in (None, b"", b"x" * 1024):
            data = pki.document(public_key=value, user_data=value, nonce=value)
            doc = _verifier(pki).verify(data, at=AT)
            assert doc.public_key == doc.user_data == doc.nonce == value
        for name in ("public_key", "user_data", "nonce"):
            doc = _verifier(pki).verify(pki.document(**{name: b"y" * 4096}), at=AT)
            assert getattr(doc, name) == b"y" * 4096
        absent = [kv for kv in pki.fields() if kv[0] not in {"public_key", "user_data", "nonce"}]
        doc = _verifier(pki).verify(pki.document(items=absent), at=AT)
        assert doc.public_key is doc.user_data is doc.nonce is None

    def test_fields_in_any_order(self, pki: AwsLikePki) -> None:
        # Real payloads are not in canonical key order: never demand deterministic CBOR.
        items = list(reversed(pki.fields()))
        _verifier(pki).verify(pki.document(items=items), at=AT)

    def test_high_s_and_low_s(self, pki: AwsLikePki) -> None:
        data = pki.document()
        outer = cbor2.loads(data)
        r, s = outer[3][:48], int.from_bytes(outer[3][48:], "big")
        flipped = P384_ORDER - s
        for candidate in (s, flipped):
            outer[3] = r + candidate.to_bytes(48, "big")
            _verifier(pki).verify(cbor2.dumps(outer), at=AT)
        assert (s > P384_ORDER // 2) != (flipped > P384_ORDER // 2)

    def test_unprotected_header_map_contents_are_ignored(self, pki: AwsLikePki) -> None:
        payload = cbor2.loads(pki.document())[2]
        data = pki.sign_payload(payload, unprotected={4: b"kid"})
        _verifier(pki).verify(data, at=AT)

    def test_cabundle_of_one_and_several_roots(self, pki: AwsLikePki) -> None:
        other = AwsLikePki.build(AT)
        data = pki.document()
        Verifier(roots=[other.root.cert, pki.root.cert]).verify(data, at=AT)
        # A root that issues the leaf directly is a valid (short) chain.
        leaf = issue(default_specs(AT)["leaf"], pki.root)
        short = pki.document(cabundle=[pki.root.der], certificate=leaf.der, signer=leaf.key)
        assert len(_verifier(pki).verify(short, at=AT).cabundle) == 1
        # ... but the instance's leaf under the root alone is not.
        err = _reject(pki, pki.document(cabundle=[pki.root.der]), Reason.INVALID_CHAIN, "chain")
        assert err.details["certificate"] == 1

    def test_module_level_verify_uses_the_aws_root(self, pki: AwsLikePki) -> None:
        with pytest.raises(VerificationError, match="not a configured trust root") as info:
            verify(pki.document(), at=AT)
        assert info.value.reason is Reason.UNTRUSTED_ROOT


class TestRoot:
    def test_unpinned_root(self, pki: AwsLikePki) -> None:
        with pytest.raises(VerificationError) as info:
            Verifier().verify(pki.document(), at=AT)
        assert info.value.reason is Reason.UNTRUSTED_ROOT
        assert info.value.details["step"] == "root"
        other = AwsLikePki.build(AT)
        with pytest.raises(VerificationError, match="trust root"):
            Verifier(roots=[other.root.cert]).verify(pki.document(), at=AT)

    def test_root_missing_from_bundle(self, pki: AwsLikePki) -> None:
        data = pki.document(cabundle=pki.cabundle[1:])
        _reject(pki, data, Reason.UNTRUSTED_ROOT, "root")

    def test_same_name_and_key_but_different_bytes_is_not_the_root(self, pki: AwsLikePki) -> None:
        # Re-sign the root with the same key: different bytes, so it is not pinned.
        twin = (
            x509.CertificateBuilder()
            .subject_name(pki.root.cert.subject)
            .issuer_name(pki.root.cert.subject)
            .public_key(pki.root.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(pki.root.cert.not_valid_before_utc)
            .not_valid_after(pki.root.cert.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(pki.root.key, hashes.SHA384())
        )
        from cryptography.hazmat.primitives.serialization import Encoding

        bundle = [twin.public_bytes(Encoding.DER), *pki.cabundle[1:]]
        _reject(pki, pki.document(cabundle=bundle), Reason.UNTRUSTED_ROOT, "root")

    def test_attacker_ca_later_in_bundle_is_not_an_anchor(self, pki: AwsLikePki) -> None:
        """richardfan1126's demo trusted cabundle[1:]; an attacker CA there must fail."""
        attacker = AwsLikePki.build(AT)
        bundle = [
            pki.root.der,
            attacker.root.der,
            attacker.regional.der,
            attacker.zonal.der,
            attacker.instance.der,
        ]
        data = attacker.document(cabundle=bundle)
        # Same subject name as the real root, different key: the signature check fails.
        err = _reject(pki, data, Reason.BAD_SIGNATURE, "chain")
        assert err.details["certificate"] == 1

    def test_expired_root(self) -> None:
        pki = AwsLikePki.build(AT, root={"not_after": AT - dt.timedelta(seconds=1)})
        err = _reject(pki, pki.document(), Reason.EXPIRED_CERTIFICATE, "chain")
        assert err.details["certificate"] == 0


class TestChain:
    def test_wrong_signature_algorithm(self) -> None:
        pki = AwsLikePki.build(AT, leaf={"hash_algorithm": hashes.SHA256()})
        err = _reject(pki, pki.document(), Reason.UNSUPPORTED_ALGORITHM, "chain")
        assert err.details["certificate"] == 4
        assert "ecdsa-with-SHA384" in err.message
        pki = AwsLikePki.build(AT, zonal={"hash_algorithm": hashes.SHA512()})
        err = _reject(pki, pki.document(), Reason.UNSUPPORTED_ALGORITHM, "chain")
        assert err.details["certificate"] == 2

    @pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP521R1()])
    def test_leaf_curve(self, curve: ec.EllipticCurve) -> None:
        """hf/nitrite panics on a P-521 leaf; we reject any non-P-384 key precisely."""
        pki = AwsLikePki.build(AT, leaf={"curve": curve})
        # The document itself is signed with a P-384 key: the leaf check must come first.
        data = pki.document(signer=ec.generate_private_key(ec.SECP384R1()))
        err = _reject(pki, data, Reason.WEAK_KEY, "chain")
        assert curve.name in err.message
        assert err.details["certificate"] == 4

    def test_intermediate_curve(self) -> None:
        pki = AwsLikePki.build(AT, regional={"curve": ec.SECP256R1()})
        err = _reject(pki, pki.document(), Reason.WEAK_KEY, "chain")
        assert err.details["certificate"] == 1

    def test_path_length_broken(self) -> None:
        pki = AwsLikePki.build(AT, regional={"path_length": 1})
        err = _reject(pki, pki.document(), Reason.INVALID_CHAIN, "chain")
        assert "allows 1 CA(s) below it, the chain has 2" in err.message
        pki = AwsLikePki.build(AT, root={"path_length": 2})
        err = _reject(pki, pki.document(), Reason.INVALID_CHAIN, "chain")
        assert err.details["certificate"] == 0

    def test_path_length_zero_with_extra_ca(self) -> None:
        # instance (pathLen 0) issues a CA, which issues the leaf: one CA too many.
        pki = AwsLikePki.build(
            AT,
            regional={"path_length": 3},
            zonal={"path_length": 2},
            leaf={"ca": True, "path_length": 0, "key_usage": frozenset({"key_cert_sign"})},
        )
        extra = AwsLikePki.build(AT)
        # Build a real leaf under pki.leaf (a CA) by hand.
        key = ec.generate_private_key(ec.SECP384R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "deep leaf")]))
            .issuer_name(pki.leaf.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(AT - dt.timedelta(hours=1))
            .not_valid_after(AT + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=False,
            )
            .sign(pki.leaf.key, hashes.SHA384())
        )
        from cryptography.hazmat.primitives.serialization import Encoding

        data = pki.document(
            cabundle=[*pki.cabundle, pki.leaf.der],
            certificate=leaf.public_bytes(Encoding.DER),
            signer=key,
        )
        err = _reject(pki, data, Reason.INVALID_CHAIN, "chain")
        assert err.details["certificate"] == 3
        assert extra.root.cert != pki.root.cert

    def test_leaf_is_a_ca(self) -> None:
        pki = AwsLikePki.build(AT, leaf={"ca": True, "path_length": None})
        err = _reject(pki, pki.document(), Reason.INVALID_CERTIFICATE, "chain")
        assert "CA=false" in err.message

    def test_leaf_without_digital_signature(self) -> None:
        for usage in (frozenset({"content_commitment"}), None):
            pki = AwsLikePki.build(AT, leaf={"key_usage": usage})
            err = _reject(pki, pki.document(), Reason.INVALID_CERTIFICATE, "chain")
            assert "digitalSignature" in err.message

    def test_leaf_without_basic_constraints_is_an_end_entity(self) -> None:
        # RFC 5280: no basicConstraints means CA=false.
        pki = AwsLikePki.build(AT, leaf={"ca": None})
        _verifier(pki).verify(pki.document(), at=AT)

    @pytest.mark.parametrize(
        ("role", "index", "override", "needle"),
        [
            ("zonal", 2, {"ca": False}, "not a CA"),
            ("zonal", 2, {"ca": None}, "not a CA"),
            ("instance", 3, {"key_usage": frozenset({"digital_signature"})}, "keyCertSign"),
            ("regional", 1, {"key_usage": None}, "keyCertSign"),
            ("root", 0, {"ca": False}, "not a CA"),
        ],
    )
    def test_issuer_constraints(
        self, role: str, index: int, override: dict[str, Any], needle: str
    ) -> None:
        pki = AwsLikePki.build(AT, **{role: override})
        err = _reject(pki, pki.document(), Reason.INVALID_CHAIN, "chain")
        assert err.details["certificate"] == index
        assert needle in err.message

    def test_unknown_critical_extension(self) -> None:
        ext = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
        pki = AwsLikePki.build(AT, leaf={"extra_extensions": ((ext, True),)})
        err = _reject(pki, pki.document(), Reason.INVALID_CERTIFICATE, "chain")
        assert "1.3.6.1.4.1.99999.1" in err.message
        pki = AwsLikePki.build(AT, leaf={"extra_extensions": ((ext, False),)})
        _verifier(pki).verify(pki.document(), at=AT)

    @pytest.mark.parametrize("role", ["regional", "zonal", "instance", "leaf"])
    def test_expired_and_not_yet_valid(self, role: str) -> None:
        index = ["root", "regional", "zonal", "instance", "leaf"].index(role)
        pki = AwsLikePki.build(AT, **{role: {"not_after": AT - dt.timedelta(seconds=1)}})
        err = _reject(pki, pki.document(), Reason.EXPIRED_CERTIFICATE, "chain")
        assert err.details["certificate"] == index
        pki = AwsLikePki.build(AT, **{role: {"not_before": AT + dt.timedelta(seconds=1)}})
        err = _reject(pki, pki.document(), Reason.NOT_YET_VALID_CERTIFICATE, "chain")
        assert err.details["certificate"] == index

    def test_validity_bounds_are_inclusive(self, pki: AwsLikePki) -> None:
        leaf = pki.leaf.cert
        for at in (leaf.not_valid_before_utc, leaf.not_valid_after_utc):
            _verifier(pki).verify(pki.document(), at=at)

    def test_reordered_cabundle(self, pki: AwsLikePki) -> None:
        root, regional, zonal, instance = pki.cabundle
        err = _reject(
            pki,
            pki.document(cabundle=[root, zonal, regional, instance]),
            Reason.INVALID_CHAIN,
            "chain",
        )
        assert err.details["certificate"] == 1
        _reject(
            pki,
            pki.document(cabundle=[root, regional, instance, zonal]),
            Reason.INVALID_CHAIN,
            "chain",
        )

    def test_missing_intermediate(self, pki: AwsLikePki) -> None:
        root, regional, _zonal, instance = pki.cabundle
        _reject(
            pki, pki.document(cabundle=[root, regional, instance]), Reason.INVALID_CHAIN, "chain"
        )

    def test_substituted_intermediate(self, pki: AwsLikePki) -> None:
        """Same names, different keys: only the signature tells them apart."""
        twin = AwsLikePki.build(AT)
        bundle = [pki.root.der, pki.regional.der, twin.zonal.der, pki.instance.der]
        err = _reject(pki, pki.document(cabundle=bundle), Reason.BAD_SIGNATURE, "chain")
        assert err.details["certificate"] == 2

    def test_substituted_leaf(self, pki: AwsLikePki) -> None:
        twin = AwsLikePki.build(AT)
        data = pki.document(certificate=twin.leaf.der, signer=twin.leaf.key)
        err = _reject(pki, data, Reason.BAD_SIGNATURE, "chain")
        assert err.details["certificate"] == 4

    def test_leaf_is_never_taken_from_the_bundle(self, pki: AwsLikePki) -> None:
        # The instance CA signs the document and claims to be the leaf.
        data = pki.document(
            certificate=pki.instance.der, cabundle=pki.cabundle[:3], signer=pki.instance.key
        )
        err = _reject(pki, data, Reason.INVALID_CERTIFICATE, "chain")
        assert "CA=false" in err.message

    def test_inner_signature_algorithm_must_match(self, pki: AwsLikePki) -> None:
        """RFC 5280 4.1.1.2: the TBS `signature` field must equal the outer algorithm."""
        sha384 = bytes.fromhex("300a06082a8648ce3d040303")
        sha256 = bytes.fromhex("300a06082a8648ce3d040302")
        assert pki.leaf.der.count(sha384) == 2
        leaf = pki.leaf.der.replace(sha384, sha256, 1)  # the first one is inside the TBS
        err = _reject(pki, pki.document(certificate=leaf), Reason.UNSUPPORTED_ALGORITHM, "chain")
        assert err.details["certificate"] == 4

    def test_issuer_name_must_match(self, pki: AwsLikePki) -> None:
        key = ec.generate_private_key(ec.SECP384R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(pki.leaf.cert.subject)
            .issuer_name(pki.zonal.cert.subject)  # wrong name, right signer
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(AT - dt.timedelta(hours=1))
            .not_valid_after(AT + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=False,
            )
            .sign(pki.instance.key, hashes.SHA384())
        )
        from cryptography.hazmat.primitives.serialization import Encoding

        data = pki.document(certificate=leaf.public_bytes(Encoding.DER), signer=key)
        err = _reject(pki, data, Reason.INVALID_CHAIN, "chain")
        assert "names issuer" in err.message

    def test_invalid_x509_version(self, pki: AwsLikePki) -> None:
        """Regression (bench/fuzz_attestation.py): cryptography raises InvalidVersion,
        which is not a ValueError, for a version other than v1/v3."""
        head = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2 (v3)
        assert head in pki.leaf.der
        for bad in (bytes.fromhex("a003020103"), bytes.fromhex("a003020142")):
            leaf = pki.leaf.der.replace(head, bad, 1)
            err = _reject(pki, pki.document(certificate=leaf), Reason.INVALID_CERTIFICATE, "chain")
            assert "version" in err.message
            bundle = [pki.root.der, pki.regional.der.replace(head, bad, 1), *pki.cabundle[2:]]
            err = _reject(pki, pki.document(cabundle=bundle), Reason.INVALID_CERTIFICATE, "chain")
            assert err.details["certificate"] == 1

    def test_not_a_certificate(self, pki: AwsLikePki) -> None:
        for garbage in (b"\x30\x03\x02\x01\x01", pki.leaf.der + b"\x00", pki.leaf.der[:-1]):
            err = _reject(
                pki, pki.document(certificate=garbage), Reason.INVALID_CERTIFICATE, "chain"
            )
            assert err.details["certificate"] == 4


class TestSignature:
    def test_wrong_signer(self, pki: AwsLikePki) -> None:
        data = pki.document(signer=ec.generate_private_key(ec.SECP384R1()))
        _reject(pki, data, Reason.BAD_SIGNATURE, "signature")

    def test_payload_changed_after_signing(self, pki: AwsLikePki) -> None:
        outer = cbor2.loads(pki.document(user_data=b"A" * 32))
        outer[2] = outer[2].replace(b"A" * 32, b"B" * 32)
        _reject(pki, cbor2.dumps(outer), Reason.BAD_SIGNATURE, "signature")

    def test_signature_is_over_received_bytes(self, pki: AwsLikePki) -> None:
        """An equivalent re-encoding (definite vs indefinite) must not verify."""
        signed = cbor2.loads(pki.document(indefinite=True))
        from nitroguard.testing import encode_map

        signed[2] = encode_map(pki.fields(), indefinite=False)
        _reject(pki, cbor2.dumps(signed), Reason.BAD_SIGNATURE, "signature")


class TestCache:
    def test_warm_path_still_checks_time_and_policy(self, pki: AwsLikePki) -> None:
        verifier = _verifier(pki)
        data = pki.document(nonce=b"n" * 32)
        verifier.verify(data, at=AT)
        assert len(verifier._pairs) == 4
        later = pki.instance.cert.not_valid_after_utc + dt.timedelta(seconds=1)
        with pytest.raises(VerificationError) as info:
            verifier.verify(data, at=later)
        assert info.value.reason is Reason.EXPIRED_CERTIFICATE
        with pytest.raises(PolicyError) as pinfo:
            verifier.verify(data, policy.Nonce(b"m" * 32), at=AT)
        assert pinfo.value.reason is Reason.NONCE_MISMATCH

    def test_new_leaf_costs_one_new_pair(self, pki: AwsLikePki) -> None:
        verifier = _verifier(pki)
        verifier.verify(pki.document(), at=AT)
        key = ec.generate_private_key(ec.SECP384R1())
        other_leaf = (
            x509.CertificateBuilder()
            .subject_name(pki.leaf.cert.subject)
            .issuer_name(pki.instance.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(AT - dt.timedelta(hours=1))
            .not_valid_after(AT + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=False,
            )
            .sign(pki.instance.key, hashes.SHA384())
        )
        from cryptography.hazmat.primitives.serialization import Encoding

        verifier.verify(
            pki.document(certificate=other_leaf.public_bytes(Encoding.DER), signer=key), at=AT
        )
        assert len(verifier._pairs) == 5

    def test_cache_is_bounded_and_can_be_disabled(self, pki: AwsLikePki) -> None:
        small = _verifier(pki, cache_size=2)
        small.verify(pki.document(), at=AT)
        assert len(small._pairs) == 2
        off = _verifier(pki, cache_size=0)
        off.verify(pki.document(), at=AT)
        off.verify(pki.document(), at=AT)
        assert len(off._pairs) == 0
        small.clear_cache()
        assert len(small._pairs) == 0

    def test_parsed_certificates_are_shared_but_trust_is_not(self, pki: AwsLikePki) -> None:
        from nitroguard.attestation import _verifier as module

        module.clear_parsed_cache()
        assert len(module._PARSED) == 0
        _verifier(pki).verify(pki.document(), at=AT)
        assert len(module._PARSED) == 5
        # A verifier with other roots parses nothing again but still refuses the root.
        other = Verifier(roots=[AwsLikePki.build(AT).root.cert])
        with pytest.raises(VerificationError) as info:
            other.verify(pki.document(), at=AT)
        assert info.value.reason is Reason.UNTRUSTED_ROOT
        # A fresh verifier re-verifies every signature (no shared pairs).
        fresh = _verifier(pki)
        assert len(fresh._pairs) == 0
        fresh.verify(pki.document(), at=AT)
        assert len(fresh._pairs) == 4
        assert len(module._PARSED) <= module.PARSED_CACHE_SIZE

    def test_cached_pair_does_not_vouch_for_a_substitute(self, pki: AwsLikePki) -> None:
        verifier = _verifier(pki)
        verifier.verify(pki.document(), at=AT)
        twin = AwsLikePki.build(AT)
        bundle = [pki.root.der, pki.regional.der, twin.zonal.der, pki.instance.der]
        with pytest.raises(VerificationError) as info:
            verifier.verify(pki.document(cabundle=bundle), at=AT)
        assert info.value.reason is Reason.BAD_SIGNATURE


class TestConfig:
    def test_bad_arguments(self, pki: AwsLikePki) -> None:
        with pytest.raises(ConfigError, match="at least one trust root"):
            Verifier(roots=[])
        with pytest.raises(ConfigError, match=r"x509\.Certificate"):
            Verifier(roots=[pki.root.der])  # type: ignore[list-item]
        with pytest.raises(ConfigError, match="cache_size"):
            Verifier(cache_size=-1)
        with pytest.raises(ConfigError, match="timezone-aware"):
            _verifier(pki).verify(pki.document(), at=dt.datetime(2026, 6, 1))
        with pytest.raises(ConfigError, match="policy must have"):
            _verifier(pki).verify(pki.document(), "PCR0", at=AT)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="datetime"):
            _verifier(pki).verify(pki.document(), at="2026-06-01")  # type: ignore[arg-type]

    def test_roots_property(self, pki: AwsLikePki) -> None:
        assert _verifier(pki).roots == (pki.root.cert,)
        assert len(Verifier().roots) == 1

    def test_non_utc_time_is_converted(self, pki: AwsLikePki) -> None:
        tz = dt.timezone(dt.timedelta(hours=5))
        doc = _verifier(pki).verify(pki.document(), at=AT.astimezone(tz))
        assert doc.verified_at == AT
        assert doc.verified_at.tzinfo is dt.UTC

    def test_protected_header_from_cose_sign_helper(self, pki: AwsLikePki) -> None:
        payload = cbor2.loads(pki.document())[2]
        data = cose.sign(pki.leaf.key, payload)
        _verifier(pki).verify(data, at=AT)
