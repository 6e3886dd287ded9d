"""Open and seal KMS ``CiphertextForRecipient`` envelopes; the attested `Recipient`.

Opening is RSAES-OAEP (SHA-256, MGF1-SHA-256, empty label) of the content key, then
AES-256-CBC with PKCS#7 padding (``../shared/spec/kms.md`` sections 3-5). Every unwrap
or padding failure raises the same `KmsError` (`decryption_failed`, one fixed message):
whoever relays the envelope must not learn which step failed.

AES-CBC has no MAC and the recipient key is public (it sits in the attestation
document): anyone can *seal* an envelope to it. Authenticity therefore comes only from
TLS to KMS ending inside the enclave (`nitroguard.kms.KmsClient`, ``docs/kms.md``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from nitroguard.errors import ConfigError, InsecureEnvironment, KmsError, Reason
from nitroguard.hazmat.cms import Envelope, encode_envelope, parse_envelope
from nitroguard.nsm import Attesting

__all__ = [
    "KEY_ENCRYPTION_ALGORITHM",
    "Recipient",
    "key_identifier",
    "open_envelope",
    "seal_envelope",
]

#: The only algorithm KMS accepts in ``Recipient``.
KEY_ENCRYPTION_ALGORITHM = "RSAES_OAEP_SHA_256"
_OAEP = OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
_OPAQUE = "the envelope could not be opened"


def _spki(public_key: rsa.RSAPublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_identifier(public_key: rsa.RSAPublicKey) -> bytes:
    """The 32-byte subject key identifier our writer puts in the ``rid``.

    KMS's derivation is undocumented (plausibly SHA-256 of the key); the opener never
    depends on it, so a mismatch cannot lock anyone out.
    """
    return hashlib.sha256(_spki(public_key)).digest()


def open_envelope(private_key: rsa.RSAPrivateKey, data: bytes | Envelope) -> bytes:
    """Parse (strictly) and open an envelope with the recipient's private key.

    Raises:
        KmsError: a parse reason from `nitroguard.hazmat.cms.parse_envelope`, or
            `decryption_failed` for every unwrap, key-size or padding failure.
    """
    envelope = data if isinstance(data, Envelope) else parse_envelope(data)
    try:
        cek = private_key.decrypt(envelope.encrypted_key, _OAEP)
        if len(cek) != 32:
            raise ValueError
        decryptor = Cipher(algorithms.AES(cek), modes.CBC(envelope.iv)).decryptor()
        padded = decryptor.update(envelope.content) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except (ValueError, TypeError):
        raise KmsError(_OPAQUE, Reason.DECRYPTION_FAILED) from None


def seal_envelope(
    public_key: rsa.RSAPublicKey,
    plaintext: bytes,
    *,
    rng: Callable[[int], bytes] = os.urandom,
    chunk_size: int = 1000,
    primitive_content: bool = False,
) -> bytes:
    """Seal `plaintext` to `public_key` in KMS's exact shape (the fake KMS, tests).

    Raises:
        ConfigError: plaintext over 4096 bytes (KMS's limit) or a key that is not RSA.
    """
    key: object = public_key
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError("the recipient key must be RSA")
    if len(plaintext) > 4096:
        raise ConfigError("KMS plaintexts are at most 4096 bytes")
    cek, iv = rng(32), rng(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(bytes(plaintext)) + padder.finalize()
    encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return encode_envelope(
        key_identifier(public_key),
        public_key.encrypt(cek, _OAEP),
        iv,
        ciphertext,
        chunk_size=chunk_size,
        primitive_content=primitive_content,
    )


class Recipient:
    """The enclave's KMS recipient: an RSA-2048 key made once per boot, attested by the NSM.

    Create it with `Recipient.generate` after the RNG checks passed; pass
    `parameter()` as boto3's ``Recipient``; open replies with `open`. The private key
    never leaves this object.
    """

    def __init__(self, private_key: rsa.RSAPrivateKey, nsm: Attesting) -> None:
        key: object = private_key
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != 2048:
            raise ConfigError("the KMS recipient key must be RSA-2048 (kms.md section 1)")
        self._key = private_key
        self._nsm = nsm
        self.public_key_der = _spki(private_key.public_key())
        """The SubjectPublicKeyInfo DER put in every attestation document."""

    @classmethod
    def generate(cls, nsm: Attesting, *, rng_check: Callable[[], Any]) -> Recipient:
        """Run `rng_check`, then generate the key.

        Args:
            nsm: the NSM that attests the key.
            rng_check: called first; it must raise (or return ``False``) when the
                random number generator is not trustworthy yet (for example
                ``lambda: audit.require_secure_environment(probe, nsm)`` or the
                `EnclaveApp` start-up, which seeds the pool from the NSM). Required:
                a key made from an unseeded pool is the early-boot bug of kms.md 5.5.

        Raises:
            InsecureEnvironment: `rng_check` returned ``False``.
        """
        if rng_check() is False:
            raise InsecureEnvironment("RNG check failed: no KMS recipient key was generated")
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), nsm)

    def attestation(self, nonce: bytes | None = None) -> bytes:
        """A fresh attestation document whose ``public_key`` is this recipient's key."""
        return self._nsm.get_attestation(None, nonce, self.public_key_der)

    def parameter(self, nonce: bytes | None = None) -> dict[str, Any]:
        """The boto3 ``Recipient`` parameter, with a fresh document."""
        return {
            "KeyEncryptionAlgorithm": KEY_ENCRYPTION_ALGORITHM,
            "AttestationDocument": self.attestation(nonce),
        }

    def open(self, data: bytes | Envelope) -> bytes:
        """Open a ``CiphertextForRecipient`` (see `open_envelope`)."""
        return open_envelope(self._key, data)

    def __repr__(self) -> str:
        return f"Recipient(key sha256 {hashlib.sha256(self.public_key_der).hexdigest()[:16]})"
