"""Sans-IO handshake and connection state machines of the attested channel.

Theory of operation (docs/channel-protocol.md): the enclave owns a long-lived Ed25519
key, generated inside it after the RNG checks, and an NSM attestation document whose
`public_key` is that key and whose `user_data` is `CHANNEL_USER_DATA`. Per connection::

    client                                              server (enclave)
    ClientHello: versions, suites, random_c, X25519 share_c  --->
                 <---  ServerHello: version, suite, random_s, X25519 share_s,
                                    document, Ed25519 sig over H(CH || SH prefix)
    verify document (chain, PCRs, NotDebug, MaxAge); check binding; verify signature
    ClientFinished: HMAC(finished_key, H(CH || SH))      --->
    <==== AEAD records, both directions ====>

Freshness: the signature covers `random_c`, so a recorded ServerHello is useless to a
later client. Binding: the signing key is the one the NSM attested. Forward secrecy: the
traffic keys come from the ephemeral X25519 exchange only. Downgrade: the signed
transcript contains the client's offers verbatim.

No I/O here: callers feed frames with `receive_frame()`, read events, and drain
`data_to_send()`. Time and randomness are injected (`rng`); the attestation step is
injected too (the NSM, a `nitroguard.nsm.Attesting`, on the server side; `verify` on
the client side).

Errors: a malformed message raises `RemoteProtocolError`; a semantic handshake failure
raises `ChannelError` (reasons `version_mismatch`, `handshake_failed`,
`key_binding_mismatch`); the client's `verify` raises what it raises (normally
`VerificationError`/`PolicyError`); after the handshake every inbound failure is the
opaque `DecryptionError`. After any error the connection is in state ERROR for good.
"""

from __future__ import annotations

import enum
import hmac
import logging
import os
from collections.abc import Callable, Sequence
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from nitroguard.channel import _keys, _wire
from nitroguard.channel._events import CloseReceived, DataReceived, Event, HandshakeComplete
from nitroguard.channel._record import Message, RecordLimits, RecordReceiver, RecordSender
from nitroguard.channel._wire import AlertCode, InnerType, MessageType, Suite
from nitroguard.errors import (
    ChannelError,
    ConfigError,
    DecryptionError,
    Error,
    LocalProtocolError,
    Reason,
    RemoteProtocolError,
)
from nitroguard.nsm import Attesting

__all__ = [
    "CHANNEL_USER_DATA",
    "DEFAULT_SUITES",
    "MAX_NONCE",
    "MAX_SERVICE_NAME",
    "MIN_NONCE",
    "SUPPORTED_VERSIONS",
    "AttestedDocument",
    "ClientConnection",
    "ConnectionState",
    "ServerConnection",
    "ServerIdentity",
    "channel_user_data",
]

_log = logging.getLogger(__name__)

#: Protocol versions this implementation speaks, most preferred first.
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
#: AEADs offered by default, most preferred first (AES-256-GCM: hardware AES on both
#: Nitro x86 and Graviton; ChaCha20-Poly1305 as the constant-time software fallback).
DEFAULT_SUITES: tuple[Suite, ...] = (Suite.AES_256_GCM, Suite.CHACHA20_POLY1305)
#: `user_data` of every channel attestation document: says what the attested key is for.
CHANNEL_USER_DATA = b"nitroguard/channel/v1"
#: Largest service name bound in `user_data` (section 3.1 of docs/channel-protocol.md).
MAX_SERVICE_NAME = 128


def channel_user_data(service: str | None) -> bytes:
    """The `user_data` of the channel documents of `service`.

    ``CHANNEL_USER_DATA`` alone when `service` is None, else
    ``CHANNEL_USER_DATA + b":" + service`` (UTF-8): an app's documents name the app, so
    a client that expects "vault" never accepts another nitroguard app that happens to
    satisfy the same image policy (service-name binding).

    Raises:
        ConfigError: an empty, over-long or non-printable name.
    """
    if service is None:
        return CHANNEL_USER_DATA
    untyped: object = service  # callers without type checking pass anything
    if (
        not isinstance(untyped, str)
        or not 1 <= len(service) <= MAX_SERVICE_NAME
        or not service.isprintable()
    ):
        raise ConfigError(f"service name must be 1..{MAX_SERVICE_NAME} printable characters")
    return CHANNEL_USER_DATA + b":" + service.encode()


