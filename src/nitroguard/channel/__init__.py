"""The attested encrypted channel between relying parties and the enclave.

Sans-IO core (no sockets, no clock): `ClientConnection`, `ServerConnection`,
`ServerIdentity` (in `handshake`) and the record layer (`record`). The wire format,
key schedule and security argument are in `docs/channel-protocol.md`.

    from nitroguard.channel import ClientConnection, ServerConnection, ServerIdentity
"""

from __future__ import annotations

from nitroguard.channel._wire import MAX_PLAINTEXT, Suite
from nitroguard.channel.events import CloseReceived, DataReceived, Event, HandshakeComplete
from nitroguard.channel.handshake import (
    CHANNEL_USER_DATA,
    DEFAULT_SUITES,
    SUPPORTED_VERSIONS,
    AttestedDocument,
    Attester,
    ClientConnection,
    ConnectionState,
    ServerConnection,
    ServerIdentity,
)
from nitroguard.channel.record import RecordLimits

__all__ = [
    "CHANNEL_USER_DATA",
    "DEFAULT_SUITES",
    "MAX_PLAINTEXT",
    "SUPPORTED_VERSIONS",
    "AttestedDocument",
    "Attester",
    "ClientConnection",
    "CloseReceived",
    "ConnectionState",
    "DataReceived",
    "Event",
    "HandshakeComplete",
    "RecordLimits",
    "ServerConnection",
    "ServerIdentity",
    "Suite",
]
