"""Wire encoding of the attested channel (protocol version 1): pure functions, no state.

Every channel message travels in one transport frame (u32 big-endian length, then the
payload; see `docs/transport.md`). The first payload byte is the message type. The exact
layouts are normative and documented in `docs/channel-protocol.md` section 2; this module
is the reference encoder/decoder and the only place that slices bytes.

Parsers raise `RemoteProtocolError` (reason `unexpected_message` or `too_large`) for any
malformed input and never anything else: the fuzz tests prove it.
"""

from __future__ import annotations

import dataclasses
import enum
import struct

from nitroguard.errors import Reason, RemoteProtocolError

__all__ = [
    "CLIENT_HELLO_MAGIC",
    "MAX_CIPHERTEXT",
    "MAX_DOCUMENT",
    "MAX_EXTENSIONS",
    "MAX_HANDSHAKE_MESSAGE",
    "MAX_PLAINTEXT",
    "RANDOM_SIZE",
    "SHARE_SIZE",
    "SIGNATURE_SIZE",
    "AlertCode",
    "ClientHello",
    "InnerType",
    "MessageType",
    "ServerHello",
    "Suite",
    "decode_alert",
    "decode_client_finished",
    "decode_client_hello",
    "decode_server_hello",
    "encode_alert",
    "encode_client_finished",
    "encode_client_hello",
    "encode_server_hello",
    "message_type",
]

#: Identifies a nitroguard channel ClientHello, so stray traffic is rejected at byte 1.
CLIENT_HELLO_MAGIC = b"NGCH"
#: Size of the client and server randoms (the client random is the per-connection
#: freshness challenge: ATT-4 asks for >= 16 bytes, 32 recommended).
RANDOM_SIZE = 32
#: X25519 public keys (RFC 7748).
SHARE_SIZE = 32
#: Ed25519 signatures (RFC 8032).
SIGNATURE_SIZE = 64
#: The NSM response buffer is 12 KiB (spec/nsm-protocol.md); 16 KiB leaves headroom and
#: matches the verifier's pre-decode limit.
MAX_DOCUMENT = 16 * 1024
#: Opaque ClientHello extension block (reserved for later versions, ignored by v1).
MAX_EXTENSIONS = 1024
#: Largest list of versions or suites a ClientHello may offer.
MAX_OFFERS = 16
#: Largest application payload in one record (64 KiB: one record per 64 KiB write).
MAX_PLAINTEXT = 64 * 1024
#: inner type byte + plaintext + 16-byte AEAD tag.
MAX_CIPHERTEXT = 1 + MAX_PLAINTEXT + 16
#: Largest handshake message (a ServerHello with a maximal document).
MAX_HANDSHAKE_MESSAGE = 1 + 2 + 2 + RANDOM_SIZE + SHARE_SIZE + 4 + MAX_DOCUMENT + SIGNATURE_SIZE


class MessageType(enum.IntEnum):
    """First byte of every channel message."""

    CLIENT_HELLO = 0x01
    SERVER_HELLO = 0x02
    CLIENT_FINISHED = 0x03
    ALERT = 0x15
    RECORD = 0x17


class InnerType(enum.IntEnum):
    """First byte of a record's plaintext (encrypted, so invisible to the parent)."""

    DATA = 0x00
    KEY_UPDATE = 0x01
    CLOSE = 0x02


class Suite(enum.IntEnum):
    """AEAD used for records. Key exchange (X25519), signature (Ed25519) and KDF
    (HKDF-SHA256) are fixed by the protocol version."""

    AES_256_GCM = 0x0001
    CHACHA20_POLY1305 = 0x0002


class AlertCode(enum.IntEnum):
    """Unauthenticated handshake abort codes (they can only end a handshake)."""

    VERSION_MISMATCH = 0x01
    SUITE_MISMATCH = 0x02
    MALFORMED = 0x03
    HANDSHAKE_FAILED = 0x04
    ATTESTATION_REJECTED = 0x05


def _fail(message: str, reason: Reason = Reason.UNEXPECTED_MESSAGE) -> RemoteProtocolError:
    return RemoteProtocolError(message, reason)


