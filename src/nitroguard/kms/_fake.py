"""A fake AWS KMS that behaves like the real one where it matters for enclaves.

- KMS's JSON protocol (``X-Amz-Target: TrentService.<Op>``,
  ``application/x-amz-json-1.1``, base64 blobs, ``__type`` error names) over HTTPS, so
  an unmodified boto3 client works with ``endpoint_url`` and the fake's CA bundle.
- SigV4 checked on every request (`nitroguard.kms._sigv4`); access keys map to
  principals.
- Symmetric keys kept in a state directory (atomic writes): CreateKey, DescribeKey,
  Encrypt, Decrypt, GenerateDataKey, GenerateDataKeyPair, GenerateRandom, PutKeyPolicy,
  GetKeyPolicy.
- ``Recipient``: the attestation document is verified with nitroguard's `Verifier`
  against the configured roots (debug-mode documents verify; the key policy decides),
  its PCRs become the ``kms:RecipientAttestation:*`` condition keys, and the answer is
  ``CiphertextForRecipient`` in the real BER shape, never ``Plaintext``.
- Key policies are parsed and evaluated by `nitroguard.kms._policy`.

`FakeKmsService` is sans-IO (``handle(method, path, headers, body)``); `FakeKms`
serves it over HTTPS with the stdlib ``ThreadingHTTPServer``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import http.server
import ipaddress
import json
import logging
import os
import secrets
import socket
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from nitroguard._atomic import write_atomic
from nitroguard._resource import Resource
from nitroguard.errors import ConfigError, Error
from nitroguard.kms._envelope import seal_envelope
from nitroguard.kms._sigv4 import SigV4Error, verify_request

__all__ = [
    "FakeCredential",
    "FakeKms",
    "FakeKmsService",
    "KmsFault",
    "default_key_policy",
    "load_credentials",
]

log = logging.getLogger("nitroguard.kms.fake")

#: Largest request body accepted (a 256 KiB document in base64 plus the rest).
MAX_BODY = 512 * 1024
_BLOB_MAGIC = b"NGK1"
_DEFAULT_ACCOUNT = "111122223333"
_SYMMETRIC = "SYMMETRIC_DEFAULT"
_AGREEMENT = "KEY_AGREEMENT"
_CURVES: dict[str, ec.EllipticCurve] = {
    "ECC_NIST_P256": ec.SECP256R1(),
    "ECC_NIST_P384": ec.SECP384R1(),
}


def _public_der(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class KmsFault(Exception):
    """A KMS error answer: its ``__type`` name, HTTP status and message."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclasses.dataclass(frozen=True, slots=True)
class FakeCredential:
    """One entry of the credentials file."""

    access_key_id: str
    secret_access_key: str = dataclasses.field(repr=False)
    principal: str

    @property
    def account(self) -> str:
        parts = self.principal.split(":")
        return parts[4] if len(parts) > 4 and parts[4] else _DEFAULT_ACCOUNT


def load_credentials(path: str | os.PathLike[str]) -> list[FakeCredential]:
    """Read a credentials file: a JSON list of
    ``{"access_key_id", "secret_access_key", "principal"}``.

    Raises:
        ConfigError: unreadable or malformed file.
    """
    try:
        items = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read credentials file {path}: {exc}") from None
    out: list[FakeCredential] = []
    if not isinstance(items, list) or not items:
        raise ConfigError("credentials file must be a non-empty JSON list")
    for item in items:
        fields = ("access_key_id", "secret_access_key", "principal")
        if not isinstance(item, dict) or set(item) != set(fields):
            raise ConfigError(f"each credential must have exactly {', '.join(fields)}")
        if not all(isinstance(item[f], str) and item[f] for f in fields):
            raise ConfigError("credential fields must be non-empty strings")
        if not item["principal"].startswith("arn:aws:iam::"):
            raise ConfigError(f"principal must be an IAM ARN, got {item['principal']!r}")
        out.append(
            FakeCredential(item["access_key_id"], item["secret_access_key"], item["principal"])
        )
    return out


