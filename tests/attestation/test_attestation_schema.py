"""Steps 1-3: size, COSE envelope and payload schema, one rule at a time."""

from __future__ import annotations

import datetime as dt
from typing import Any

import cbor2
import pytest

from nitroguard.attestation import MAX_DOCUMENT_SIZE, AttestationDocument, Verifier
from nitroguard.errors import DecodeError, Error, Reason, VerificationError
from nitroguard.testing import AwsLikePki, encode_map

AT = dt.datetime(2026, 3, 1, 8, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def pki() -> AwsLikePki:
    return AwsLikePki.build(AT)


def _rejects(pki: AwsLikePki, data: bytes, reason: Reason, step: str) -> Error:
    """Both the parser and the verifier reject `data` with `reason` at `step`."""
    with pytest.raises(Error) as parsed:
        AttestationDocument.parse(data)
    assert isinstance(parsed.value, DecodeError | VerificationError)
    assert parsed.value.reason is reason, parsed.value.diagnostics()
    assert parsed.value.details["step"] == step
    with pytest.raises(VerificationError) as verified:
        Verifier(roots=[pki.root.cert]).verify(data, at=AT)
    assert verified.value.reason is reason
    assert verified.value.details["step"] == step
    return verified.value


def _replace(pki: AwsLikePki, **changes: Any) -> list[tuple[Any, Any]]:
    return [(k, changes.get(k, v)) for k, v in pki.fields()]


class TestSize:
    def test_over_16k_is_rejected_before_decoding(self, pki: AwsLikePki) -> None:
        # Not even CBOR: the size check must come first.
        err = _rejects(pki, b"\xff" * (MAX_DOCUMENT_SIZE + 1), Reason.TOO_LARGE, "size")
        assert "16384" in err.message

    def test_huge_length_header_does_not_allocate(self, pki: AwsLikePki) -> None:
        # A byte string claiming 2**64-1 bytes: rejected by a bounds check.
        data = b"\x84\x44\xa1\x01\x38\x22\xa0\x5b" + b"\xff" * 8
        _rejects(pki, data, Reason.MALFORMED_CBOR, "cose")

    def test_not_bytes(self) -> None:
        with pytest.raises(DecodeError, match="expected bytes") as info:
            AttestationDocument.parse("text")  # type: ignore[arg-type]
        assert info.value.reason is Reason.INVALID_ARGUMENT

    def test_empty(self, pki: AwsLikePki) -> None:
        _rejects(pki, b"", Reason.MALFORMED_CBOR, "cose")


class TestCose:
    def test_trailing_bytes(self, pki: AwsLikePki) -> None:
        _rejects(pki, pki.document() + b"\x00", Reason.TRAILING_BYTES, "cose")

    def test_other_tags(self, pki: AwsLikePki) -> None:
        body = pki.document()
        _rejects(pki, b"\xd8\x62" + body, Reason.UNEXPECTED_TAG, "cose")  # tag 98 (COSE_Sign)
        _rejects(pki, b"\xd2\xd2" + body, Reason.UNEXPECTED_TAG, "cose")  # double tag 18
        _rejects(pki, b"\xd1" + body, Reason.UNEXPECTED_TAG, "cose")  # tag 17 (COSE_Mac0)

    def test_not_a_four_item_array(self, pki: AwsLikePki) -> None:
        outer = cbor2.loads(pki.document())
        _rejects(pki, cbor2.dumps(outer[:3]), Reason.MALFORMED_COSE, "cose")
        _rejects(pki, cbor2.dumps({1: 2}), Reason.MALFORMED_COSE, "cose")
        _rejects(pki, cbor2.dumps([*outer, b""]), Reason.MALFORMED_COSE, "cose")

    @pytest.mark.parametrize(
        "protected",
        [
            cbor2.dumps({1: -7}),  # ES256
            cbor2.dumps({1: -36}),  # ES512
            cbor2.dumps({1: "ES384"}),  # text alg (hf/nitrite accepted it)
            cbor2.dumps({1: -35, 4: b"kid"}),  # extra parameter
            bytes.fromhex("a101390022"),  # -35 with a non-minimal 2-byte argument
            b"",
            bytes.fromhex("a0"),
        ],
    )
    def test_protected_header_must_be_exactly_es384(
        self, pki: AwsLikePki, protected: bytes
    ) -> None:
        payload = cbor2.loads(pki.document())[2]
        data = pki.sign_payload(payload, protected=protected)
        _rejects(pki, data, Reason.UNSUPPORTED_ALGORITHM, "cose")

    def test_unprotected_header_must_be_a_map(self, pki: AwsLikePki) -> None:
        outer = cbor2.loads(pki.document())
        for bad in (None, [], b""):
            outer[1] = bad
            _rejects(pki, cbor2.dumps(outer), Reason.MALFORMED_COSE, "cose")

    def test_signature_must_be_96_bytes(self, pki: AwsLikePki) -> None:
        outer = cbor2.loads(pki.document())
        for sig in (outer[3][:95], outer[3] + b"\x00", b"", outer[3][:64]):
            outer_bad = [*outer[:3], sig]
            _rejects(pki, cbor2.dumps(outer_bad), Reason.BAD_SIGNATURE, "cose")

    def test_payload_not_bytes(self, pki: AwsLikePki) -> None:
        outer = cbor2.loads(pki.document())
        outer[2] = dict(pki.fields())
        _rejects(pki, cbor2.dumps(outer), Reason.MALFORMED_COSE, "cose")


class TestPayloadEncoding:
    def test_duplicate_top_level_key(self, pki: AwsLikePki) -> None:
        """base/nitro-validator PR #36: a second `pcrs` overrode the first."""
        items = [*pki.fields(), ("pcrs", {0: bytes(48)})]
        _rejects(pki, pki.document(items=items), Reason.DUPLICATE_KEY, "schema")
        _rejects(pki, pki.document(items=items, indefinite=True), Reason.DUPLICATE_KEY, "schema")

    def test_duplicate_pcr_index(self, pki: AwsLikePki) -> None:
        pcrs_bytes = encode_map([(0, b"\x01" * 48), (0, b"\x02" * 48)])
        payload = encode_map(pki.fields(pcrs={}))
        # Splice the raw duplicate map in place of the empty `pcrs` map.
        payload = payload.replace(cbor2.dumps("pcrs") + b"\xa0", cbor2.dumps("pcrs") + pcrs_bytes)
        _rejects(pki, pki.sign_payload(payload), Reason.DUPLICATE_KEY, "schema")

    def test_trailing_bytes_in_payload(self, pki: AwsLikePki) -> None:
        payload = encode_map(pki.fields()) + b"\x00"
        _rejects(pki, pki.sign_payload(payload), Reason.TRAILING_BYTES, "schema")

    def test_tag_inside_payload(self, pki: AwsLikePki) -> None:
        payload = b"\xd8\x18" + cbor2.dumps(encode_map(pki.fields()))  # tag 24, embedded CBOR
        _rejects(pki, pki.sign_payload(payload), Reason.UNEXPECTED_TAG, "schema")
        items = _replace(pki, timestamp=cbor2.CBORTag(1, 1700000000))
        _rejects(pki, pki.document(items=items), Reason.UNEXPECTED_TAG, "schema")

    def test_non_minimal_integer(self, pki: AwsLikePki) -> None:
        payload = encode_map(pki.fields(timestamp=5))
        payload = payload.replace(
            cbor2.dumps("timestamp") + b"\x05", cbor2.dumps("timestamp") + b"\x18\x05"
        )
        _rejects(pki, pki.sign_payload(payload), Reason.MALFORMED_CBOR, "schema")

    def test_float_and_undefined(self, pki: AwsLikePki) -> None:
        _rejects(pki, pki.document(timestamp=1.5), Reason.MALFORMED_CBOR, "schema")
        items = _replace(pki, nonce=cbor2.undefined)
        _rejects(pki, pki.document(items=items), Reason.MALFORMED_CBOR, "schema")

    def test_invalid_utf8(self, pki: AwsLikePki) -> None:
        payload = encode_map(pki.fields(module_id="abc"))
        payload = payload.replace(b"\x63abc", b"\x63\xff\xfe\xfd")
        _rejects(pki, pki.sign_payload(payload), Reason.MALFORMED_CBOR, "schema")

    def test_payload_not_a_map(self, pki: AwsLikePki) -> None:
        _rejects(pki, pki.sign_payload(cbor2.dumps([1, 2])), Reason.INVALID_DOCUMENT, "schema")


class TestSchema:
    def test_unknown_field(self, pki: AwsLikePki) -> None:
        items = [*pki.fields(), ("debug", False)]
        err = _rejects(pki, pki.document(items=items), Reason.UNKNOWN_FIELD, "schema")
        assert "'debug'" in err.message
        items = [*pki.fields(), (7, b"")]
        _rejects(pki, pki.document(items=items), Reason.UNKNOWN_FIELD, "schema")

    @pytest.mark.parametrize(
        "name", ["module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle"]
    )
    def test_missing_mandatory_field(self, pki: AwsLikePki, name: str) -> None:
        items = [kv for kv in pki.fields() if kv[0] != name]
        err = _rejects(pki, pki.document(items=items), Reason.MISSING_FIELD, "schema")
        assert err.details["field"] == name

    @pytest.mark.parametrize("digest", ["SHA256", "SHA512", "sha384", b"SHA384", None, 384])
    def test_digest(self, pki: AwsLikePki, digest: object) -> None:
        _rejects(pki, pki.document(digest=digest), Reason.INVALID_DIGEST, "schema")

    @pytest.mark.parametrize("module_id", ["", b"i-abc", None, 5])
    def test_module_id(self, pki: AwsLikePki, module_id: object) -> None:
        items = _replace(pki, module_id=module_id)
        _rejects(pki, pki.document(items=items), Reason.INVALID_FIELD, "schema")

    @pytest.mark.parametrize("timestamp", [0, -1, True, "1700000000000", None])
    def test_timestamp(self, pki: AwsLikePki, timestamp: object) -> None:
        items = _replace(pki, timestamp=timestamp)
        _rejects(pki, pki.document(items=items), Reason.INVALID_FIELD, "schema")

    @pytest.mark.parametrize(
        "pcrs",
        [
            {},
            {0: bytes(32)},
            {0: bytes(64)},
            {0: bytes(49)},
            {32: bytes(48)},
            {-1: bytes(48)},
            {"0": bytes(48)},
            {0: "00" * 48},
            {0: None},
            [bytes(48)],
            None,
        ],
    )
    def test_pcrs(self, pki: AwsLikePki, pcrs: object) -> None:
        items = _replace(pki, pcrs=pcrs)
        _rejects(pki, pki.document(items=items), Reason.INVALID_PCR, "schema")

    def test_all_32_pcrs(self, pki: AwsLikePki) -> None:
        pcrs = {i: bytes([i + 1]) * 48 for i in range(32)}
        doc = Verifier(roots=[pki.root.cert]).verify(pki.document(pcrs=pcrs), at=AT)
        assert list(doc.pcrs) == list(range(32))
        with pytest.raises(TypeError):
            doc.pcrs[0] = bytes(48)  # type: ignore[index]

    @pytest.mark.parametrize("bundle", [[], None, b"", "x", [b""], [5], [b"\x01\x02"]])
    def test_cabundle_shape(self, pki: AwsLikePki, bundle: object) -> None:
        items = _replace(pki, cabundle=bundle)
        _rejects(pki, pki.document(items=items), Reason.INVALID_FIELD, "schema")

    def test_cabundle_length(self, pki: AwsLikePki) -> None:
        # 9 distinct entries (content is irrelevant: the length check comes first).
        bundle = [pki.root.der + bytes([i]) for i in range(9)]
        err = _rejects(pki, pki.document(cabundle=bundle), Reason.INVALID_FIELD, "schema")
        assert "at most 8" in err.message

    def test_cabundle_duplicates(self, pki: AwsLikePki) -> None:
        bundle = [pki.root.der, pki.root.der, *pki.cabundle[1:]]
        _rejects(pki, pki.document(cabundle=bundle), Reason.INVALID_FIELD, "schema")
        bundle = [*pki.cabundle, pki.leaf.der]
        _rejects(pki, pki.document(cabundle=bundle), Reason.INVALID_FIELD, "schema")

    @pytest.mark.parametrize("certificate", [b"", None, "pem", b"\x04" * 10, b"\x30" * 4097])
    def test_certificate_shape(self, pki: AwsLikePki, certificate: object) -> None:
        items = _replace(pki, certificate=certificate)
        _rejects(pki, pki.document(items=items), Reason.INVALID_FIELD, "schema")

    @pytest.mark.parametrize("name", ["public_key", "user_data", "nonce"])
    def test_optional_fields(self, pki: AwsLikePki, name: str) -> None:
        for bad in ("text", 5, [b""], {}):
            items = _replace(pki, **{name: bad})
            err = _rejects(pki, pki.document(items=items), Reason.INVALID_FIELD, "schema")
            assert err.details["field"] == name
        err = _rejects(pki, pki.document(**{name: b"z" * 4097}), Reason.INVALID_FIELD, "schema")
        assert "4096" in err.message

    def test_parse_exposes_every_field(self, pki: AwsLikePki) -> None:
        data = pki.document(public_key=b"pk", user_data=b"ud", nonce=b"n" * 16, tagged=True)
        doc = AttestationDocument.parse(data)
        assert doc.module_id.startswith("i-")
        assert doc.digest == "SHA384"
        assert doc.timestamp_seconds == AT.timestamp()
        assert doc.certificate == pki.leaf.der
        assert doc.cabundle == tuple(pki.cabundle)
        assert (doc.public_key, doc.user_data, doc.nonce) == (b"pk", b"ud", b"n" * 16)
        assert doc.tagged
        assert doc.raw == data
        assert len(doc.signature) == 96
        assert doc.protected == bytes.fromhex("a1013822")
        assert AttestationDocument.parse(bytearray(data)).raw == data