#: Nonce bounds for the nonce-only attestation endpoint (ATT-4 ENC: reject < 16 or > 512).
MIN_NONCE = 16
MAX_NONCE = 512

Rng = Callable[[int], bytes]


class AttestedDocument(Protocol):
    """What the client's `verify` must return (e.g. `attestation.VerifiedDocument`)."""

    @property
    def public_key(self) -> bytes | None: ...  # pragma: no cover - protocol

    @property
    def user_data(self) -> bytes | None: ...  # pragma: no cover - protocol


DocumentVerifier = Callable[[bytes], AttestedDocument]


class ConnectionState(enum.Enum):
    """States of a channel connection (one table for both roles)."""

    IDLE = "idle"
    AWAIT_SERVER_HELLO = "await_server_hello"
    AWAIT_CLIENT_HELLO = "await_client_hello"
    AWAIT_CLIENT_FINISHED = "await_client_finished"
    ESTABLISHED = "established"
    CLOSED = "closed"
    ERROR = "error"


def _spki(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class ServerIdentity:
    """The enclave's long-lived attested signing key and its current document.

    Create it inside the enclave with `generate()` only after the RNG checks passed
    (`EnclaveApp` does this), then `refresh()` the document periodically so that it
    stays younger than the clients' `MaxAge`.

    Args:
        signing_key: the Ed25519 private key (never leaves the enclave).
        service: the application's name, bound in every document's `user_data`
            (`channel_user_data`); None for the bare label.
    """

    def __init__(
        self, signing_key: ed25519.Ed25519PrivateKey, *, service: str | None = None
    ) -> None:
        self._key = signing_key
        self.service = service
        self.user_data: bytes = channel_user_data(service)
        """What every document of this identity carries in `user_data`."""
        self.public_key: bytes = _spki(signing_key.public_key())
        """SubjectPublicKeyInfo DER of the signing key (what `public_key` attests)."""
        self.document: bytes | None = None
        """The current attestation document, or None before the first `refresh()`."""

    @classmethod
    def generate(cls, rng: Rng = os.urandom, *, service: str | None = None) -> ServerIdentity:
        """Generate a fresh identity from 32 bytes of `rng`."""
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(rng(32)), service=service)

    def refresh(self, nsm: Attesting) -> bytes:
        """Obtain a new document binding this key from `nsm` and install it.

        Returns:
            The new document.

        Raises:
            NsmError: whatever `nsm.get_attestation` raises.
        """
        document = nsm.get_attestation(
            user_data=self.user_data, nonce=None, public_key=self.public_key
        )
        self.document = document
        return document

    def attest_nonce(self, nsm: Attesting, nonce: bytes) -> bytes:
        """A document for a caller-chosen nonce (the nonce-only endpoint, ATT-4/ATT-6).

        The caller controls ONLY the nonce: `public_key` and `user_data` are always this
        identity's own, so the enclave never attests data a caller supplied.

        Raises:
            ChannelError: `invalid_argument` when the nonce is not 16..512 bytes.
        """
        if not MIN_NONCE <= len(nonce) <= MAX_NONCE:
            raise ChannelError(
                f"nonce must be {MIN_NONCE}..{MAX_NONCE} bytes", Reason.INVALID_ARGUMENT
            )
        return nsm.get_attestation(
            user_data=self.user_data, nonce=nonce, public_key=self.public_key
        )

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature (used only for `_keys.signed_message` transcripts)."""
        return self._key.sign(message)


def _alert_error(code: int) -> ChannelError:
    reason = Reason.VERSION_MISMATCH if code == AlertCode.VERSION_MISMATCH else None
    try:
        name = AlertCode(code).name.lower()
    except ValueError:
        name = f"unknown alert 0x{code:02x}"
    return ChannelError(f"peer aborted the handshake: {name}", reason, alert=code)


class _Connection:
    """State, outbound queue and record layer shared by both roles."""

    _initial_state = ConnectionState.IDLE

    def __init__(self, rng: Rng, limits: RecordLimits | None) -> None:
        self._rng = rng
        self._limits = limits or RecordLimits()
        self._state = self._initial_state
        self._outbox: list[Message] = []
        self._sender: RecordSender | None = None
        self._receiver: RecordReceiver | None = None
        self.handshake: HandshakeComplete | None = None
        """The handshake result once established."""

    @property
    def state(self) -> ConnectionState:
        """The current state."""
        return self._state

    def data_to_send(self) -> list[Message]:
        """Drain the messages to write, in order (one transport frame each).

        Handshake messages are `bytes`; records are `bytearray`s built in place.
        """
        out, self._outbox = self._outbox, []
        return out

    def _require(self, *states: ConnectionState) -> None:
        if self._state not in states:
            raise LocalProtocolError(
                f"not allowed in state {self._state.value}", Reason.INVALID_OPERATION
            )

    def _install(
        self, suite: Suite, send_secret: bytes, recv_secret: bytes
    ) -> tuple[RecordSender, RecordReceiver]:
        self._sender = RecordSender(suite, send_secret, self._limits)
        self._receiver = RecordReceiver(suite, recv_secret, self._limits)
        return self._sender, self._receiver

    def _records(self) -> tuple[RecordSender, RecordReceiver]:
        if self._sender is None or self._receiver is None:
            raise LocalProtocolError("the handshake is not complete", Reason.INVALID_OPERATION)
        return self._sender, self._receiver

    def send_data(self, data: bytes) -> None:
        """Queue application data (split into records, rekeyed as needed).

        Raises:
            LocalProtocolError: `invalid_operation` unless established and not closed.
        """
        self._require(ConnectionState.ESTABLISHED, ConnectionState.CLOSED)
        self._outbox.extend(self._records()[0].seal_data(data))

    def close(self) -> None:
        """Queue the authenticated CLOSE (idempotent once established).

        Raises:
            LocalProtocolError: `invalid_operation` before the handshake completed.
        """
        self._require(ConnectionState.ESTABLISHED, ConnectionState.CLOSED)
        sender = self._records()[0]
        if not sender.closed:
            self._outbox.extend(sender.seal_close())
            self._update_closed()

    @property
    def peer_closed(self) -> bool:
        """True once the peer's authenticated CLOSE arrived."""
        return self._receiver is not None and self._receiver.closed

    @property
    def we_closed(self) -> bool:
        """True once our CLOSE was queued."""
        return self._sender is not None and self._sender.closed

    def _update_closed(self) -> None:
        if self.we_closed and self.peer_closed:
            self._state = ConnectionState.CLOSED

    def receive_frame(self, message: Message) -> list[Event]:
        """Process one inbound message (one transport frame payload).

        Returns:
            The resulting events (possibly none).

        Raises:
            RemoteProtocolError: malformed or unexpected handshake message.
            ChannelError: handshake failure (version, binding, signature, finished).
            DecryptionError: any record failure after the handshake (opaque).
            VerificationError: (client) the attestation document was rejected.
            LocalProtocolError: the connection already failed or is not started.
        """
        if self._state is ConnectionState.ERROR:
            raise LocalProtocolError("connection already failed", Reason.INVALID_OPERATION)
        try:
            if self._state in (ConnectionState.ESTABLISHED, ConnectionState.CLOSED):
                return self._receive_record(message)
            return self._receive_handshake(bytes(message))
        except Error:
            self._state = ConnectionState.ERROR
            raise

    def receive_eof(self) -> None:
        """Report that the peer closed the byte stream.

        Raises:
            DecryptionError: established but no authenticated CLOSE (truncation).
            RemoteProtocolError: `truncated` during the handshake.
        """
        if self._state in (ConnectionState.ESTABLISHED, ConnectionState.CLOSED):
            try:
                self._records()[1].eof()
            except DecryptionError:
                self._state = ConnectionState.ERROR
                raise
            return
        if self._state is not ConnectionState.ERROR:
            self._state = ConnectionState.ERROR
            raise RemoteProtocolError("connection closed during the handshake", Reason.TRUNCATED)

    def _receive_record(self, message: Message) -> list[Event]:
        inner, content = self._records()[1].open(message)
        if inner is InnerType.DATA:
            return [DataReceived(content)]
        if inner is InnerType.CLOSE:
            self._update_closed()
            return [CloseReceived()]
        return []

    def _receive_handshake(self, message: bytes) -> list[Event]:
        raise NotImplementedError


