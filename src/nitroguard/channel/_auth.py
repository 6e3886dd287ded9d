"""Channel-bound client authentication (sans-IO; docs/channel-protocol.md section 8).

The handshake authenticates the enclave only. A client proves who it is by signing
this session's `channel_binding` (the exporter value of section 3.3, never sent in
clear) with a key the enclave trusts, and sending the result as a `ClientAuth`
message inside the channel::

    u8[4]   magic = "NGCA"
    u8      version = 1
    u8      alg                 0x01 Ed25519, 0x02 ECDSA P-384 with SHA-384
    u8[32]  channel_binding     the value the client derived (checked first)
    u16     key_len (1..1024)   u8[key_len] SubjectPublicKeyInfo DER of the client key
    u16     sig_len (1..1024)   u8[sig_len] signature over
                                CLIENT_AUTH_CONTEXT || channel_binding

Nothing may follow. The server accepts it only if the binding equals its own for this
session (else `bad_binding`: a message made for another session), the key is in its
`TrustedKeys` (else `untrusted_client`), and the signature verifies (else
`bad_signature`).

No I/O here: `ClientKey.auth_message()` builds the bytes, `TrustedKeys.verify()` checks
them; the app runtime carries them in its ``authenticate`` request.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hmac
import re
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from nitroguard.errors import ChannelError, ConfigError, Reason, RemoteProtocolError

__all__ = [
    "BINDING_SIZE",
    "CLIENT_AUTH_CONTEXT",
    "ClientAuth",
    "ClientKey",
    "KeyAlgorithm",
    "TrustedKeys",
    "decode_client_auth",
    "encode_client_auth",
    "is_principal_name",
    "public_key_line",
]

#: Domain separation: what a client key signs is never a valid signature elsewhere.
CLIENT_AUTH_CONTEXT = b"nitroguard channel v1 client auth signature\x00"
BINDING_SIZE = 32
_MAGIC = b"NGCA"
_VERSION = 1
_MAX_FIELD = 1024
#: Principal names: no ``:``, which separates an app scheme from a hook's names
#: (``token:carol``), so a hook can never produce a trusted-key principal's name.
_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,128}")


class KeyAlgorithm(enum.IntEnum):
    """Client signature algorithms."""

    ED25519 = 0x01
    ECDSA_P384_SHA384 = 0x02


@dataclasses.dataclass(frozen=True, slots=True)
class ClientAuth:
    """A decoded `ClientAuth` message."""

    alg: KeyAlgorithm
    channel_binding: bytes
    public_key: bytes
    signature: bytes


def encode_client_auth(auth: ClientAuth) -> bytes:
    """Serialize a `ClientAuth` (see the module docstring for the layout)."""
    if len(auth.channel_binding) != BINDING_SIZE:
        raise ConfigError(f"channel_binding must be {BINDING_SIZE} bytes")
    for name, field in (("public_key", auth.public_key), ("signature", auth.signature)):
        if not 1 <= len(field) <= _MAX_FIELD:
            raise ConfigError(f"{name} must be 1..{_MAX_FIELD} bytes")
    return b"".join(
        (
            _MAGIC,
            bytes([_VERSION, int(auth.alg)]),
            auth.channel_binding,
            struct.pack(">H", len(auth.public_key)),
            auth.public_key,
            struct.pack(">H", len(auth.signature)),
            auth.signature,
        )
    )


def decode_client_auth(message: bytes) -> ClientAuth:
    """Parse a `ClientAuth` strictly.

    Raises:
        RemoteProtocolError: `unexpected_message` on any malformation.
    """

    def bad(why: str) -> RemoteProtocolError:
        return RemoteProtocolError(f"client auth: {why}", Reason.UNEXPECTED_MESSAGE)

    if not isinstance(message, bytes | bytearray):
        raise bad("not bytes")
    data = bytes(message)
    head = 4 + 2 + BINDING_SIZE
    if len(data) < head + 2 or data[:4] != _MAGIC:
        raise bad("bad magic or too short")
    if data[4] != _VERSION:
        raise bad(f"unsupported version {data[4]}")
    try:
        alg = KeyAlgorithm(data[5])
    except ValueError:
        raise bad(f"unknown algorithm 0x{data[5]:02x}") from None
    binding = data[6:head]
    pos = head
    fields: list[bytes] = []
    for name in ("public_key", "signature"):
        if pos + 2 > len(data):
            raise bad(f"truncated before {name}")
        (length,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if not 1 <= length <= _MAX_FIELD or pos + length > len(data):
            raise bad(f"{name} length {length} out of range")
        fields.append(data[pos : pos + length])
        pos += length
    if pos != len(data):
        raise bad(f"{len(data) - pos} trailing byte(s)")
    return ClientAuth(alg, binding, fields[0], fields[1])


def _signed(channel_binding: bytes) -> bytes:
    return CLIENT_AUTH_CONTEXT + channel_binding


PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def _spki(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _algorithm(key: PublicKey) -> KeyAlgorithm:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return KeyAlgorithm.ED25519
    if isinstance(key.curve, ec.SECP384R1):
        return KeyAlgorithm.ECDSA_P384_SHA384
    raise ConfigError(f"client keys must be Ed25519 or ECDSA P-384, not {key.curve.name}")


class ClientKey:
    """A client's signing key (Ed25519 or ECDSA P-384).

    Args:
        private_key: a `cryptography` Ed25519 or P-384 private key.

    Raises:
        ConfigError: another key type.
    """

    def __init__(self, private_key: PrivateKey) -> None:
        if not isinstance(private_key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise ConfigError("client keys must be Ed25519 or ECDSA P-384")
        self._key = private_key
        self.alg = _algorithm(private_key.public_key())
        self.public_key: bytes = _spki(private_key.public_key())
        """SubjectPublicKeyInfo DER (what the enclave's `TrustedKeys` lists)."""

    @classmethod
    def generate(cls, alg: KeyAlgorithm = KeyAlgorithm.ED25519) -> ClientKey:
        """A new random key."""
        if alg is KeyAlgorithm.ED25519:
            return cls(ed25519.Ed25519PrivateKey.generate())
        return cls(ec.generate_private_key(ec.SECP384R1()))

    @classmethod
    def from_pem(cls, data: bytes, password: bytes | None = None) -> ClientKey:
        """Load a PKCS#8 PEM private key.

        Raises:
            ConfigError: unreadable or of another type.
        """
        try:
            key = serialization.load_pem_private_key(data, password)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigError(f"cannot load the client key: {exc}") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise ConfigError("client keys must be Ed25519 or ECDSA P-384")
        return cls(key)

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (store it with care)."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def auth_message(self, channel_binding: bytes) -> bytes:
        """The `ClientAuth` message for the session whose binding is `channel_binding`.

        Pass `HandshakeComplete.channel_binding` of the session it will be sent on:
        it is valid there and nowhere else.
        """
        if len(channel_binding) != BINDING_SIZE:
            raise ConfigError(f"channel_binding must be {BINDING_SIZE} bytes")
        message = _signed(channel_binding)
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            signature = self._key.sign(message)
        else:
            signature = self._key.sign(message, ec.ECDSA(hashes.SHA384()))
        return encode_client_auth(ClientAuth(self.alg, channel_binding, self.public_key, signature))


def _load_public(value: bytes | str | PublicKey) -> PublicKey:
    if isinstance(value, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        return value
    try:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("-----BEGIN"):
                key = serialization.load_pem_public_key(text.encode())
            else:
                key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
        else:
            key = serialization.load_der_public_key(bytes(value))
    except (ValueError, TypeError, UnsupportedAlgorithm, binascii.Error) as exc:
        raise ConfigError(f"not a public key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise ConfigError("client keys must be Ed25519 or ECDSA P-384")
    return key


class TrustedKeys:
    """The client keys an enclave accepts, each with its principal name.

    Load them from measured configuration (a file baked into the image, so it is
    covered by PCR2) with `from_file`, or build them from keys the enclave fetched
    itself over an attested path.

    Args:
        keys: principal name -> public key (SPKI DER bytes, PEM or base64 DER text, or
            a `cryptography` public key). Names are 1..128 of ``A-Za-z0-9_.@:+-``.

    Raises:
        ConfigError: a bad name, a bad key, or one key listed under two names.
    """

    def __init__(self, keys: Mapping[str, bytes | str | PublicKey]) -> None:
        self._by_key: dict[bytes, tuple[str, PublicKey]] = {}
        for name, value in keys.items():
            untyped: object = name  # callers without type checking pass anything
            if not isinstance(untyped, str) or not _NAME.fullmatch(name):
                raise ConfigError(f"bad principal name {name!r}")
            key = _load_public(value)
            _algorithm(key)
            der = _spki(key)
            if der in self._by_key:
                raise ConfigError(f"the key of {name!r} is also listed for another principal")
            self._by_key[der] = (name, key)

    @classmethod
    def parse(cls, text: str) -> TrustedKeys:
        """Parse ``name base64-SPKI-DER`` lines (``#`` comments and blank lines ignored).

        Raises:
            ConfigError: a malformed line (its number is in the message).
        """
        keys: dict[str, str] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ConfigError(f"line {number}: expected 'name base64-key'")
            if parts[0] in keys:
                raise ConfigError(f"line {number}: principal {parts[0]!r} listed twice")
            keys[parts[0]] = parts[1]
        return cls(keys)

    @classmethod
    def from_file(cls, path: str | Path) -> TrustedKeys:
        """Read a `parse` file (e.g. baked into the enclave image)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read client keys {path}: {exc}") from None
        return cls.parse(text)

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(name for name, _ in self._by_key.values()))

    def items(self) -> list[tuple[str, bytes]]:
        """``(principal name, SubjectPublicKeyInfo DER)`` pairs, sorted by name."""
        return sorted((name, der) for der, (name, _) in self._by_key.items())

    def verify(self, message: bytes, channel_binding: bytes) -> str:
        """Check a `ClientAuth` received on the session whose binding is given.

        Returns:
            The authenticated principal's name.

        Raises:
            RemoteProtocolError: `unexpected_message` (malformed).
            ChannelError: `bad_binding` (made for another session), `untrusted_client`
                (key not listed) or `bad_signature`.
        """
        auth = decode_client_auth(message)
        # Binding first: a message replayed from another session fails here, whatever
        # key signed it (the value is secret to the two ends of that other session).
        if not hmac.compare_digest(auth.channel_binding, channel_binding):
            raise ChannelError(
                "client authentication was made for another session", Reason.BAD_BINDING
            )
        entry = self._by_key.get(auth.public_key)
        if entry is None:
            raise ChannelError("client key is not trusted", Reason.UNTRUSTED_CLIENT)
        name, key = entry
        if _algorithm(key) is not auth.alg:
            raise ChannelError("client auth algorithm does not match the key", Reason.BAD_SIGNATURE)
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(auth.signature, _signed(channel_binding))
            else:
                key.verify(auth.signature, _signed(channel_binding), ec.ECDSA(hashes.SHA384()))
        except InvalidSignature:
            raise ChannelError("client auth signature is invalid", Reason.BAD_SIGNATURE) from None
        return name


def is_principal_name(name: str) -> bool:
    """True for a valid principal name: 1-128 of ``A-Za-z0-9_.@+-`` (no ``:``)."""
    return _NAME.fullmatch(name) is not None


def public_key_line(name: str, key: ClientKey) -> str:
    """One `TrustedKeys.parse` line for `key` (what an operator adds to the file)."""
    return f"{name} {base64.b64encode(key.public_key).decode()}"