def default_key_policy(account: str) -> str:
    """The policy real KMS attaches when CreateKey has none ("Enable IAM User
    Permissions": the account root gets ``kms:*``, which delegates to IAM).

    The fake has no IAM: `_policy.evaluate` decides how the root principal matches
    callers of the same account (``docs/kms.md``).
    """
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Id": "key-default-1",
            "Statement": [
                {
                    "Sid": "Enable IAM User Permissions",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        },
        indent=2,
    )


def _policy_engine() -> Any:
    """`nitroguard.kms._policy` (parse_policy, evaluate, RequestContext), owned by the
    key-policy work; imported by name so that this module does not fix its types."""
    import importlib

    return importlib.import_module("nitroguard.kms._policy")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: object, name: str, *, limit: int) -> bytes:
    if not isinstance(value, str):
        raise KmsFault("ValidationException", f"{name} must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KmsFault("SerializationException", f"{name} is not valid base64") from None
    if not 1 <= len(raw) <= limit:
        raise KmsFault(
            "ValidationException",
            f"1 validation error detected: Value at '{name}' failed to satisfy constraint: "
            f"Member must have length between 1 and {limit}",
        )
    return raw


def _context(body: Mapping[str, Any]) -> dict[str, str]:
    ctx = body.get("EncryptionContext") or {}
    if not isinstance(ctx, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in ctx.items()
    ):
        raise KmsFault("ValidationException", "EncryptionContext must map strings to strings")
    return ctx


def _aad(ctx: Mapping[str, str]) -> bytes:
    return json.dumps(sorted(ctx.items()), separators=(",", ":")).encode()


class _KeyStore:
    """Keys as JSON files under ``<state>/keys`` (atomic replace, one lock)."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "keys"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.lock = threading.Lock()

    def path(self, key_id: str) -> Path:
        return self.dir / f"{key_id}.json"

    def load(self, key_id: str) -> dict[str, Any] | None:
        try:
            uuid.UUID(key_id)
        except ValueError:
            return None
        try:
            data: dict[str, Any] = json.loads(self.path(key_id).read_text())
        except FileNotFoundError:
            return None
        return data

    def save(self, record: Mapping[str, Any]) -> None:
        target = self.path(str(record["KeyId"]))
        # Key records hold key material: private to the owner (0600, as before).
        write_atomic(target, json.dumps(record).encode(), mode=0o600)


class FakeKmsService:
    """The fake KMS's request handling, without I/O.

    Args:
        state_dir: where keys live.
        credentials: the accepted access keys.
        roots: trust roots for attestation documents (default: AWS Root-G1).
        region: the region in key ARNs and the SigV4 scope.
        clock: current time (aware UTC datetimes).
        rng: randomness for keys, blobs and envelopes.
        unsafe_ignore_recipient: behave like moto (kms.md section 6): ignore
            ``Recipient`` and answer with the plaintext. Only for testing that clients
            refuse such replies.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        credentials: Sequence[FakeCredential],
        *,
        roots: Sequence[x509.Certificate] | None = None,
        region: str = "us-east-1",
        clock: Callable[[], dt.datetime] | None = None,
        rng: Callable[[int], bytes] = os.urandom,
        unsafe_ignore_recipient: bool = False,
    ) -> None:
        from nitroguard.attestation import Verifier

        if not credentials:
            raise ConfigError("the fake KMS needs at least one credential")
        self.state_dir = Path(state_dir)
        self.region = region
        self.store = _KeyStore(self.state_dir)
        self._secrets = {c.access_key_id: (c.secret_access_key, c.principal) for c in credentials}
        self.verifier = Verifier(roots)
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._rng = rng
        self.unsafe_ignore_recipient = unsafe_ignore_recipient
        self.requests: dict[str, int] = {}
        """Requests answered, per operation (successful or not)."""

    # -- HTTP entry point ----------------------------------------------------------------

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """Answer one request: returns (HTTP status, JSON body)."""
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            if method != "POST":
                raise KmsFault("UnknownOperationException", "only POST is supported", 404)
            target = lower.get("x-amz-target", "")
            if not target.startswith("TrentService."):
                raise KmsFault("UnknownOperationException", f"unknown target {target!r}")
            op = target.removeprefix("TrentService.")
            handler = self._OPS.get(op)
            if handler is None:
                raise KmsFault("UnknownOperationException", f"operation {op} is not supported")
            self.requests[op] = self.requests.get(op, 0) + 1
            if not lower.get("content-type", "").startswith("application/x-amz-json-1.1"):
                raise KmsFault("SerializationException", "Content-Type must be x-amz-json-1.1")
            try:
                caller = verify_request(
                    method,
                    path,
                    lower,
                    body,
                    secrets=self._secrets,
                    region=self.region,
                    service="kms",
                    now=self._clock(),
                )
            except SigV4Error as exc:
                status = 403 if exc.code == "InvalidSignatureException" else 400
                raise KmsFault(exc.code, exc.message, status) from None
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                raise KmsFault("SerializationException", "body is not JSON") from None
            if not isinstance(request, dict):
                raise KmsFault("SerializationException", "body must be a JSON object")
            answer = handler(self, caller.principal, request)
        except KmsFault as fault:
            log.info("%s", fault.code)
            return fault.status, json.dumps(
                {"__type": fault.code, "message": fault.message}
            ).encode()
        except Exception:  # a bug of ours: answer as KMS does, keep serving
            log.exception("fake KMS: internal error")
            return 500, json.dumps(
                {"__type": "KMSInternalException", "message": "internal error"}
            ).encode()
        return 200, json.dumps(answer).encode()

    # -- helpers -------------------------------------------------------------------------

    def _arn(self, account: str, key_id: str) -> str:
        return f"arn:aws:kms:{self.region}:{account}:key/{key_id}"

    def _key(self, key_ref: object) -> dict[str, Any]:
        if not isinstance(key_ref, str) or not key_ref:
            raise KmsFault("ValidationException", "KeyId is required")
        key_id = key_ref
        if key_ref.startswith("arn:"):
            parts = key_ref.split(":")
            if len(parts) != 6 or parts[3] != self.region or not parts[5].startswith("key/"):
                raise KmsFault("NotFoundException", f"Invalid keyId {key_ref}")
            key_id = parts[5].removeprefix("key/")
        elif key_ref.startswith("alias/"):
            raise KmsFault("NotFoundException", f"Alias {key_ref} is not found.")
        record = self.store.load(key_id)
        if record is None:
            raise KmsFault("NotFoundException", f"Key '{key_ref}' does not exist")
        return record

    def _authorize(
        self,
        principal: str,
        action: str,
        record: Mapping[str, Any],
        *,
        context: Mapping[str, str] | None = None,
        attested: Any = None,
    ) -> None:
        _policy = _policy_engine()
        conditions: dict[str, str | tuple[str, ...]] = {
            "aws:PrincipalArn": principal,
            "kms:CallerAccount": principal.split(":")[4],
        }
        if context is not None:
            for key, value in context.items():
                conditions[f"kms:EncryptionContext:{key}"] = value
            conditions["kms:EncryptionContextKeys"] = tuple(sorted(context))
        if attested is not None:
            # ImageSha384 is PCR0 (kms.md section 2); a verified document always has it.
            for index, value in attested.pcrs.items():
                if index == 0:
                    conditions["kms:RecipientAttestation:ImageSha384"] = value.hex()
                conditions[f"kms:RecipientAttestation:PCR{index}"] = value.hex()
        policy = _policy.parse_policy(record["Policy"])
        decision = _policy.evaluate(
            policy,
            _policy.RequestContext(principal=principal, action=action, conditions=conditions),
        )
        if not decision.allowed:
            raise KmsFault(
                "AccessDeniedException",
                f"User: {principal} is not authorized to perform: {action} on resource: "
                f"{record['Arn']} because "
                + (
                    "an explicit deny in the key policy"
                    if decision.explicit_deny
                    else "no resource-based policy allows the action"
                ),
            )

    def _recipient(self, request: Mapping[str, Any]) -> tuple[Any, rsa.RSAPublicKey] | None:
        """Verify the Recipient's document; returns (verified document, its RSA key)."""
        recipient = request.get("Recipient")
        if recipient is None or self.unsafe_ignore_recipient:
            return None
        if not isinstance(recipient, dict):
            raise KmsFault("ValidationException", "Recipient must be a structure")
        if recipient.get("KeyEncryptionAlgorithm") != "RSAES_OAEP_SHA_256":
            raise KmsFault(
                "ValidationException",
                "Recipient.KeyEncryptionAlgorithm must be RSAES_OAEP_SHA_256",
            )
        document = _unb64(
            recipient.get("AttestationDocument"), "recipient.attestationDocument", limit=262144
        )
        from nitroguard.attestation import policy

        try:
            verified = self.verifier.verify(
                document, policy.MaxAge(300), at=self._clock(), allow_debug=True
            )
        except Error as exc:
            raise KmsFault(
                "ValidationException", f"The attestation document is invalid: {exc.reason.value}"
            ) from None
        try:
            key = serialization.load_der_public_key(verified.public_key or b"")
        except ValueError:
            key = None
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size != 2048:
            raise KmsFault(
                "ValidationException",
                "The attestation document's public_key must be an RSA-2048 SubjectPublicKeyInfo",
            )
        return verified, key

    def _seal(self, key: rsa.RSAPublicKey, plaintext: bytes) -> str:
        return _b64(seal_envelope(key, plaintext, rng=self._rng))

    def _wrap(self, record: Mapping[str, Any], plaintext: bytes, ctx: Mapping[str, str]) -> bytes:
        nonce = self._rng(12)
        sealed = AESGCM(bytes.fromhex(record["Material"])).encrypt(nonce, plaintext, _aad(ctx))
        return _BLOB_MAGIC + str(record["KeyId"]).encode() + nonce + sealed

    def _metadata(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "AWSAccountId": record["Account"],
            "KeyId": record["KeyId"],
            "Arn": record["Arn"],
            "CreationDate": record["CreationDate"],
            "Enabled": True,
            "Description": record.get("Description", ""),
            "KeyUsage": record.get("KeyUsage", "ENCRYPT_DECRYPT"),
            "KeyState": "Enabled",
            "Origin": "AWS_KMS",
            "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": record.get("KeySpec", _SYMMETRIC),
            "KeySpec": record.get("KeySpec", _SYMMETRIC),
            "MultiRegion": False,
            **(
                {"KeyAgreementAlgorithms": ["ECDH"]}
                if record.get("KeyUsage") == _AGREEMENT
                else {"EncryptionAlgorithms": [_SYMMETRIC]}
            ),
        }

    @staticmethod
    def _require_usage(record: Mapping[str, Any], usage: str) -> None:
        if record.get("KeyUsage", "ENCRYPT_DECRYPT") != usage:
            raise KmsFault(
                "InvalidKeyUsageException",
                f"{record['Arn']} key usage is {record.get('KeyUsage', 'ENCRYPT_DECRYPT')}",
            )

    def _parse_policy(self, text: object) -> str:
        _policy = _policy_engine()
        if not isinstance(text, str) or not 1 <= len(text) <= 32768:
            raise KmsFault("ValidationException", "Policy must be a string of 1..32768 characters")
        try:
            _policy.parse_policy(text)
        except Error as exc:
            raise KmsFault("MalformedPolicyDocumentException", exc.message) from None
        return text

    # -- operations ----------------------------------------------------------------------

    def create_key(self, principal: str, request: Mapping[str, Any]) -> dict[str, Any]:
        # No IAM here: any authenticated principal may create keys (docs/kms.md).
        spec = request.get("KeySpec", request.get("CustomerMasterKeySpec", _SYMMETRIC))
        usage = request.get("KeyUsage", "ENCRYPT_DECRYPT")
        if (spec, usage) == (_SYMMETRIC, "ENCRYPT_DECRYPT"):
            material = self._rng(32).hex()
        elif spec in _CURVES and usage == _AGREEMENT:
            private = ec.generate_private_key(_CURVES[spec])
            material = private.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).hex()
        else:
            raise KmsFault(
                "UnsupportedOperationException",
                "the fake supports SYMMETRIC_DEFAULT keys for ENCRYPT_DECRYPT and "
                "ECC_NIST_P256/P384 keys for KEY_AGREEMENT",
            )
        account = principal.split(":")[4]
        text = request.get("Policy")
        policy = default_key_policy(account) if text is None else self._parse_policy(text)
        key_id = str(uuid.UUID(bytes=self._rng(16), version=4))
        record = {
            "KeyId": key_id,
            "Arn": self._arn(account, key_id),
            "Account": account,
            "CreationDate": self._clock().timestamp(),
            "Description": str(request.get("Description", "")),
            "KeySpec": spec,
            "KeyUsage": usage,
            "Material": material,
            "Policy": policy,
        }
        with self.store.lock:
            self.store.save(record)
        return {"KeyMetadata": self._metadata(record)}

    def describe_key(self, principal: str, request: Mapping[str, Any]) -> dict[str, Any]:
        record = self._key(request.get("KeyId"))
        self._authorize(principal, "kms:DescribeKey", record)
        return {"KeyMetadata": self._metadata(record)}

    def get_key_policy(self, principal: str, request: Mapping[str, Any]) -> dict[str, Any]:
        record = self._key(request.get("KeyId"))
        if request.get("PolicyName", "default") != "default":
            raise KmsFault("NotFoundException", "only the policy named default exists")
        self._authorize(principal, "kms:GetKeyPolicy", record)
        return {"Policy": record["Policy"], "PolicyName": "default"}

    def put_key_policy(self, principal: str, request: Mapping[str, Any]) -> dict[str, Any]:
        record = self._key(request.get("KeyId"))
        if request.get("PolicyName", "default") != "default":
            raise KmsFault("ValidationException", "PolicyName must be default")
        self._authorize(principal, "kms:PutKeyPolicy", record)
        text = self._parse_policy(request.get("Policy"))
        with self.store.lock:
            self.store.save({**record, "Policy": text})
        return {}

    def encrypt(self, principal: str, request: Mapping[str, Any]) -> dict[str, Any]:
        record = self._key(request.get("KeyId"))
        plaintext = _unb64(request.get("Plaintext"), "plaintext", limit=4096)
        ctx = _context(request)
        self._require_usage(record, "ENCRYPT_DECRYPT")
        self._authorize(principal, "kms:Encrypt", record, context=ctx)
        return {
            "CiphertextBlob": _b64(self._wrap(record, plaintext, ctx)),
            "KeyId": record["Arn"],
            "EncryptionAlgorithm": _SYMMETRIC,
        }

    def decrypt(self, principal: str, request: Mapping[str, Any]) -> dict[str, Any]:
        blob = _unb64(request.get("CiphertextBlob"), "ciphertextBlob", limit=6144)
        ctx = _context(request)
        if request.get("EncryptionAlgorithm", _SYMMETRIC) != _SYMMETRIC:
            raise KmsFault("IncorrectKeyException", "the key is SYMMETRIC_DEFAULT")
        if len(blob) < 4 + 36 + 12 + 16 or not blob.startswith(_BLOB_MAGIC):
            raise KmsFault("InvalidCiphertextException", "")
        key_id = blob[4:40].decode("ascii", "replace")
        record = self.store.load(key_id)
        if record is None or record.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT":
            raise KmsFault("InvalidCiphertextException", "")
        if "KeyId" in request:
            asked = self._key(request["KeyId"])
            if asked["KeyId"] != record["KeyId"]:
                raise KmsFault(
                    "IncorrectKeyException",
                    "The key ID in the request does not identify a CMK that can perform "
                    "this operation.",
                )
        recipient = self._recipient(request)
        self._authorize(
            principal,
            "kms:Decrypt",
            record,
            context=ctx,
            attested=recipient[0] if recipient else None,
        )
        try:
            plaintext = AESGCM(bytes.fromhex(record["Material"])).decrypt(
                blob[40:52], blob[52:], _aad(ctx)
            )
        except Exception:  # noqa: BLE001 - InvalidTag and friends: one answer, as KMS
            raise KmsFault("InvalidCiphertextException", "") from None
        answer: dict[str, Any] = {"KeyId": record["Arn"], "EncryptionAlgorithm": _SYMMETRIC}
        if recipient is not None:
            answer["CiphertextForRecipient"] = self._seal(recipient[1], plaintext)
        else:
            answer["Plaintext"] = _b64(plaintext)
        return answer

    def generate_data_key(self, principal: str, request: Mapping[str, Any]) -> dict[str, Any]:
        record = self._key(request.get("KeyId"))
        self._require_usage(record, "ENCRYPT_DECRYPT")
        ctx = _context(request)
        spec, count = request.get("KeySpec"), request.get("NumberOfBytes")
        if (spec is None) == (count is None):
            raise KmsFault("ValidationException", "exactly one of KeySpec and NumberOfBytes")
        if spec is not None:
            sizes = {"AES_256": 32, "AES_128": 16}
            if spec not in sizes:
                raise KmsFault("ValidationException", f"KeySpec {spec!r} is not valid")
            count = sizes[spec]
        if type(count) is not int or not 1 <= count <= 1024:
            raise KmsFault("ValidationException", "NumberOfBytes must be 1..1024")
        recipient = self._recipient(request)
        self._authorize(
            principal,
            "kms:GenerateDataKey",
            record,
            context=ctx,
            attested=recipient[0] if recipient else None,
        )
        plaintext = self._rng(count)
        answer: dict[str, Any] = {
            "CiphertextBlob": _b64(self._wrap(record, plaintext, ctx)),
            "KeyId": record["Arn"],
        }
        if recipient is not None:
            answer["CiphertextForRecipient"] = self._seal(recipient[1], plaintext)
        else:
            answer["Plaintext"] = _b64(plaintext)
        return answer

    def generate_data_key_pair(self, principal: str, request: Mapping[str, Any]) -> dict[str, Any]:
        record = self._key(request.get("KeyId"))
        self._require_usage(record, "ENCRYPT_DECRYPT")
        ctx = _context(request)
        spec = request.get("KeyPairSpec")
        curves: dict[str, ec.EllipticCurve] = {
            "ECC_NIST_P256": ec.SECP256R1(),
            "ECC_NIST_P384": ec.SECP384R1(),
        }
        if spec not in curves and spec != "RSA_2048":
            raise KmsFault("ValidationException", f"KeyPairSpec {spec!r} is not supported here")
        recipient = self._recipient(request)
        self._authorize(
            principal,
            "kms:GenerateDataKeyPair",
            record,
            context=ctx,
            attested=recipient[0] if recipient else None,
        )
        private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
            rsa.generate_private_key(65537, 2048)
            if spec == "RSA_2048"
            else ec.generate_private_key(curves[str(spec)])
        )
        der = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        answer: dict[str, Any] = {
            "PrivateKeyCiphertextBlob": _b64(self._wrap(record, der, ctx)),
            "PublicKey": _b64(public),
            "KeyId": record["Arn"],
            "KeyPairSpec": spec,
        }
        if recipient is not None:
            answer["CiphertextForRecipient"] = self._seal(recipient[1], der)
        else:
            answer["PrivateKeyPlaintext"] = _b64(der)
        return answer

    def generate_random(self, principal: str, request: Mapping[str, Any]) -> dict[str, Any]:
        # GenerateRandom has no key, hence no key policy; IAM would decide (none here).
        count = request.get("NumberOfBytes")
        if type(count) is not int or not 1 <= count <= 1024:
            raise KmsFault("ValidationException", "NumberOfBytes must be 1..1024")
        recipient = self._recipient(request)
        data = self._rng(count)
        if recipient is not None:
            return {"CiphertextForRecipient": self._seal(recipient[1], data)}
        return {"Plaintext": _b64(data)}

    def get_public_key(self, principal: str, request: Mapping[str, Any]) -> dict[str, Any]:
        record = self._key(request.get("KeyId"))
        self._require_usage(record, _AGREEMENT)
        self._authorize(principal, "kms:GetPublicKey", record)
        return {
            "KeyId": record["Arn"],
            "PublicKey": _b64(_public_der(self._agreement_key(record))),
            "KeySpec": record["KeySpec"],
            "KeyUsage": _AGREEMENT,
            "KeyAgreementAlgorithms": ["ECDH"],
        }

    def derive_shared_secret(self, principal: str, request: Mapping[str, Any]) -> dict[str, Any]:
        record = self._key(request.get("KeyId"))
        if request.get("KeyAgreementAlgorithm") != "ECDH":
            raise KmsFault("ValidationException", "KeyAgreementAlgorithm must be ECDH")
        self._require_usage(record, _AGREEMENT)
        peer_der = _unb64(request.get("PublicKey"), "publicKey", limit=8192)
        private = self._agreement_key(record)
        try:
            peer = serialization.load_der_public_key(peer_der)
        except ValueError:
            peer = None
        if not isinstance(peer, ec.EllipticCurvePublicKey) or peer.curve.name != (
            private.curve.name
        ):
            raise KmsFault("ValidationException", f"PublicKey must be a {record['KeySpec']} key")
        recipient = self._recipient(request)
        self._authorize(
            principal,
            "kms:DeriveSharedSecret",
            record,
            attested=recipient[0] if recipient else None,
        )
        secret = private.exchange(ec.ECDH(), peer)
        answer: dict[str, Any] = {
            "KeyId": record["Arn"],
            "KeyAgreementAlgorithm": "ECDH",
            "KeyOrigin": "AWS_KMS",
        }
        if recipient is not None:
            answer["CiphertextForRecipient"] = self._seal(recipient[1], secret)
        else:
            answer["SharedSecret"] = _b64(secret)
        return answer

    @staticmethod
    def _agreement_key(record: Mapping[str, Any]) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_der_private_key(bytes.fromhex(record["Material"]), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):  # pragma: no cover - we wrote it
            raise KmsFault("KMSInternalException", "corrupt key", 500)
        return key

    _OPS: ClassVar[
        dict[str, Callable[[FakeKmsService, str, Mapping[str, Any]], dict[str, Any]]]
    ] = {
        "CreateKey": create_key,
        "DescribeKey": describe_key,
        "GetKeyPolicy": get_key_policy,
        "PutKeyPolicy": put_key_policy,
        "Encrypt": encrypt,
        "Decrypt": decrypt,
        "GenerateDataKey": generate_data_key,
        "GenerateDataKeyPair": generate_data_key_pair,
        "GenerateRandom": generate_random,
        "GetPublicKey": get_public_key,
        "DeriveSharedSecret": derive_shared_secret,
    }