class ClientConnection(_Connection):
    """The relying party's side.

    Args:
        verify: called with the server's attestation document; must verify it (chain to
            the pinned root, signature, and the caller's policy: PCRs, NotDebug, MaxAge)
            and return the verified document, or raise.
        rng: randomness source (32-byte random and the ephemeral X25519 key).
        versions: versions to offer, most preferred first.
        suites: AEAD suites to offer, most preferred first.
        limits: record limits (must match the server's).
        service: the application name the document's `user_data` must carry
            (`channel_user_data`); None accepts only the bare label. Defaults to
            ``verify.service`` when `verify` is a `DocumentCheck`.
    """

    def __init__(
        self,
        verify: DocumentVerifier,
        *,
        rng: Rng = os.urandom,
        versions: Sequence[int] = SUPPORTED_VERSIONS,
        suites: Sequence[Suite] = DEFAULT_SUITES,
        limits: RecordLimits | None = None,
        service: str | None = None,
    ) -> None:
        super().__init__(rng, limits)
        if service is None:
            service = getattr(verify, "service", None)
        self._user_data = channel_user_data(service)
        if not versions or any(v not in SUPPORTED_VERSIONS for v in versions):
            raise ConfigError(f"versions must be a subset of {SUPPORTED_VERSIONS}")
        if not suites:
            raise ConfigError("at least one suite is required")
        self._verify = verify
        self._versions = tuple(versions)
        self._suites = tuple(Suite(s) for s in suites)
        self._ephemeral: x25519.X25519PrivateKey | None = None
        self._client_hello = b""

    def start(self) -> None:
        """Queue the ClientHello.

        Raises:
            LocalProtocolError: `invalid_operation` if already started.
        """
        self._require(ConnectionState.IDLE)
        self._ephemeral = x25519.X25519PrivateKey.from_private_bytes(self._rng(32))
        hello = _wire.ClientHello(
            versions=self._versions,
            suites=tuple(int(s) for s in self._suites),
            random=self._rng(_wire.RANDOM_SIZE),
            share=self._ephemeral.public_key().public_bytes_raw(),
        )
        self._client_hello = _wire.encode_client_hello(hello)
        self._outbox.append(self._client_hello)
        self._state = ConnectionState.AWAIT_SERVER_HELLO

    def _receive_handshake(self, message: bytes) -> list[Event]:
        if self._state is not ConnectionState.AWAIT_SERVER_HELLO:
            raise LocalProtocolError("call start() first", Reason.INVALID_OPERATION)
        kind = _wire.message_type(message)
        if kind is MessageType.ALERT:
            raise _alert_error(_wire.decode_alert(message))
        try:
            return self._on_server_hello(message, kind)
        except Error:
            # One alert for every abort, whatever the cause: the parent relays it and
            # must not learn whether the policy, the signature or the binding failed.
            self._outbox.append(_wire.encode_alert(AlertCode.HANDSHAKE_FAILED))
            raise

    def _on_server_hello(self, message: bytes, kind: MessageType) -> list[Event]:
        if kind is not MessageType.SERVER_HELLO:
            raise RemoteProtocolError(f"expected ServerHello, got {kind.name}")
        hello = _wire.decode_server_hello(message)
        if hello.version not in self._versions:
            # Downgrade protection, part 1: only a version we offered is acceptable.
            raise ChannelError(
                f"server chose version {hello.version}, not offered", Reason.VERSION_MISMATCH
            )
        if hello.suite not in self._suites:
            raise ChannelError(f"server chose suite 0x{hello.suite:04x}, not offered")
        # (1) The document: the injected verifier checks chain, signature and policy.
        document = self._verify(hello.document)
        # (2) Binding (ATT-6 CLI): the attested key is the one that signs the transcript,
        #     and the document names the service we meant to reach.
        server_key = _bound_key(document, self._user_data)
        # (3) Freshness and downgrade protection: the signature covers our ClientHello
        #     bytes verbatim (random_c, offers) and the ServerHello up to the signature.
        prefix = message[: len(message) - _wire.SIGNATURE_SIZE]
        signed = _keys.signed_message(_keys.transcript_hash(self._client_hello, prefix))
        try:
            server_key.verify(hello.signature, signed)
        except InvalidSignature:
            raise ChannelError(
                "the attested key did not sign this handshake (relay, key swap or replay)",
                Reason.HANDSHAKE_FAILED,
            ) from None
        # (4) Keys: ephemeral X25519 only (forward secrecy), salted with the transcript.
        if self._ephemeral is None:  # pragma: no cover - guarded by the state check
            raise LocalProtocolError("no ephemeral key", Reason.INVALID_OPERATION)
        shared = _exchange(self._ephemeral, hello.share)
        self._ephemeral = None
        transcript = _keys.transcript_hash(self._client_hello, message)
        c2s, s2c, finished_key, binding = _keys.session_secrets(shared, transcript)
        self._install(Suite(hello.suite), c2s, s2c)
        self._outbox.append(
            _wire.encode_client_finished(_keys.finished_mac(finished_key, transcript))
        )
        self._state = ConnectionState.ESTABLISHED
        self.handshake = HandshakeComplete(
            version=hello.version,
            suite=hello.suite,
            transcript_hash=transcript,
            channel_binding=binding,
            server_public_key=_spki(server_key),
            document=document,
        )
        return [self.handshake]