class _Reader:
    """Bounds-checked cursor over one message; every read checks the remaining length."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    def take(self, n: int, field: str) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise _fail(f"{self._what}: truncated in {field}")
        out = self._data[self._pos : end]
        self._pos = end
        return out

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        value: int = struct.unpack(">H", self.take(2, field))[0]
        return value

    def u32(self, field: str) -> int:
        value: int = struct.unpack(">I", self.take(4, field))[0]
        return value

    def end(self) -> None:
        if self._pos != len(self._data):
            raise _fail(f"{self._what}: {len(self._data) - self._pos} trailing bytes")


def message_type(message: bytes) -> MessageType:
    """Return the type of a channel message.

    Raises:
        RemoteProtocolError: `unexpected_message` if empty or of an unknown type.
    """
    if not message:
        raise _fail("empty channel message")
    try:
        return MessageType(message[0])
    except ValueError:
        raise _fail(f"unknown channel message type 0x{message[0]:02x}") from None


@dataclasses.dataclass(frozen=True, slots=True)
class ClientHello:
    """The client's first message."""

    versions: tuple[int, ...]
    """Protocol versions offered, most preferred first."""
    suites: tuple[int, ...]
    """AEAD suites offered, most preferred first (raw codes; unknown codes are allowed)."""
    random: bytes
    """32 fresh random bytes: the challenge the server's signature must cover."""
    share: bytes
    """The client's ephemeral X25519 public key."""
    extensions: bytes = b""
    """Opaque, reserved; ignored by version 1 but covered by the transcript."""


@dataclasses.dataclass(frozen=True, slots=True)
class ServerHello:
    """The server's reply: choices, ephemeral key, attestation document, signature."""

    version: int
    suite: int
    random: bytes
    share: bytes
    document: bytes
    """The NSM attestation document binding the server's long-lived signing key."""
    signature: bytes
    """Ed25519 over the signature context and SHA-256(ClientHello || ServerHello prefix)."""


def _offers(values: tuple[int, ...], what: str) -> bytes:
    if not 1 <= len(values) <= MAX_OFFERS:
        raise ValueError(f"{what}: between 1 and {MAX_OFFERS} entries")
    return bytes([len(values)]) + b"".join(struct.pack(">H", v) for v in values)


def encode_client_hello(hello: ClientHello) -> bytes:
    """Serialize a ClientHello (layout in docs/channel-protocol.md 2.2)."""
    if len(hello.random) != RANDOM_SIZE or len(hello.share) != SHARE_SIZE:
        raise ValueError("client random and share must be 32 bytes each")
    if len(hello.extensions) > MAX_EXTENSIONS:
        raise ValueError("extensions too large")
    return b"".join(
        (
            bytes([MessageType.CLIENT_HELLO]),
            CLIENT_HELLO_MAGIC,
            _offers(hello.versions, "versions"),
            _offers(hello.suites, "suites"),
            hello.random,
            hello.share,
            struct.pack(">H", len(hello.extensions)),
            hello.extensions,
        )
    )


def _read_offers(reader: _Reader, field: str) -> tuple[int, ...]:
    count = reader.u8(f"{field} count")
    if not 1 <= count <= MAX_OFFERS:
        raise _fail(f"ClientHello: {field} count {count} outside 1..{MAX_OFFERS}")
    return tuple(reader.u16(field) for _ in range(count))


