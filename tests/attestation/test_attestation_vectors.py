"""Every entry of ../shared/vectors/attestation/vectors.json, at its verify_at and today."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from nitroguard.attestation import (
    AWS_ROOT_G1_SHA256,
    AttestationDocument,
    Verifier,
    aws_root,
    fingerprint,
    policy,
)
from nitroguard.errors import PolicyError, Reason, VerificationError

pytestmark = pytest.mark.vectors

#: Today, per the brief: every real document's 3-hour leaf has long expired.
TODAY = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)

#: The first check each negative vector fails, in pipeline order.
NEGATIVE_REASONS = {
    # PCR bit flipped after signing: parses, chains, then the COSE signature fails.
    "negative/signal_pcr_bitflip.cbor": (Reason.BAD_SIGNATURE, "signature"),
    "negative/base_nv_sig_s_bitflip.cbor": (Reason.BAD_SIGNATURE, "signature"),
    # Self-signed, non-Nitro document: its unprotected header is null, so the strict
    # COSE step refuses it before any trust decision (its cabundle is null too).
    "negative/blocky_selfsigned_untrusted_root.cbor": (Reason.MALFORMED_COSE, "cose"),
    # Valid document + one 0x00 byte: only a strict decoder catches it.
    "negative/derived_trailing_byte.cbor": (Reason.TRAILING_BYTES, "cose"),
}


def _at(entry: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(entry["verify_at"].replace("Z", "+00:00"))


def _entries(vectors: list[dict[str, Any]], expect: str) -> list[dict[str, Any]]:
    return [e for e in vectors if e["expect"] == expect]


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier()


def test_vectors_cover_everything(attestation_vectors: list[dict[str, Any]]) -> None:
    negatives = {e["file"] for e in _entries(attestation_vectors, "reject")}
    assert negatives == set(NEGATIVE_REASONS)
    assert {e["expect"] for e in attestation_vectors} == {"accept", "reject"}
    assert any(e.get("debug") for e in attestation_vectors)


def test_packaged_root_is_the_shared_root(attestation_vectors_dir: Path) -> None:
    shared = (attestation_vectors_dir / "aws_nitro_root_g1.pem").read_bytes()
    assert fingerprint(aws_root()) == AWS_ROOT_G1_SHA256
    from cryptography import x509

    assert x509.load_pem_x509_certificate(shared) == aws_root()


def test_real_documents_verify_at_verify_at(
    verifier: Verifier, attestation_vectors: list[dict[str, Any]]
) -> None:
    for entry in _entries(attestation_vectors, "accept"):
        data = entry["path"].read_bytes()
        doc = verifier.verify(data, at=_at(entry), allow_debug=entry["debug"])
        assert doc.timestamp == entry["timestamp_ms"], entry["file"]
        assert {str(k): v.hex() for k, v in doc.pcrs.items()} == entry["pcrs"], entry["file"]
        assert doc.digest == "SHA384"
        assert doc.raw == data
        assert doc.nonce == (bytes.fromhex(entry["nonce"]) if entry["nonce"] else None)
        assert doc.user_data == (bytes.fromhex(entry["user_data"]) if entry["user_data"] else None)
        if entry["public_key_len"] is None:
            assert doc.public_key is None
        else:
            assert doc.public_key is not None
            assert len(doc.public_key) == entry["public_key_len"]
        assert doc.cabundle[0] == aws_root()
        assert len(doc.cabundle) == 4
        assert doc.is_debug == entry["debug"]
        assert doc.verified_at == _at(entry)
        assert doc.document.tagged == ("tag18" in entry["file"])


def test_debug_documents_need_allow_debug(
    verifier: Verifier, attestation_vectors: list[dict[str, Any]]
) -> None:
    debug = [e for e in _entries(attestation_vectors, "accept") if e["debug"]]
    assert len(debug) >= 2
    for entry in debug:
        data = entry["path"].read_bytes()
        with pytest.raises(PolicyError, match="debug mode") as info:
            verifier.verify(data, at=_at(entry))
        assert info.value.reason is Reason.DEBUG_MODE
        assert info.value.details["step"] == "policy"
        # Also through an explicit PCR policy that happens to match the zeros.
        zeros = policy.PCRs({0: bytes(48)})
        with pytest.raises(PolicyError, match="debug mode"):
            verifier.verify(data, zeros, at=_at(entry))
        assert verifier.verify(data, zeros, at=_at(entry), allow_debug=True).is_debug


def test_production_documents_pass_the_default_policy(
    verifier: Verifier, attestation_vectors: list[dict[str, Any]]
) -> None:
    for entry in _entries(attestation_vectors, "accept"):
        if not entry["debug"]:
            verifier.verify(entry["path"].read_bytes(), at=_at(entry))


@pytest.mark.parametrize("cache_size", [0, 256])
def test_every_real_document_is_rejected_today(
    cache_size: int, attestation_vectors: list[dict[str, Any]]
) -> None:
    verifier = Verifier(cache_size=cache_size)
    for entry in _entries(attestation_vectors, "accept"):
        with pytest.raises(VerificationError, match="expired") as info:
            verifier.verify(entry["path"].read_bytes(), at=TODAY, allow_debug=True)
        assert info.value.reason is Reason.EXPIRED_CERTIFICATE
        assert info.value.details["step"] == "chain"


def test_now_is_the_default_time(
    verifier: Verifier, attestation_vectors: list[dict[str, Any]]
) -> None:
    entry = _entries(attestation_vectors, "accept")[0]
    with pytest.raises(VerificationError) as info:
        verifier.verify(entry["path"].read_bytes(), allow_debug=True)
    assert info.value.reason is Reason.EXPIRED_CERTIFICATE


def test_real_documents_are_rejected_before_their_leaf(
    verifier: Verifier, attestation_vectors: list[dict[str, Any]]
) -> None:
    for entry in _entries(attestation_vectors, "accept"):
        data = entry["path"].read_bytes()
        leaf = verifier.verify(data, at=_at(entry), allow_debug=True).certificate
        early = leaf.not_valid_before_utc - dt.timedelta(seconds=1)
        with pytest.raises(VerificationError, match="not valid before") as info:
            verifier.verify(data, at=early, allow_debug=True)
        assert info.value.reason is Reason.NOT_YET_VALID_CERTIFICATE


@pytest.mark.parametrize("name", sorted(NEGATIVE_REASONS))
def test_negative_vectors(
    name: str, verifier: Verifier, attestation_vectors: list[dict[str, Any]]
) -> None:
    (entry,) = [e for e in attestation_vectors if e["file"] == name]
    reason, step = NEGATIVE_REASONS[name]
    for allow_debug in (False, True):
        with pytest.raises(VerificationError) as info:
            verifier.verify(entry["path"].read_bytes(), at=_at(entry), allow_debug=allow_debug)
        assert info.value.reason is reason
        assert info.value.details["step"] == step


def test_parse_without_trust(attestation_vectors: list[dict[str, Any]]) -> None:
    for entry in _entries(attestation_vectors, "accept"):
        doc = AttestationDocument.parse(entry["path"].read_bytes())
        assert doc.timestamp == entry["timestamp_ms"]
        assert doc.payload[0] in (0xA9, 0xBF)
    indefinite = [
        e for e in attestation_vectors if e["expect"] == "accept" and "indef" in e["file"]
    ]
    assert indefinite
    assert AttestationDocument.parse(indefinite[0]["path"].read_bytes()).payload[0] == 0xBF
