"""The fake KMS's shared pieces: faults, credentials, default policy, blob helpers, key store.

Used by the sans-IO service (`nitroguard.kms._fake_service`) and the HTTPS server
(`nitroguard.kms._fake`).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nitroguard._atomic import write_atomic
from nitroguard.errors import ConfigError

__all__ = [
    "MAX_BODY",
    "FakeCredential",
    "KmsFault",
    "default_key_policy",
    "load_credentials",
]

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
