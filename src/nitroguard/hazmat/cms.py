"""Strict, bounded BER reader and writer for exactly one CMS shape: KMS's
``CiphertextForRecipient`` (``../shared/spec/kms.md`` section 3).

This is not a general CMS or BER library. It accepts what AWS KMS emits and refuses
everything else with a precise `KmsError` reason:

- ``ContentInfo``, its ``[0]`` and ``EnvelopedData`` and ``EncryptedContentInfo``
  may use indefinite lengths (KMS does); nothing else may;
- ``EnvelopedData.version`` 2, no originatorInfo, no unprotectedAttrs;
- exactly one ``KeyTransRecipientInfo``, version 2, identified by a ``[0]``
  subject key identifier (`too_many_recipients` otherwise);
- key transport RSAES-OAEP with **explicit** SHA-256 and MGF1-SHA-256 parameters and
  no label (`missing_oaep_parameters` when absent: RFC 4055 would default to SHA-1;
  `unsupported_key_encryption` for PKCS#1 v1.5 or other hashes);
- content ``id-data`` under AES-256-CBC with a 16-byte IV
  (`unsupported_content_encryption` otherwise);
- ``encryptedContent`` as a primitive ``[0]`` or a constructed, indefinite ``[0]`` of
  primitive OCTET STRING chunks (the only place a constructed string is allowed);
- no trailing bytes, at most `MAX_ENVELOPE` bytes in, `MAX_DEPTH` levels,
  `MAX_NODES` elements and `MAX_CONTENT` bytes of ciphertext.

Nothing here decrypts: `nitroguard.kms` opens the envelope with `cryptography`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from nitroguard.errors import KmsError, Reason

__all__ = [
    "MAX_CONTENT",
    "MAX_DEPTH",
    "MAX_ENVELOPE",
    "MAX_NODES",
    "Envelope",
    "encode_envelope",
    "parse_envelope",
]

#: Plaintext is at most 4096 bytes (KMS limit), plus one block of PKCS#7 padding.
MAX_CONTENT = 4096 + 16
#: Total input cap: content, a 4096-bit wrapped key and headers fit well inside.
MAX_ENVELOPE = 16384
#: The real shape nests 11 levels (ContentInfo ... the MGF1 hash's NULL).
MAX_DEPTH = 12
#: Elements of any kind; the real shape has about 30 plus one per content chunk.
MAX_NODES = 512
#: The wrapped key: 256 bytes for RSA-2048, at most 512 (RSA-4096).
MAX_ENCRYPTED_KEY = 512
#: Subject key identifiers are 32 bytes in every KMS reply seen; allow 1..64.
MAX_KEY_ID = 64

# Identifier octets (universal class unless noted).
_INTEGER = 0x02
_OCTET_STRING = 0x04
_NULL = 0x05
_OID = 0x06
_SEQUENCE = 0x30
_SET = 0x31
_CTX0_PRIM = 0x80
_CTX0_CONS = 0xA0
_CTX1_CONS = 0xA1
_CTX2_CONS = 0xA2


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        rest = part
        chunk = [rest & 0x7F]
        rest >>= 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


OID_ENVELOPED_DATA = _oid("1.2.840.113549.1.7.3")
OID_DATA = _oid("1.2.840.113549.1.7.1")
OID_RSA_ENCRYPTION = _oid("1.2.840.113549.1.1.1")
OID_RSAES_OAEP = _oid("1.2.840.113549.1.1.7")
OID_MGF1 = _oid("1.2.840.113549.1.1.8")
OID_SHA256 = _oid("2.16.840.1.101.3.4.2.1")
OID_SHA1 = _oid("1.3.14.3.2.26")
OID_AES256_CBC = _oid("2.16.840.1.101.3.4.1.42")
OID_AES128_CBC = _oid("2.16.840.1.101.3.4.1.2")

_OID_NAMES = {
    OID_RSA_ENCRYPTION: "rsaEncryption (PKCS#1 v1.5)",
    OID_RSAES_OAEP: "RSAES-OAEP",
    OID_SHA1: "sha1",
    OID_SHA256: "sha256",
    OID_AES128_CBC: "aes128-CBC",
    OID_AES256_CBC: "aes256-CBC",
    OID_DATA: "id-data",
}


def _oid_name(raw: bytes) -> str:
    return _OID_NAMES.get(raw, "OID " + raw.hex())


class _Node(NamedTuple):
    # A NamedTuple, not a frozen dataclass: building ~30 of them is most of a parse.
    tag: int
    offset: int
    indefinite: bool
    content: bytes  # primitive contents ( b"" for constructed )
    children: tuple[_Node, ...]

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)


def _fail(message: str, reason: Reason = Reason.MALFORMED_ENVELOPE, **details: object) -> KmsError:
    return KmsError(message, reason, **details)


class _Parser:
    """Generic bounded BER TLV parser (single-byte tags, lengths up to 2 bytes)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.nodes = 0

    def node(self, pos: int, end: int, depth: int) -> tuple[_Node, int]:
        if depth > MAX_DEPTH:
            raise _fail(f"nesting deeper than {MAX_DEPTH} levels", Reason.TOO_DEEP, offset=pos)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _fail(f"more than {MAX_NODES} elements", Reason.TOO_LARGE, offset=pos)
        data = self.data
        if end - pos < 2:
            raise _fail("truncated element header", Reason.TRUNCATED, offset=pos)
        tag = data[pos]
        if tag & 0x1F == 0x1F:
            raise _fail("multi-byte tags are not used by KMS", offset=pos)
        first = data[pos + 1]
        cur = pos + 2
        length: int | None
        if first < 0x80:
            length = first
        elif first == 0x80:
            length = None
        elif first in (0x81, 0x82):
            n = first & 0x7F
            if end - cur < n:
                raise _fail("truncated length", Reason.TRUNCATED, offset=pos)
            length = int.from_bytes(data[cur : cur + n], "big")
            cur += n
            if length < 0x80 or (n == 2 and length < 0x100):
                raise _fail("non-minimal length encoding", offset=pos)
        else:
            raise _fail("length field longer than 2 bytes", Reason.TOO_LARGE, offset=pos)
        constructed = bool(tag & 0x20)
        if length is None:
            if not constructed:
                raise _fail("indefinite length on a primitive element", offset=pos)
            children: list[_Node] = []
            while True:
                if end - cur < 2:
                    raise _fail("missing end-of-contents", Reason.TRUNCATED, offset=pos)
                if data[cur] == 0 and data[cur + 1] == 0:
                    cur += 2
                    break
                child, cur = self.node(cur, end, depth + 1)
                children.append(child)
            return _Node(tag, pos, True, b"", tuple(children)), cur
        if end - cur < length:
            raise _fail("element runs past its container", Reason.TRUNCATED, offset=pos)
        stop = cur + length
        if not constructed:
            if tag == 0:
                raise _fail("end-of-contents where an element was expected", offset=pos)
            return _Node(tag, pos, False, data[cur:stop], ()), stop
        kids: list[_Node] = []
        while cur < stop:
            child, cur = self.node(cur, stop, depth + 1)
            kids.append(child)
        return _Node(tag, pos, False, b"", tuple(kids)), stop