def _bound_key(document: AttestedDocument, user_data: bytes) -> ed25519.Ed25519PublicKey:
    public_key = document.public_key
    seen = document.user_data or b""
    if seen != user_data:
        label = seen.split(b":", 1)[0]
        if label == CHANNEL_USER_DATA:
            raise ChannelError(
                f"attestation document names service {seen[len(label) + 1 :]!r}, "
                f"expected {user_data[len(CHANNEL_USER_DATA) + 1 :]!r}",
                Reason.SERVICE_MISMATCH,
            )
        raise ChannelError(
            "attestation document user_data is not the channel label",
            Reason.KEY_BINDING_MISMATCH,
        )
    if not public_key:
        raise ChannelError("attestation document has no public_key", Reason.KEY_BINDING_MISMATCH)
    try:
        key = serialization.load_der_public_key(public_key)
    except (ValueError, TypeError, Error):
        key = None
    if not isinstance(key, ed25519.Ed25519PublicKey) or _spki(key) != public_key:
        raise ChannelError(
            "attestation document public_key is not an Ed25519 SubjectPublicKeyInfo",
            Reason.KEY_BINDING_MISMATCH,
        )
    return key


def _exchange(private: x25519.X25519PrivateKey, share: bytes) -> bytes:
    try:
        return private.exchange(x25519.X25519PublicKey.from_public_bytes(share))
    except ValueError:
        # RFC 7748 section 6.1: an all-zero output means a low-order point; abort.
        raise ChannelError("peer key share is a low-order point", Reason.HANDSHAKE_FAILED) from None


