"""`FakeKmsService`: the fake KMS's request handling, without I/O (see `nitroguard.kms._fake`)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nitroguard.errors import ConfigError, Error
from nitroguard.kms._envelope import seal_envelope
from nitroguard.kms._fake_common import (
    _AGREEMENT,
    _BLOB_MAGIC,
    _CURVES,
    _SYMMETRIC,
    FakeCredential,
    KmsFault,
    _aad,
    _b64,
    _context,
    _KeyStore,
    _policy_engine,
    _public_der,
    _unb64,
    default_key_policy,
)
from nitroguard.kms._sigv4 import SigV4Error, verify_request

__all__ = ["FakeKmsService"]

log = logging.getLogger("nitroguard.kms.fake")


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
