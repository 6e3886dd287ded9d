"""Key schedule of the attested channel (docs/channel-protocol.md section 3).

Everything derives from one HKDF-SHA256 extract whose salt is the transcript hash, so
every key commits to the exact ClientHello and ServerHello bytes (versions and suites
offered, both randoms, both key shares, the attestation document and the signature).
"""

from __future__ import annotations

import hashlib
import hmac
import struct

__all__ = [
    "LABEL_PREFIX",
    "SIGNATURE_CONTEXT",
    "expand_label",
    "extract",
    "finished_mac",
    "next_secret",
    "session_secrets",
    "signed_message",
    "traffic_keys",
    "transcript_hash",
]

#: Every HKDF label starts with this, so no other protocol's labels can collide.
LABEL_PREFIX = b"nitroguard ch1 "
#: Prepended to the transcript hash before the server signs it (domain separation:
#: the attested key signs nothing else in this form).
SIGNATURE_CONTEXT = b"nitroguard channel v1 server transcript signature\x00"
_HASH_LEN = 32


def extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869 section 2.2) with SHA-256."""
    return hmac.digest(salt, ikm, "sha256")


def expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """HKDF-Expand(secret, info, length) with info = u16 length || u8 len || prefix+label.

    RFC 5869 section 2.3, single-block or multi-block; `length` <= 255 * 32.
    """
    full = LABEL_PREFIX + label
    info = struct.pack(">HB", length, len(full)) + full
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.digest(secret, block + info + bytes([counter]), "sha256")
        out += block
        counter += 1
    return out[:length]


def signed_message(transcript_hash: bytes) -> bytes:
    """The exact bytes the server's attested key signs."""
    return SIGNATURE_CONTEXT + transcript_hash


def transcript_hash(*messages: bytes) -> bytes:
    """SHA-256 over the concatenated handshake messages, as sent on the wire."""
    h = hashlib.sha256()
    for message in messages:
        h.update(message)
    return h.digest()


def traffic_keys(traffic_secret: bytes, key_size: int = 32) -> tuple[bytes, bytes]:
    """The AEAD key and the 12-byte IV base for one traffic secret."""
    return expand_label(traffic_secret, b"key", key_size), expand_label(traffic_secret, b"iv", 12)


def next_secret(traffic_secret: bytes) -> bytes:
    """The traffic secret that replaces this one after a KEY_UPDATE."""
    return expand_label(traffic_secret, b"traffic upd", _HASH_LEN)


def finished_mac(finished_key: bytes, transcript: bytes) -> bytes:
    """The ClientFinished verify_data: HMAC-SHA256(finished_key, transcript hash)."""
    return hmac.digest(finished_key, transcript, "sha256")


def session_secrets(shared: bytes, transcript: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(c->s traffic secret, s->c traffic secret, finished key, channel binding)."""
    master = extract(transcript, shared)
    return (
        expand_label(master, b"c ap traffic", _HASH_LEN),
        expand_label(master, b"s ap traffic", _HASH_LEN),
        expand_label(master, b"c finished", _HASH_LEN),
        expand_label(master, b"exporter", _HASH_LEN),
    )