# ------------------------------------------------------------------------------ TLS + HTTP


def make_tls(host: str, region: str, now: dt.datetime) -> tuple[bytes, bytes, bytes]:
    """A fresh CA and server certificate: (CA PEM, server chain PEM, server key PEM).

    The certificate covers `host`, ``localhost``, 127.0.0.1 and ``kms.<region>.amazonaws.com``.
    """
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nitroguard fake KMS CA")])
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=30)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName(f"kms.{region}.amazonaws.com"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"kms.{region}")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(names))), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return (
        ca.public_bytes(pem),
        cert.public_bytes(pem),
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpsServer
    timeout = 10

    def do_POST(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit() or int(length) > MAX_BODY:
            status, body = (
                413,
                json.dumps(
                    {"__type": "ValidationException", "message": "Content-Length up to 512 KiB"}
                ).encode(),
            )
            self.close_connection = True
        else:
            data = self.rfile.read(int(length))
            headers = dict(self.headers.items())
            status, body = self.server.service.handle(self.command, self.path, headers, data)
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        log.debug("%s %s", self.address_string(), format % args)


class _HttpsServer(http.server.ThreadingHTTPServer):
    # Non-daemon threads, joined by server_close() once `drop_connections` has shut
    # every live connection: nothing outlives `FakeKms.close`.
    daemon_threads = False
    block_on_close = True
    service: FakeKmsService
    tls: ssl.SSLContext

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily) -> None:
        self.address_family = family
        self.live: set[socket.socket] = set()
        self.live_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the connection's own thread, bounded by a timeout,
        # so a silent client cannot stall accept().
        request.settimeout(10)
        # Headers and body go out in separate writes: without NODELAY, Nagle plus the
        # client's delayed ACK add ~40 ms to every answer.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.live_lock:
            self.live.add(request)
        try:
            tls = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            with self.live_lock:
                self.live.discard(request)
            return
        with self.live_lock:
            self.live.discard(request)
            self.live.add(tls)
        try:
            super().finish_request(tls, client_address)
        finally:
            with self.live_lock:
                self.live.discard(tls)
            tls.close()

    def drop_connections(self) -> None:
        with self.live_lock:
            for sock in self.live:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address)


