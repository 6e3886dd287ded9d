"""Opening and sealing envelopes; the attested Recipient."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP, PKCS1v15
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from nitroguard.attestation import Verifier
from nitroguard.errors import ConfigError, InsecureEnvironment, KmsError, Reason
from nitroguard.hazmat.cms import encode_envelope, parse_envelope
from nitroguard.kms import Recipient, key_identifier, open_envelope, seal_envelope
from nitroguard.testing import ephemeral_nsm

KEY = rsa.generate_private_key(65537, 2048)
OTHER = rsa.generate_private_key(65537, 2048)
OAEP256 = OAEP(MGF1(hashes.SHA256()), hashes.SHA256(), None)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000, 2500, 4096])
def test_round_trip_in_kms_shape(size: int) -> None:
    plaintext = bytes(range(256)) * (size // 256) + bytes(size % 256)
    data = seal_envelope(KEY.public_key(), plaintext)
    env = parse_envelope(data)
    assert env.recipient_key_id == key_identifier(KEY.public_key())
    assert all(len(c) == 1000 for c in env.chunks[:-1])
    assert open_envelope(KEY, data) == plaintext


def test_primitive_content_opens_too() -> None:
    data = seal_envelope(KEY.public_key(), b"secret", primitive_content=True)
    assert parse_envelope(data).primitive_content
    assert open_envelope(KEY, data) == b"secret"


def _envelope(cek: bytes, padded: bytes, wrap: object = OAEP256) -> bytes:
    iv = bytes(16)
    enc = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    body = enc.update(padded) + enc.finalize()
    wrapped = KEY.public_key().encrypt(cek, wrap)  # type: ignore[arg-type]
    return encode_envelope(bytes(32), wrapped, iv, body)


def _pad(data: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    return padder.update(data) + padder.finalize()


def test_every_unwrap_and_padding_failure_is_one_opaque_error() -> None:
    cek = bytes(range(32))
    cases = {
        "other key": seal_envelope(OTHER.public_key(), b"x"),
        "bad padding": _envelope(cek, bytes(16)),
        "16-byte key": _envelope(bytes(16), _pad(b"x")),
        "pkcs1v15-wrapped key": _envelope(cek, _pad(b"x"), PKCS1v15()),
    }
    messages = set()
    for data in cases.values():
        with pytest.raises(KmsError) as info:
            open_envelope(KEY, data)
        assert info.value.reason is Reason.DECRYPTION_FAILED
        assert info.value.details == {}
        messages.add(info.value.message)
    assert len(messages) == 1
    assert open_envelope(KEY, _envelope(cek, _pad(b"ok"))) == b"ok"


def test_seal_refuses_oversize_plaintext() -> None:
    with pytest.raises(ConfigError):
        seal_envelope(KEY.public_key(), bytes(4097))


def test_recipient_is_generated_only_after_the_rng_check() -> None:
    nsm = ephemeral_nsm()
    calls: list[str] = []

    def failing() -> bool:
        calls.append("check")
        return False

    with pytest.raises(InsecureEnvironment):
        Recipient.generate(nsm, rng_check=failing)

    def raising() -> None:
        raise InsecureEnvironment("RNG-1 failed")

    with pytest.raises(InsecureEnvironment, match="RNG-1"):
        Recipient.generate(nsm, rng_check=raising)
    assert calls == ["check"]


def test_recipient_attests_its_spki_and_opens_replies() -> None:
    nsm = ephemeral_nsm()
    recipient = Recipient.generate(nsm, rng_check=lambda: None)
    param = recipient.parameter()
    assert param["KeyEncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"
    doc = Verifier([nsm.pki.root_certificate]).verify(param["AttestationDocument"])
    assert doc.public_key == recipient.public_key_der
    public = serialization.load_der_public_key(recipient.public_key_der)
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 2048
    assert recipient.open(seal_envelope(public, b"master key")) == b"master key"
    assert "key sha256" in repr(recipient)


def test_recipient_refuses_other_key_sizes() -> None:
    with pytest.raises(ConfigError):
        Recipient(rsa.generate_private_key(65537, 3072), ephemeral_nsm())
