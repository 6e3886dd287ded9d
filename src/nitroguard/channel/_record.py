"""Sans-IO AEAD record layer of the attested channel (docs/channel-protocol.md section 4).

Theory of operation: each direction has its own traffic secret, AEAD key and IV base.
Record number `seq` (starting at 0 for every key) is never sent: the nonce is
`iv XOR seq` (RFC 8446 section 5.3), so a reordered, duplicated, dropped or replayed
record fails authentication. The first plaintext byte is the inner type (DATA,
KEY_UPDATE, CLOSE), encrypted so the parent cannot tell them apart. Each key protects at
most `RecordLimits.max_records` records and `max_bytes` plaintext bytes; the sender
rotates before either limit and the receiver rejects anything beyond it. An
authenticated CLOSE record ends a direction; an EOF without it is a truncation.

Style point 4 (opaque errors, as Fernet): every inbound failure, whatever its cause
(bad tag, bad length, wrong order, replay, oversize, data after CLOSE, truncation),
raises the same `DecryptionError`, and the receiver stays failed afterwards.
"""

from __future__ import annotations

import dataclasses
import logging

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from nitroguard.channel import _keys
from nitroguard.channel._wire import MAX_CIPHERTEXT, MAX_PLAINTEXT, InnerType, MessageType, Suite
from nitroguard.errors import ConfigError, DecryptionError, LocalProtocolError, Reason

__all__ = ["Message", "RecordLimits", "RecordReceiver", "RecordSender"]

#: A channel message as produced or accepted here (records are built in place in a
#: `bytearray` to avoid copying 64 KiB payloads; nothing mutates them afterwards).
Message = bytes | bytearray

_log = logging.getLogger(__name__)

_RECORD = bytes([MessageType.RECORD])
#: The AEAD additional data: the record's (cleartext) message type byte.
_AAD = _RECORD
_TAG = 16
#: cryptography >= 45 can encrypt/decrypt into a caller's buffer (fewer copies).
_HAS_INTO = hasattr(AESGCM, "encrypt_into") and hasattr(AESGCM, "decrypt_into")


@dataclasses.dataclass(frozen=True, slots=True)
class RecordLimits:
    """Per-key usage limits (normative defaults in docs/channel-protocol.md 4.3).

    The defaults are far inside the AEAD bounds of RFC 8446 section 5.5 and
    draft-irtf-cfrg-aead-limits (AES-256-GCM: 2^24.5 records of 2^14 bytes, i.e.
    ~2^38.5 bytes): 2^20 records or 2^32 bytes per key. Both peers must use the same
    values; smaller ones exist for tests.
    """

    max_records: int = 1 << 20
    """Records (of any inner type) protected by one key, KEY_UPDATE included."""
    max_bytes: int = 1 << 32
    """Plaintext bytes protected by one key."""
    max_plaintext: int = MAX_PLAINTEXT
    """Largest DATA payload per record (never above the protocol's 64 KiB)."""

    def __post_init__(self) -> None:
        if self.max_records < 2 or self.max_bytes < 1:
            raise ConfigError("max_records must be >= 2 and max_bytes >= 1")
        if not 1 <= self.max_plaintext <= MAX_PLAINTEXT:
            raise ConfigError(f"max_plaintext must be in 1..{MAX_PLAINTEXT}")


def _aead(suite: Suite, key: bytes) -> AESGCM | ChaCha20Poly1305:
    if suite is Suite.AES_256_GCM:
        return AESGCM(key)
    return ChaCha20Poly1305(key)


class _Direction:
    """Key state for one direction: secret, AEAD, IV base, counters."""

    __slots__ = ("_aead", "_iv", "bytes", "generation", "secret", "seq", "suite")

    def __init__(self, suite: Suite, secret: bytes) -> None:
        self.suite = suite
        self.generation = 0
        self._install(secret)

    def _install(self, secret: bytes) -> None:
        self.secret = secret
        key, iv = _keys.traffic_keys(secret)
        self._aead = _aead(self.suite, key)
        self._iv = int.from_bytes(iv, "big")
        self.seq = 0
        self.bytes = 0

    def rotate(self) -> None:
        self._install(_keys.next_secret(self.secret))
        self.generation += 1

    def nonce(self) -> bytes:
        return (self._iv ^ self.seq).to_bytes(12, "big")


