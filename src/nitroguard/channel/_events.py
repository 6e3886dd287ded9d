"""Events produced by the sans-IO channel connections (frozen, slotted, h11-style)."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["CloseReceived", "DataReceived", "Event", "HandshakeComplete"]


@dataclasses.dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """The handshake finished; application data may flow.

    On the client this is produced only after the attestation document verified, the
    server key bound in it signed this exact transcript, and keys were derived.
    """

    version: int
    """Negotiated protocol version."""
    suite: int
    """Negotiated AEAD suite (a `Suite` value)."""
    transcript_hash: bytes
    """SHA-256 over ClientHello || ServerHello."""
    channel_binding: bytes
    """32 bytes unique to this session (HKDF label "exporter"); equal on both sides."""
    server_public_key: bytes
    """The server's attested Ed25519 key (SubjectPublicKeyInfo DER)."""
    document: Any = None
    """Client only: the verified attestation document (whatever `verify` returned)."""


@dataclasses.dataclass(frozen=True, slots=True)
class DataReceived:
    """Authenticated application data from the peer (one record's payload)."""

    data: bytes | bytearray
    """The payload: a fresh `bytearray` from the record layer (no copy was made)."""


@dataclasses.dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer's authenticated CLOSE: it will send nothing more (no truncation)."""


Event = HandshakeComplete | DataReceived | CloseReceived