def _expect(
    node: _Node, tag: int, what: str, *, count: int | None = None, indefinite_ok: bool = False
) -> tuple[_Node, ...]:
    if node.tag != tag:
        raise _fail(
            f"{what}: expected tag 0x{tag:02x}, found 0x{node.tag:02x}",
            offset=node.offset,
            element=what,
        )
    if node.indefinite and not indefinite_ok:
        raise _fail(f"{what}: indefinite length is not allowed here", offset=node.offset)
    if count is not None and len(node.children) != count:
        raise _fail(
            f"{what}: expected {count} elements, found {len(node.children)}",
            offset=node.offset,
            element=what,
        )
    return node.children


def _prim(node: _Node, tag: int, what: str) -> bytes:
    _expect(node, tag, what)
    return node.content


def _version(node: _Node, what: str, want: int) -> None:
    raw = _prim(node, _INTEGER, what)
    if raw != bytes([want]):
        raise _fail(
            f"{what} must be {want} (KMS's shape), found 0x{raw.hex()}",
            offset=node.offset,
            element=what,
        )


def _hash_alg(node: _Node, what: str) -> bytes:
    kids = _expect(node, _SEQUENCE, what)
    if not 1 <= len(kids) <= 2:
        raise _fail(f"{what}: malformed AlgorithmIdentifier", offset=node.offset)
    oid = _prim(kids[0], _OID, what)
    if len(kids) == 2 and (kids[1].tag != _NULL or kids[1].content):
        raise _fail(f"{what}: hash parameters must be NULL or absent", offset=node.offset)
    return oid