def decode_client_hello(message: bytes) -> ClientHello:
    """Parse a ClientHello.

    Raises:
        RemoteProtocolError: `too_large` over the size limit, else `unexpected_message`
            for a wrong type or magic, bad counts, truncation or trailing bytes.
    """
    if len(message) > MAX_HANDSHAKE_MESSAGE:
        raise _fail("ClientHello larger than the handshake limit", Reason.TOO_LARGE)
    reader = _Reader(message, "ClientHello")
    if reader.u8("type") != MessageType.CLIENT_HELLO:
        raise _fail("expected a ClientHello")
    if reader.take(4, "magic") != CLIENT_HELLO_MAGIC:
        raise _fail("ClientHello: bad magic (not a nitroguard channel client)")
    versions = _read_offers(reader, "versions")
    suites = _read_offers(reader, "suites")
    random = reader.take(RANDOM_SIZE, "random")
    share = reader.take(SHARE_SIZE, "key share")
    ext_len = reader.u16("extensions length")
    if ext_len > MAX_EXTENSIONS:
        raise _fail(f"ClientHello: extensions of {ext_len} bytes exceed {MAX_EXTENSIONS}")
    extensions = reader.take(ext_len, "extensions")
    reader.end()
    return ClientHello(versions, suites, random, share, extensions)


def server_hello_prefix(hello: ServerHello) -> bytes:
    """The ServerHello bytes that precede the signature (what the transcript signs)."""
    if len(hello.random) != RANDOM_SIZE or len(hello.share) != SHARE_SIZE:
        raise ValueError("server random and share must be 32 bytes each")
    if not 1 <= len(hello.document) <= MAX_DOCUMENT:
        raise ValueError(f"attestation document must be 1..{MAX_DOCUMENT} bytes")
    return b"".join(
        (
            bytes([MessageType.SERVER_HELLO]),
            struct.pack(">HH", hello.version, hello.suite),
            hello.random,
            hello.share,
            struct.pack(">I", len(hello.document)),
            hello.document,
        )
    )


def encode_server_hello(hello: ServerHello) -> bytes:
    """Serialize a ServerHello (layout in docs/channel-protocol.md 2.3)."""
    if len(hello.signature) != SIGNATURE_SIZE:
        raise ValueError("signature must be 64 bytes")
    return server_hello_prefix(hello) + hello.signature


def decode_server_hello(message: bytes) -> ServerHello:
    """Parse a ServerHello.

    Raises:
        RemoteProtocolError: `too_large` over the size limit, else `unexpected_message`.
    """
    if len(message) > MAX_HANDSHAKE_MESSAGE:
        raise _fail("ServerHello larger than the handshake limit", Reason.TOO_LARGE)
    reader = _Reader(message, "ServerHello")
    if reader.u8("type") != MessageType.SERVER_HELLO:
        raise _fail("expected a ServerHello")
    version = reader.u16("version")
    suite = reader.u16("suite")
    random = reader.take(RANDOM_SIZE, "random")
    share = reader.take(SHARE_SIZE, "key share")
    doc_len = reader.u32("document length")
    if not 1 <= doc_len <= MAX_DOCUMENT:
        raise _fail(f"ServerHello: document length {doc_len} outside 1..{MAX_DOCUMENT}")
    document = reader.take(doc_len, "document")
    signature = reader.take(SIGNATURE_SIZE, "signature")
    reader.end()
    return ServerHello(version, suite, random, share, document, signature)


FINISHED_SIZE = 32


def encode_client_finished(verify_data: bytes) -> bytes:
    """Serialize a ClientFinished (type byte + 32-byte HMAC)."""
    if len(verify_data) != FINISHED_SIZE:
        raise ValueError("verify_data must be 32 bytes")
    return bytes([MessageType.CLIENT_FINISHED]) + verify_data


def decode_client_finished(message: bytes) -> bytes:
    """Parse a ClientFinished and return its verify_data.

    Raises:
        RemoteProtocolError: `unexpected_message` on a wrong type or length.
    """
    if len(message) != 1 + FINISHED_SIZE or message[0] != MessageType.CLIENT_FINISHED:
        raise _fail("malformed ClientFinished")
    return message[1:]


def encode_alert(code: AlertCode) -> bytes:
    """Serialize an alert (type byte + code byte)."""
    return bytes([MessageType.ALERT, code])


def decode_alert(message: bytes) -> int:
    """Parse an alert and return its raw code (unknown codes are returned as is).

    Raises:
        RemoteProtocolError: `unexpected_message` on a wrong type or length.
    """
    if len(message) != 2 or message[0] != MessageType.ALERT:
        raise _fail("malformed alert")
    return message[1]
