from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from nitroguard.errors import DecodeError, Reason, VerificationError
from nitroguard.hazmat import cbor, cose


@pytest.fixture(scope="module")
def key384() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


class TestSign1:
    def test_sign_and_verify(self, key384: ec.EllipticCurvePrivateKey) -> None:
        msg = cose.sign(key384, b"payload")
        decoded = cose.decode_sign1(msg, max_size=4096)
        assert decoded.protected == cose.ES384_PROTECTED
        assert decoded.payload == b"payload"
        assert len(decoded.signature) == 96
        assert not decoded.tagged
        alg, _ = cose.protected_algorithm(decoded.protected)
        cose.verify_signature(
            key384.public_key(), alg, decoded.protected, decoded.payload, decoded.signature
        )

    def test_tagged(self, key384: ec.EllipticCurvePrivateKey) -> None:
        decoded = cose.decode_sign1(cose.sign(key384, b"p", tagged=True), max_size=4096)
        assert decoded.tagged

    def test_bad_signature(self, key384: ec.EllipticCurvePrivateKey) -> None:
        decoded = cose.decode_sign1(cose.sign(key384, b"payload"), max_size=4096)
        with pytest.raises(VerificationError) as info:
            cose.verify_signature(
                key384.public_key(), cose.ES384, decoded.protected, b"payloaD", decoded.signature
            )
        assert info.value.reason is Reason.BAD_SIGNATURE
        with pytest.raises(VerificationError, match="expected 96"):
            cose.verify_signature(
                key384.public_key(), cose.ES384, decoded.protected, b"payload", b"\x01" * 10
            )

    def test_alg_must_match_curve(self, key384: ec.EllipticCurvePrivateKey) -> None:
        with pytest.raises(VerificationError) as info:
            cose.verify_signature(key384.public_key(), cose.ES256, b"", b"", b"\x00" * 64)
        assert info.value.reason is Reason.UNSUPPORTED_ALGORITHM
        with pytest.raises(VerificationError):
            cose.verify_signature(key384.public_key(), -999, b"", b"", b"")

    @pytest.mark.parametrize(
        "obj",
        [
            [b"", {}, b""],
            [b"", {}, b"", "sig"],
            ["p", {}, b"", b""],
            [b"", None, b"", b""],
            [b"", {}, 1, b""],
            {"a": 1},
        ],
    )
    def test_shape(self, obj: object) -> None:
        with pytest.raises(DecodeError) as info:
            cose.decode_sign1(cbor.dumps(obj), max_size=4096)
        assert info.value.reason is Reason.MALFORMED_COSE

    def test_protected_header(self) -> None:
        assert cose.protected_algorithm(cose.ES384_PROTECTED)[0] == -35
        with pytest.raises(DecodeError) as info:
            cose.protected_algorithm(cbor.dumps({4: b"kid"}))
        assert info.value.reason is Reason.UNSUPPORTED_ALGORITHM
        with pytest.raises(DecodeError, match="must be a map"):
            cose.protected_algorithm(cbor.dumps([1]))
