"""The attested encrypted channel between relying parties and the enclave.

Recipes: `connect(address, check=...)` / `serve(handler, address, nsm)` (asyncio, over
the hardened transport), `connect_blocking(...)`, and `DocumentCheck` (the client's
verifier + policy + MaxAge, with a document cache). Client keys: `ClientKey`,
`TrustedKeys`, `public_key_line`.

Sans-IO core (no sockets, no clock): `ClientConnection`, `ServerConnection`,
`ServerIdentity` and the record layer (`RecordSender`, `RecordReceiver`). The wire
format, key schedule and security argument are in `docs/channel-protocol.md`.

    from nitroguard import channel
    async with await channel.connect(address, check=check) as ch: ...

Where things live: ``_handshake`` (the state machines), ``_record`` (AEAD records),
``_wire`` / ``_keys`` (message formats, key schedule), ``_auth`` (client keys),
``_verify`` (`DocumentCheck`), ``_messages`` (application messages over records),
``_aio`` / ``_blocking`` (the I/O adapters).
"""

from __future__ import annotations

from nitroguard.channel._aio import ChannelServer, SecureChannel, connect, serve
from nitroguard.channel._auth import ClientKey, KeyAlgorithm, TrustedKeys, public_key_line
from nitroguard.channel._blocking import BlockingChannel, connect_blocking
from nitroguard.channel._events import CloseReceived, DataReceived, Event, HandshakeComplete
from nitroguard.channel._handshake import (
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
from nitroguard.channel._record import RecordLimits, RecordReceiver, RecordSender
from nitroguard.channel._verify import DEFAULT_MAX_AGE, DocumentCheck, pinned_image_pcrs
from nitroguard.channel._wire import MAX_PLAINTEXT, Suite

__all__ = [
    "CHANNEL_USER_DATA",
    "DEFAULT_MAX_AGE",
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
    "RecordReceiver",
    "RecordSender",
    "SecureChannel",
    "ServerConnection",
    "ServerIdentity",
    "Suite",
    "TrustedKeys",
    "channel_user_data",
    "connect",
    "connect_blocking",
    "pinned_image_pcrs",
    "public_key_line",
    "serve",
]
