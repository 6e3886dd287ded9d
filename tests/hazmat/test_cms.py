"""The strict KMS CiphertextForRecipient reader and writer (hazmat/cms)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nitroguard.errors import Error, KmsError, Reason
from nitroguard.hazmat import cms
from nitroguard.hazmat.cms import encode_envelope, parse_envelope

KEY_ID = bytes(range(32))
WRAPPED = bytes([7]) * 256
IV = bytes(range(16))


def sample(**kw: object) -> bytes:
    return encode_envelope(KEY_ID, WRAPPED, IV, bytes(48), **kw)  # type: ignore[arg-type]


@pytest.mark.vectors
@pytest.mark.parametrize(
    ("name", "primitive"),
    [("kms_ciphertext_for_recipient_1.ber", False), ("kms_ciphertext_for_recipient_3.ber", True)],
)
def test_real_replies_parse_and_our_writer_reproduces_them_byte_for_byte(
    kms_vectors_dir: Path, name: str, primitive: bool
) -> None:
    data = (kms_vectors_dir / name).read_bytes()
    env = parse_envelope(data)
    assert env.primitive_content is primitive
    assert len(env.recipient_key_id) == 32
    assert len(env.encrypted_key) == 256
    assert env.describe()["content_bytes"] == 16
    again = encode_envelope(
        env.recipient_key_id, env.encrypted_key, env.iv, env.content, primitive_content=primitive
    )
    assert again == data


def test_chunks_follow_the_chunk_size() -> None:
    data = encode_envelope(KEY_ID, WRAPPED, IV, bytes(2512), chunk_size=1000)
    env = parse_envelope(data)
    assert [len(c) for c in env.chunks] == [1000, 1000, 512]
    assert env.describe()["content_chunks"] == 3


def _alg(oid: bytes, params: bytes = b"") -> bytes:
    return cms._tlv(0x30, cms._tlv(0x06, oid) + params)


SHA1 = _alg(cms.OID_SHA1, b"\x05\x00")
SHA256 = _alg(cms.OID_SHA256, b"\x05\x00")


def _oaep(hash_alg: bytes, mgf_hash: bytes, *, label: bool = False) -> bytes:
    fields = cms._tlv(0xA0, hash_alg) + cms._tlv(0xA1, _alg(cms.OID_MGF1, mgf_hash))
    if label:
        fields += cms._tlv(0xA2, b"\x30\x00")
    return _alg(cms.OID_RSAES_OAEP, cms._tlv(0x30, fields))


@pytest.mark.parametrize(
    ("kwargs", "reason", "words"),
    [
        (
            {"key_encryption_algorithm": _alg(cms.OID_RSAES_OAEP)},
            Reason.MISSING_OAEP_PARAMETERS,
            "SHA-1",
        ),
        (
            {"key_encryption_algorithm": _alg(cms.OID_RSAES_OAEP, b"\x30\x00")},
            Reason.MISSING_OAEP_PARAMETERS,
            "SHA-1",
        ),
        (
            {"key_encryption_algorithm": _alg(cms.OID_RSA_ENCRYPTION, b"\x05\x00")},
            Reason.UNSUPPORTED_KEY_ENCRYPTION,
            "PKCS#1 v1.5",
        ),
        (
            {"key_encryption_algorithm": _oaep(SHA1, SHA1)},
            Reason.UNSUPPORTED_KEY_ENCRYPTION,
            "sha1",
        ),
        (
            {"key_encryption_algorithm": _oaep(SHA256, SHA1)},
            Reason.UNSUPPORTED_KEY_ENCRYPTION,
            "MGF1",
        ),
        (
            {"key_encryption_algorithm": _oaep(SHA256, SHA256, label=True)},
            Reason.UNSUPPORTED_KEY_ENCRYPTION,
            "label",
        ),
        (
            {"content_algorithm_oid": cms.OID_AES128_CBC},
            Reason.UNSUPPORTED_CONTENT_ENCRYPTION,
            "aes128",
        ),
        ({"version": 0}, Reason.MALFORMED_ENVELOPE, "version"),
    ],
)
def test_foreign_shapes_are_refused_precisely(
    kwargs: dict[str, object], reason: Reason, words: str
) -> None:
    with pytest.raises(KmsError) as info:
        parse_envelope(sample(**kwargs))
    assert info.value.reason is reason
    assert words in info.value.message


def test_oaep_with_both_explicit_sha256_params_is_accepted() -> None:
    parse_envelope(sample(key_encryption_algorithm=_oaep(SHA256, SHA256)))
    parse_envelope(sample(key_encryption_algorithm=_oaep(_alg(cms.OID_SHA256), SHA256)))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d + b"\x00", Reason.TRAILING_BYTES),
        (lambda d: d[:-2], Reason.TRUNCATED),
        (lambda d: d[:100], Reason.TRUNCATED),
    ],
)
def test_truncation_and_trailing_bytes(mutate: object, reason: Reason) -> None:
    with pytest.raises(KmsError) as info:
        parse_envelope(mutate(sample()))  # type: ignore[operator]
    assert info.value.reason is reason


def test_two_recipients_are_refused() -> None:
    data = sample()
    start = data.index(b"\x31\x82")
    length = int.from_bytes(data[start + 2 : start + 4], "big")
    ktri = data[start + 4 : start + 4 + length]
    doubled = b"\x31\x82" + (2 * length).to_bytes(2, "big") + ktri + ktri
    with pytest.raises(KmsError) as info:
        parse_envelope(data[:start] + doubled + data[start + 4 + length :])
    assert info.value.reason is Reason.TOO_MANY_RECIPIENTS


def test_indefinite_length_only_where_kms_uses_it() -> None:
    data = sample()
    # The recipient SET with an indefinite length: refused (KMS uses a definite one).
    start = data.index(b"\x31\x82")
    length = int.from_bytes(data[start + 2 : start + 4], "big")
    body = data[start + 4 : start + 4 + length]
    changed = data[:start] + b"\x31\x80" + body + b"\x00\x00" + data[start + 4 + length :]
    with pytest.raises(KmsError, match="indefinite length is not allowed"):
        parse_envelope(changed)


def test_nesting_and_size_limits() -> None:
    deep = b"\x30\x80" * (cms.MAX_DEPTH + 2) + b"\x00\x00" * (cms.MAX_DEPTH + 2)
    with pytest.raises(KmsError) as info:
        parse_envelope(deep)
    assert info.value.reason is Reason.TOO_DEEP
    with pytest.raises(KmsError) as info:
        parse_envelope(b"\x30\x80" + bytes(cms.MAX_ENVELOPE))
    assert info.value.reason is Reason.TOO_LARGE
    with pytest.raises(KmsError) as info:
        parse_envelope(encode_envelope(KEY_ID, WRAPPED, IV, bytes(cms.MAX_CONTENT + 16)))
    assert info.value.reason is Reason.TOO_LARGE
    with pytest.raises(KmsError) as info:
        parse_envelope(encode_envelope(KEY_ID, WRAPPED, IV, bytes(20)))
    assert "multiple of 16" in info.value.message
    with pytest.raises(KmsError, match="length field longer"):
        parse_envelope(b"\x30\x83\x01\x00\x00")
    with pytest.raises(KmsError, match="non-minimal"):
        parse_envelope(b"\x30\x81\x05" + bytes(5))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, 600), st.integers(0, 255)), min_size=1, max_size=6),
    st.integers(0, 600),
)
def test_mutations_raise_only_our_errors(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(sample(chunk_size=16))
    for pos, value in flips:
        data[pos % len(data)] = value
    for blob in (bytes(data), bytes(data[: cut % (len(data) + 1)])):
        with contextlib.suppress(Error):
            parse_envelope(blob)