class RecordSender:
    """Seals outgoing records for one direction.

    Args:
        suite: the negotiated AEAD.
        secret: this direction's initial traffic secret.
        limits: per-key limits (must match the peer's).
    """

    def __init__(self, suite: Suite, secret: bytes, limits: RecordLimits | None = None) -> None:
        self._dir = _Direction(suite, secret)
        self._limits = limits or RecordLimits()
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once CLOSE was sealed; nothing more can be sent."""
        return self._closed

    @property
    def generation(self) -> int:
        """How many KEY_UPDATEs this sender has performed."""
        return self._dir.generation

    def _seal(self, inner: InnerType, content: bytes | memoryview) -> bytearray:
        d = self._dir
        size = len(content)
        # plaintext = content || inner type: the one copy of the payload.
        plaintext = bytearray(size + 1)
        plaintext[:size] = content
        plaintext[size] = inner
        if _HAS_INTO:
            # Encrypt straight into the message buffer behind the type byte.
            record = bytearray(1 + size + 1 + _TAG)
            record[0] = MessageType.RECORD
            d._aead.encrypt_into(d.nonce(), plaintext, _AAD, memoryview(record)[1:])
        else:  # pragma: no cover - older cryptography
            record = bytearray(_RECORD) + d._aead.encrypt(d.nonce(), bytes(plaintext), _AAD)
        d.seq += 1
        d.bytes += size
        return record

    def _key_update(self) -> bytearray:
        frame = self._seal(InnerType.KEY_UPDATE, b"")
        self._dir.rotate()
        _log.debug("channel: send key rotated (generation %d)", self._dir.generation)
        return frame

    def seal_data(self, data: bytes) -> list[Message]:
        """Encrypt application data into records (split at `max_plaintext`).

        A KEY_UPDATE record is inserted whenever the next record would reach a limit.

        Returns:
            The record messages to send, in order (one transport frame each).

        Raises:
            LocalProtocolError: `invalid_operation` after `seal_close()`.
        """
        if self._closed:
            raise LocalProtocolError("cannot send after close", Reason.INVALID_OPERATION)
        out: list[Message] = []
        limits = self._limits
        view = memoryview(data)
        for start in range(0, len(data), limits.max_plaintext):
            chunk = view[start : start + limits.max_plaintext]
            d = self._dir
            # NOTE: the last record number of a key is reserved for KEY_UPDATE.
            if d.seq >= limits.max_records - 1 or d.bytes + len(chunk) > limits.max_bytes:
                out.append(self._key_update())
            out.append(self._seal(InnerType.DATA, chunk))
        return out

    def seal_key_update(self) -> Message:
        """Force a key rotation now (also done automatically before the limits)."""
        if self._closed:
            raise LocalProtocolError("cannot send after close", Reason.INVALID_OPERATION)
        return self._key_update()

    def seal_close(self) -> list[Message]:
        """Seal the authenticated CLOSE record; the sender is closed afterwards.

        Raises:
            LocalProtocolError: `invalid_operation` if already closed.
        """
        if self._closed:
            raise LocalProtocolError("already closed", Reason.INVALID_OPERATION)
        out: list[Message] = []
        if self._dir.seq >= self._limits.max_records - 1:
            out.append(self._key_update())
        out.append(self._seal(InnerType.CLOSE, b""))
        self._closed = True
        return out


class RecordReceiver:
    """Opens incoming records for one direction; every failure is one `DecryptionError`.

    Args:
        suite: the negotiated AEAD.
        secret: this direction's initial traffic secret.
        limits: per-key limits (must match the peer's).
    """

    def __init__(self, suite: Suite, secret: bytes, limits: RecordLimits | None = None) -> None:
        self._dir = _Direction(suite, secret)
        self._limits = limits or RecordLimits()
        self._closed = False
        self._failed = False

    @property
    def closed(self) -> bool:
        """True once the peer's authenticated CLOSE was received."""
        return self._closed

    @property
    def generation(self) -> int:
        """How many KEY_UPDATEs the peer has performed."""
        return self._dir.generation

    def _reject(self, why: str) -> DecryptionError:
        # Style point 4: one opaque error; the cause is logged at debug level only.
        self._failed = True
        _log.debug("channel: record rejected (%s)", why)
        return DecryptionError()

    def open(self, message: Message) -> tuple[InnerType, Message]:
        """Authenticate and decrypt one record message.

        KEY_UPDATE is applied here (the next record must use the new key); CLOSE marks
        the receiver closed.

        Returns:
            (inner type, content). Content is empty for KEY_UPDATE and CLOSE; for DATA
            it is a fresh `bytearray` (no copy was made to strip the inner type).

        Raises:
            DecryptionError: for every failure, including anything after CLOSE or after
                a previous failure.
        """
        if self._failed:
            raise self._reject("receiver already failed")
        if self._closed:
            raise self._reject("record after close")
        if not message or message[0] != MessageType.RECORD:
            raise self._reject("not a record")
        if not 1 + 1 + _TAG <= len(message) <= 1 + MAX_CIPHERTEXT:
            raise self._reject("bad record length")
        d = self._dir
        if d.seq >= self._limits.max_records:
            raise self._reject("record limit exceeded without key update")
        content: Message
        try:
            if _HAS_INTO:
                content = bytearray(len(message) - 1 - _TAG)
                d._aead.decrypt_into(d.nonce(), memoryview(message)[1:], _AAD, content)
                inner = content[-1]
                del content[-1]  # truncating the end of a bytearray copies nothing
            else:  # pragma: no cover - older cryptography
                plaintext = d._aead.decrypt(d.nonce(), bytes(message[1:]), _AAD)
                inner, content = plaintext[-1], plaintext[:-1]
        except InvalidTag:
            raise self._reject("bad tag") from None
        d.seq += 1
        d.bytes += len(content)
        if d.bytes > self._limits.max_bytes or len(content) > self._limits.max_plaintext:
            raise self._reject("byte limit exceeded")
        if inner == InnerType.DATA:
            return InnerType.DATA, content
        if content:
            raise self._reject("control record with content")
        if inner == InnerType.KEY_UPDATE:
            d.rotate()
            return InnerType.KEY_UPDATE, b""
        if inner == InnerType.CLOSE:
            self._closed = True
            return InnerType.CLOSE, b""
        raise self._reject("unknown inner type")

    def eof(self) -> None:
        """Report the end of the byte stream.

        Raises:
            DecryptionError: if the peer's CLOSE was not received (truncation).
        """
        if not self._closed:
            raise self._reject("EOF before authenticated close (truncation)")
