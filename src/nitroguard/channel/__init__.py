"""The attested encrypted channel between relying parties and the enclave.

Recipes: `connect(address, policy, roots=...)` / `serve(handler, address, nsm)` (asyncio,
over the hardened transport), `connect_blocking(...)`, and `DocumentCheck` (the client's
verifier + policy + MaxAge, with a document cache).

Sans-IO core (no sockets, no clock): `ClientConnection`, `ServerConnection`,
`ServerIdentity` (in `handshake`) and the record layer (`record`). The wire format,
key schedule and security argument are in `docs/channel-protocol.md`.

    from nitroguard import channel
    async with await channel.connect(address, policy.PCRs({...})) as ch: ...
"""

from __future__ import annotations

from nitroguard.channel._wire import MAX_PLAINTEXT, Suite
from nitroguard.channel.aio import ChannelServer, SecureChannel, connect, serve
from nitroguard.channel.auth import ClientKey, KeyAlgorithm, TrustedKeys
from nitroguard.channel.blocking import BlockingChannel, connect_blocking
from nitroguard.channel.events import CloseReceived, DataReceived, Event, HandshakeComplete
from nitroguard.channel.handshake import (
    CHANNEL_USER_DATA,
    DEFAULT_SUITES,
    SUPPORTED_VERSIONS,
    AttestedDocument,
    ClientConnection,
    ConnectionState,
    ServerConnection,
    ServerIdentity,
    channel_user_data,
)
from nitroguard.channel.record import RecordLimits
from nitroguard.channel.verify import DocumentCheck

__all__ = [
    "CHANNEL_USER_DATA",
    "DEFAULT_SUITES",
    "MAX_PLAINTEXT",
    "SUPPORTED_VERSIONS",
    "AttestedDocument",
    "BlockingChannel",
    "ChannelServer",
    "ClientConnection",
    "ClientKey",
    "CloseReceived",
    "ConnectionState",
    "DataReceived",
    "DocumentCheck",
    "Event",
    "HandshakeComplete",
    "KeyAlgorithm",
    "RecordLimits",
    "SecureChannel",
    "ServerConnection",
    "ServerIdentity",
    "Suite",
    "TrustedKeys",
    "channel_user_data",
    "connect",
    "connect_blocking",
    "serve",
]