class FakeKms(Resource):
    """The fake KMS served over HTTPS in a background thread (tests, demo, CLI).

    Use as a context manager::

        with FakeKms(tmp_path, roots=[nsm.pki.root_certificate]) as kms:
            client = boto3.client("kms", **kms.boto3_kwargs())

    Args:
        state_dir: keys and ``ca.pem`` are written here.
        roots: attestation trust roots (default AWS Root-G1).
        credentials: accepted access keys (default: one random credential for
            ``arn:aws:iam::111122223333:role/enclave``, see `credential`).
        host, port: where to listen (default 127.0.0.1, a free port).
        region: the region.
        clock, rng: injected time and randomness.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        roots: Sequence[x509.Certificate] | None = None,
        credentials: Sequence[FakeCredential] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = "us-east-1",
        clock: Callable[[], dt.datetime] | None = None,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if credentials is None:
            credentials = [
                FakeCredential(
                    "AKIA" + secrets.token_hex(8).upper(),
                    secrets.token_urlsafe(30),
                    f"arn:aws:iam::{_DEFAULT_ACCOUNT}:role/enclave",
                )
            ]
        self.credentials = list(credentials)
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.region = region
        self.service = FakeKmsService(
            self.state_dir, self.credentials, roots=roots, region=region, clock=clock, rng=rng
        )
        self._host, self._port = host, port
        self._server: _HttpsServer | None = None
        self._thread: threading.Thread | None = None
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    @property
    def credential(self) -> FakeCredential:
        """The first credential."""
        return self.credentials[0]

    @property
    def ca_path(self) -> Path:
        """The CA bundle to pass as ``verify=``."""
        return self.state_dir / "ca.pem"

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        if self._server is None:
            raise ConfigError("the fake KMS is not running")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def endpoint_url(self) -> str:
        """``https://HOST:PORT``."""
        host, port = self.address
        return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"

    def boto3_kwargs(self, credential: FakeCredential | None = None) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client("kms", **kwargs)``."""
        cred = credential or self.credential
        return {
            "region_name": self.region,
            "endpoint_url": self.endpoint_url,
            "verify": str(self.ca_path),
            "aws_access_key_id": cred.access_key_id,
            "aws_secret_access_key": cred.secret_access_key,
        }

    def start(self) -> FakeKms:
        """Generate the TLS identity, write ``ca.pem`` and start serving."""
        ca_pem, cert_pem, key_pem = make_tls(self._host, self.region, self._clock())
        write_atomic(self.ca_path, ca_pem)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        with tempfile.TemporaryDirectory() as tmp:
            chain, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            chain.write_bytes(cert_pem)
            key.write_bytes(key_pem)
            tls.load_cert_chain(chain, key)
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        server = _HttpsServer((self._host, self._port), family)
        server.service = self.service
        server.tls = tls
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.drop_connections()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Self:
        # Entering starts serving (the base class only returns self).
        self.start()
        return self