class ServerConnection(_Connection):
    """The enclave's side.

    Args:
        identity: the attested identity; its `document` must be set (`refresh()`).
        rng: randomness source (server random and the ephemeral X25519 key).
        versions: versions accepted, most preferred first (the client's order wins).
        suites: AEAD suites accepted.
        limits: record limits (must match the client's).
    """

    _initial_state = ConnectionState.AWAIT_CLIENT_HELLO

    def __init__(
        self,
        identity: ServerIdentity,
        *,
        rng: Rng = os.urandom,
        versions: Sequence[int] = SUPPORTED_VERSIONS,
        suites: Sequence[Suite] = DEFAULT_SUITES,
        limits: RecordLimits | None = None,
    ) -> None:
        super().__init__(rng, limits)
        if identity.document is None:
            raise ConfigError("the server identity has no attestation document yet (refresh() it)")
        self._identity = identity
        self._versions = tuple(versions)
        self._suites = tuple(Suite(s) for s in suites)
        self._expected_finished = b""
        self._pending: HandshakeComplete | None = None

    def _abort(self, code: AlertCode, error: Error) -> Error:
        self._outbox.append(_wire.encode_alert(code))
        return error

    def _receive_handshake(self, message: bytes) -> list[Event]:
        kind = _wire.message_type(message)
        if kind is MessageType.ALERT:
            raise _alert_error(_wire.decode_alert(message))
        if self._state is ConnectionState.AWAIT_CLIENT_HELLO:
            if kind is not MessageType.CLIENT_HELLO:
                raise self._abort(
                    AlertCode.MALFORMED,
                    RemoteProtocolError(f"expected ClientHello, got {kind.name}"),
                )
            try:
                hello = _wire.decode_client_hello(message)
            except RemoteProtocolError as exc:
                raise self._abort(AlertCode.MALFORMED, exc) from None
            return self._on_client_hello(message, hello)
        if kind is not MessageType.CLIENT_FINISHED:
            raise RemoteProtocolError(f"expected ClientFinished, got {kind.name}")
        verify_data = _wire.decode_client_finished(message)
        if not hmac.compare_digest(verify_data, self._expected_finished):
            raise ChannelError("ClientFinished does not match the transcript")
        if self._pending is None:  # pragma: no cover - guarded by the state check
            raise LocalProtocolError("no pending handshake", Reason.INVALID_OPERATION)
        self._state = ConnectionState.ESTABLISHED
        self.handshake = self._pending
        return [self._pending]

    def _on_client_hello(self, message: bytes, hello: _wire.ClientHello) -> list[Event]:
        version = next((v for v in hello.versions if v in self._versions), None)
        if version is None:
            raise self._abort(
                AlertCode.VERSION_MISMATCH,
                ChannelError(
                    f"no common version (offered {list(hello.versions)})",
                    Reason.VERSION_MISMATCH,
                ),
            )
        suite = next((Suite(s) for s in hello.suites if s in self._suites), None)
        if suite is None:
            raise self._abort(
                AlertCode.SUITE_MISMATCH,
                ChannelError(f"no common suite (offered {list(hello.suites)})"),
            )
        ephemeral = x25519.X25519PrivateKey.from_private_bytes(self._rng(32))
        try:
            shared = _exchange(ephemeral, hello.share)
        except ChannelError as exc:
            raise self._abort(AlertCode.HANDSHAKE_FAILED, exc) from None
        document = self._identity.document
        if document is None:  # pragma: no cover - checked in __init__
            raise LocalProtocolError("the server identity has no attestation document")
        unsigned = _wire.ServerHello(
            version=version,
            suite=suite,
            random=self._rng(_wire.RANDOM_SIZE),
            share=ephemeral.public_key().public_bytes_raw(),
            document=document,
            signature=b"\x00" * _wire.SIGNATURE_SIZE,
        )
        prefix = _wire.server_hello_prefix(unsigned)
        signature = self._identity.sign(
            _keys.signed_message(_keys.transcript_hash(message, prefix))
        )
        server_hello = prefix + signature
        transcript = _keys.transcript_hash(message, server_hello)
        c2s, s2c, finished_key, binding = _keys.session_secrets(shared, transcript)
        self._install(suite, s2c, c2s)
        self._expected_finished = _keys.finished_mac(finished_key, transcript)
        self._pending = HandshakeComplete(
            version=version,
            suite=suite,
            transcript_hash=transcript,
            channel_binding=binding,
            server_public_key=self._identity.public_key,
        )
        self._outbox.append(server_hello)
        self._state = ConnectionState.AWAIT_CLIENT_FINISHED
        return []