def _check_key_encryption(node: _Node) -> None:
    kids = _expect(node, _SEQUENCE, "keyEncryptionAlgorithm")
    if not 1 <= len(kids) <= 2:
        raise _fail("keyEncryptionAlgorithm: malformed AlgorithmIdentifier", offset=node.offset)
    oid = _prim(kids[0], _OID, "keyEncryptionAlgorithm")
    if oid == OID_RSA_ENCRYPTION:
        raise _fail(
            "key transport is PKCS#1 v1.5 (rsaEncryption); "
            "only RSAES-OAEP with SHA-256 is accepted",
            Reason.UNSUPPORTED_KEY_ENCRYPTION,
            algorithm=_oid_name(oid),
        )
    if oid != OID_RSAES_OAEP:
        raise _fail(
            f"key transport {_oid_name(oid)} is not RSAES-OAEP",
            Reason.UNSUPPORTED_KEY_ENCRYPTION,
            algorithm=_oid_name(oid),
        )
    params = kids[1] if len(kids) == 2 else None
    if params is None or params.tag == _NULL or (params.tag == _SEQUENCE and not params.children):
        raise _fail(
            "RSAES-OAEP parameters are absent: under RFC 4055 that means SHA-1 and MGF1-SHA-1; "
            "KMS always states SHA-256 explicitly",
            Reason.MISSING_OAEP_PARAMETERS,
        )
    fields = _expect(params, _SEQUENCE, "RSAES-OAEP-params")
    seen = {child.tag: child for child in fields}
    if len(seen) != len(fields) or set(seen) - {_CTX0_CONS, _CTX1_CONS, _CTX2_CONS}:
        raise _fail("RSAES-OAEP-params: unexpected or repeated fields", offset=params.offset)
    if _CTX2_CONS in seen:
        raise _fail(
            "RSAES-OAEP with a pSourceFunc (label) is not KMS's shape",
            Reason.UNSUPPORTED_KEY_ENCRYPTION,
        )
    if _CTX0_CONS not in seen or _CTX1_CONS not in seen:
        raise _fail(
            "RSAES-OAEP hashFunc or maskGenFunc is absent (would default to SHA-1)",
            Reason.MISSING_OAEP_PARAMETERS,
        )
    (hash_node,) = _expect(seen[_CTX0_CONS], _CTX0_CONS, "hashFunc", count=1)
    hash_oid = _hash_alg(hash_node, "hashFunc")
    if hash_oid != OID_SHA256:
        raise _fail(
            f"RSAES-OAEP hash is {_oid_name(hash_oid)}, not sha256",
            Reason.UNSUPPORTED_KEY_ENCRYPTION,
        )
    (mgf_node,) = _expect(seen[_CTX1_CONS], _CTX1_CONS, "maskGenFunc", count=1)
    mgf = _expect(mgf_node, _SEQUENCE, "maskGenFunc", count=2)
    mgf_oid = _prim(mgf[0], _OID, "maskGenFunc")
    mgf_hash = _hash_alg(mgf[1], "maskGenFunc hash")
    if mgf_oid != OID_MGF1 or mgf_hash != OID_SHA256:
        raise _fail(
            f"RSAES-OAEP mask generation is not MGF1-SHA-256 ({_oid_name(mgf_hash)})",
            Reason.UNSUPPORTED_KEY_ENCRYPTION,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed ``CiphertextForRecipient``; nothing here is authenticated.

    Attributes:
        recipient_key_id: the ``[0]`` subject key identifier (32 bytes from KMS).
        encrypted_key: the RSA-OAEP-wrapped AES-256 key.
        iv: the 16-byte AES-CBC IV.
        chunks: the encrypted content as it arrived (one element for a primitive ``[0]``).
        primitive_content: whether ``encryptedContent`` was a primitive ``[0]``.
    """

    recipient_key_id: bytes
    encrypted_key: bytes
    iv: bytes
    chunks: tuple[bytes, ...]
    primitive_content: bool = False

    key_encryption = "RSAES_OAEP_SHA_256"
    content_encryption = "AES_256_CBC"

    @property
    def content(self) -> bytes:
        """The encrypted content (chunks joined)."""
        return b"".join(self.chunks)

    def describe(self) -> dict[str, object]:
        """The JSON description printed by ``nitroguard kms inspect --json``."""
        return {
            "recipient_key_id": self.recipient_key_id.hex(),
            "key_encryption": self.key_encryption,
            "content_encryption": self.content_encryption,
            "encrypted_key_bytes": len(self.encrypted_key),
            "iv": self.iv.hex(),
            "content_chunks": len(self.chunks),
            "content_bytes": sum(len(c) for c in self.chunks),
        }


def parse_envelope(data: bytes) -> Envelope:
    """Parse a KMS ``CiphertextForRecipient`` strictly (see the module docstring).

    Raises:
        KmsError: `malformed_envelope`, `truncated`, `trailing_bytes`, `too_deep`,
            `too_large`, `missing_oaep_parameters`, `unsupported_key_encryption`,
            `unsupported_content_encryption`, `too_many_recipients`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise KmsError("envelope must be bytes", Reason.INVALID_ARGUMENT)
    data = bytes(data)
    if len(data) > MAX_ENVELOPE:
        raise _fail(f"envelope larger than {MAX_ENVELOPE} bytes", Reason.TOO_LARGE)
    parser = _Parser(data)
    root, end = parser.node(0, len(data), 0)
    if end != len(data):
        raise _fail(
            f"{len(data) - end} bytes after the envelope", Reason.TRAILING_BYTES, offset=end
        )
    # ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT content }
    ci = _expect(root, _SEQUENCE, "ContentInfo", count=2, indefinite_ok=True)
    if _prim(ci[0], _OID, "contentType") != OID_ENVELOPED_DATA:
        raise _fail(f"content type is {_oid_name(ci[0].content)}, not envelopedData")
    (ed_node,) = _expect(ci[1], _CTX0_CONS, "ContentInfo [0]", count=1, indefinite_ok=True)
    ed = _expect(ed_node, _SEQUENCE, "EnvelopedData", indefinite_ok=True)
    if len(ed) != 3:
        raise _fail(
            "EnvelopedData must be version, recipientInfos, encryptedContentInfo "
            "(no originatorInfo, no unprotectedAttrs)",
            offset=ed_node.offset,
        )
    _version(ed[0], "EnvelopedData.version", 2)
    recipients = _expect(ed[1], _SET, "RecipientInfos")
    if len(recipients) != 1:
        raise _fail(
            f"{len(recipients)} recipients; KMS sends exactly one",
            Reason.TOO_MANY_RECIPIENTS if recipients else Reason.MALFORMED_ENVELOPE,
            count=len(recipients),
        )
    if recipients[0].tag != _SEQUENCE:
        raise _fail(
            "the recipient is not a KeyTransRecipientInfo", Reason.UNSUPPORTED_KEY_ENCRYPTION
        )
    ktri = _expect(recipients[0], _SEQUENCE, "KeyTransRecipientInfo", count=4)
    _version(ktri[0], "KeyTransRecipientInfo.version", 2)
    key_id = _prim(ktri[1], _CTX0_PRIM, "rid [0] subjectKeyIdentifier")
    if not 1 <= len(key_id) <= MAX_KEY_ID:
        raise _fail(f"subject key identifier of {len(key_id)} bytes", offset=ktri[1].offset)
    _check_key_encryption(ktri[2])
    encrypted_key = _prim(ktri[3], _OCTET_STRING, "encryptedKey")
    if not 1 <= len(encrypted_key) <= MAX_ENCRYPTED_KEY:
        raise _fail(f"encryptedKey of {len(encrypted_key)} bytes", Reason.TOO_LARGE)
    iv, chunks, primitive = _encrypted_content(ed[2])
    return Envelope(key_id, encrypted_key, iv, chunks, primitive)


def _encrypted_content(node: _Node) -> tuple[bytes, tuple[bytes, ...], bool]:
    """EncryptedContentInfo: id-data, aes256-CBC with a 16-byte IV, and the content
    (primitive, or constructed chunks). Returns (iv, chunks, primitive)."""
    eci = _expect(node, _SEQUENCE, "EncryptedContentInfo", count=3, indefinite_ok=True)
    content_type = _prim(eci[0], _OID, "EncryptedContentInfo.contentType")
    if content_type != OID_DATA:
        raise _fail(f"encrypted content type is {_oid_name(content_type)}, not id-data")
    alg = _expect(eci[1], _SEQUENCE, "contentEncryptionAlgorithm")
    if not alg:
        raise _fail("contentEncryptionAlgorithm is empty", offset=eci[1].offset)
    alg_oid = _prim(alg[0], _OID, "contentEncryptionAlgorithm")
    if alg_oid != OID_AES256_CBC:
        raise _fail(
            f"content encryption is {_oid_name(alg_oid)}, not aes256-CBC",
            Reason.UNSUPPORTED_CONTENT_ENCRYPTION,
            algorithm=_oid_name(alg_oid),
        )
    if len(alg) != 2:
        raise _fail("aes256-CBC needs exactly one parameter, the IV", offset=eci[1].offset)
    iv = _prim(alg[1], _OCTET_STRING, "AES-CBC IV")
    if len(iv) != 16:
        raise _fail(f"AES-CBC IV of {len(iv)} bytes, not 16", offset=alg[1].offset)
    content = eci[2]
    if content.tag == _CTX0_PRIM:
        chunks: tuple[bytes, ...] = (content.content,)
        primitive = True
    else:
        pieces = _expect(content, _CTX0_CONS, "encryptedContent [0]", indefinite_ok=True)
        if not pieces:
            raise _fail("encryptedContent has no chunks", offset=content.offset)
        chunks = tuple(_prim(piece, _OCTET_STRING, "encryptedContent chunk") for piece in pieces)
        primitive = False
    size = sum(len(c) for c in chunks)
    if size == 0 or size % 16:
        raise _fail(f"encrypted content of {size} bytes is not a positive multiple of 16")
    if size > MAX_CONTENT:
        raise _fail(f"encrypted content over {MAX_CONTENT} bytes", Reason.TOO_LARGE, size=size)
    return iv, chunks, primitive


# ----------------------------------------------------------------------------- writer


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        head = bytes([tag, n])
    elif n < 0x100:
        head = bytes([tag, 0x81, n])
    else:
        head = bytes([tag, 0x82]) + n.to_bytes(2, "big")
    return head + content


def _indefinite(tag: int, *parts: bytes) -> bytes:
    return bytes([tag, 0x80]) + b"".join(parts) + b"\x00\x00"


_NULL_DER = b"\x05\x00"
_SHA256_ALG = _tlv(_SEQUENCE, _tlv(_OID, OID_SHA256) + _NULL_DER)
_OAEP_ALG = _tlv(
    _SEQUENCE,
    _tlv(_OID, OID_RSAES_OAEP)
    + _tlv(
        _SEQUENCE,
        _tlv(_CTX0_CONS, _SHA256_ALG)
        + _tlv(_CTX1_CONS, _tlv(_SEQUENCE, _tlv(_OID, OID_MGF1) + _SHA256_ALG)),
    ),
)


def encode_envelope(
    recipient_key_id: bytes,
    encrypted_key: bytes,
    iv: bytes,
    ciphertext: bytes,
    *,
    chunk_size: int = 1000,
    primitive_content: bool = False,
    key_encryption_algorithm: bytes | None = None,
    content_algorithm_oid: bytes = OID_AES256_CBC,
    version: int = 2,
) -> bytes:
    """Encode an envelope in KMS's exact shape (indefinite lengths, version 2, SKI rid,
    explicit OAEP parameters, content in `chunk_size`-byte chunks or a primitive ``[0]``).

    `key_encryption_algorithm` (a DER AlgorithmIdentifier), `content_algorithm_oid` and
    `version` exist to build the shapes other tools emit (PKCS#1 v1.5, OAEP without
    parameters, AES-128, version 0) for negative tests; the defaults are KMS's.

    Raises:
        ConfigError: a non-positive `chunk_size`.
    """
    from nitroguard.errors import ConfigError

    if chunk_size <= 0:
        raise ConfigError("chunk_size must be positive")
    ktri = _tlv(
        _SEQUENCE,
        _tlv(_INTEGER, b"\x02")
        + _tlv(_CTX0_PRIM, recipient_key_id)
        + (_OAEP_ALG if key_encryption_algorithm is None else key_encryption_algorithm)
        + _tlv(_OCTET_STRING, encrypted_key),
    )
    if primitive_content:
        content = _tlv(_CTX0_PRIM, ciphertext)
    else:
        pieces = [
            _tlv(_OCTET_STRING, ciphertext[i : i + chunk_size])
            for i in range(0, len(ciphertext), chunk_size)
        ]
        content = _indefinite(_CTX0_CONS, *pieces)
    eci = _indefinite(
        _SEQUENCE,
        _tlv(_OID, OID_DATA),
        _tlv(_SEQUENCE, _tlv(_OID, content_algorithm_oid) + _tlv(_OCTET_STRING, iv)),
        content,
    )
    enveloped = _indefinite(_SEQUENCE, _tlv(_INTEGER, bytes([version])), _tlv(_SET, ktri), eci)
    return _indefinite(
        _SEQUENCE, _tlv(_OID, OID_ENVELOPED_DATA), _indefinite(_CTX0_CONS, enveloped)
    )
