"""`KmsClient`: KMS calls from inside the enclave, always with an attested ``Recipient``.

Needs the optional extra ``nitroguard[kms]`` (botocore). What it adds over a bare
boto3 client (``../shared/spec/kms.md`` section 5):

- ``Recipient`` is always sent (Decrypt, GenerateDataKey, GenerateDataKeyPair,
  GenerateRandom, DeriveSharedSecret); a reply that carries ``Plaintext``,
  ``PrivateKeyPlaintext`` or ``SharedSecret`` anyway is refused (`plaintext_in_reply`):
  it means the answer did not come from a KMS that honoured the attestation (moto does
  exactly this);
- the key is pinned: ``KeyId`` is sent on ``Decrypt`` (KMS then refuses a ciphertext
  under another key) and the reply's ``KeyId`` must be the pinned key
  (`key_id_mismatch`): a parent cannot substitute a ciphertext under a key the role may
  use without an attestation condition;
- ``Decrypt`` and ``GenerateDataKey*`` require an ``EncryptionContext`` unless the
  caller passes ``unsafe_no_encryption_context=True`` (wrapped-key substitution);
- TLS is botocore's, inside the enclave, verified against `ca_bundle` (or the system
  store) for the endpoint's host name; credentials are never logged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from nitroguard.errors import ConfigError, KmsError, Reason
from nitroguard.kms._envelope import Recipient

__all__ = ["Credentials", "DataKey", "DataKeyPair", "KmsClient"]

_PLAINTEXT_FIELDS = ("Plaintext", "PrivateKeyPlaintext", "SharedSecret")


@dataclasses.dataclass(frozen=True, slots=True)
class Credentials:
    """AWS credentials (pushed by the parent or read from the environment).

    `repr` shows only the access key id: secrets never reach a log line.
    """

    access_key_id: str
    secret_access_key: str = dataclasses.field(repr=False)
    session_token: str | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class DataKey:
    """A data key: `plaintext` opened inside the enclave, `ciphertext_blob` to store."""

    key_id: str
    plaintext: bytes = dataclasses.field(repr=False)
    ciphertext_blob: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class DataKeyPair:
    """A data key pair: the private key (DER) opened inside the enclave."""

    key_id: str
    key_pair_spec: str
    private_key_der: bytes = dataclasses.field(repr=False)
    public_key_der: bytes
    private_key_ciphertext_blob: bytes


def _key_matches(pinned: str, reply: str) -> bool:
    return reply == pinned or (not pinned.startswith("arn:") and reply.endswith(":key/" + pinned))


class KmsClient:
    """KMS operations that return secrets only to this enclave's `Recipient`.

    Args:
        recipient: the attested `Recipient` (one per boot).
        key_id: the pinned KMS key: its key ARN (recommended) or key id. Aliases are
            refused: anyone allowed ``kms:UpdateAlias`` could re-point them.
        region: the AWS region.
        endpoint_url: default ``https://kms.<region>.amazonaws.com``. In an enclave
            that name resolves (``/etc/hosts``) to the in-enclave TCP-to-vsock bridge,
            so TLS still ends here and checks the real host name (``docs/kms.md``).
        ca_bundle: the CA bundle baked into the image (default: the system store).
        credentials: explicit credentials; default botocore's chain (environment,
            IMDSv2 through the egress proxy, ...).
        connect_to: ``(host, port)`` of the in-enclave bridge, when ``/etc/hosts`` cannot
            point the KMS name at it: connections go there, while TLS still sends SNI
            for, and verifies the certificate against, ``kms.<region>.amazonaws.com``,
            and requests are signed for that host. Exclusive with `endpoint_url`.
        timeout: connect and read timeout in seconds.
        client: an already-built botocore KMS client (tests); the other connection
            arguments are then ignored.
    """

    def __init__(
        self,
        recipient: Recipient,
        *,
        key_id: str,
        region: str,
        endpoint_url: str | None = None,
        ca_bundle: str | None = None,
        credentials: Credentials | None = None,
        timeout: float = 10.0,
        connect_to: tuple[str, int] | None = None,
        client: Any = None,
    ) -> None:
        if not isinstance(recipient, Recipient):
            raise ConfigError("recipient must be a nitroguard.kms.Recipient")
        if not key_id or "alias/" in key_id:
            raise ConfigError("pin a key ARN or key id, not an alias (aliases can be re-pointed)")
        self.recipient = recipient
        self.key_id = key_id
        self.region = region
        if connect_to is not None and endpoint_url is not None:
            raise ConfigError("pass endpoint_url or connect_to, not both")
        self._connection: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "ca_bundle": ca_bundle,
            "timeout": timeout,
            "connect_to": connect_to,
        }
        if client is None:
            client = _make_client(region, credentials, **self._connection)
        self._client = client

    def set_credentials(self, credentials: Credentials) -> None:
        """Use new credentials (e.g. pushed by the parent) for the next calls."""
        self._client = _make_client(self.region, credentials, **self._connection)

    def close(self) -> None:
        """Close the pooled HTTPS connections."""
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

    # -- calls -------------------------------------------------------------------------

    def decrypt(
        self,
        ciphertext_blob: bytes,
        *,
        encryption_context: Mapping[str, str] | None = None,
        unsafe_no_encryption_context: bool = False,
    ) -> bytes:
        """Decrypt `ciphertext_blob` under the pinned key; the plaintext is opened here.

        Raises:
            ConfigError: no `encryption_context` and no explicit opt-out.
            KmsError: `kms_request_failed` (with ``code``), `plaintext_in_reply`,
                `key_id_mismatch`, or an envelope reason.
        """
        params = self._context(encryption_context, unsafe_no_encryption_context)
        reply = self._call(
            "decrypt",
            CiphertextBlob=bytes(ciphertext_blob),
            KeyId=self.key_id,
            EncryptionAlgorithm="SYMMETRIC_DEFAULT",
            **params,
        )
        self._check_key(reply)
        return self._open(reply)

    def generate_data_key(
        self,
        *,
        encryption_context: Mapping[str, str] | None = None,
        key_spec: str = "AES_256",
        unsafe_no_encryption_context: bool = False,
    ) -> DataKey:
        """GenerateDataKey under the pinned key; the plaintext key is opened here."""
        params = self._context(encryption_context, unsafe_no_encryption_context)
        reply = self._call("generate_data_key", KeyId=self.key_id, KeySpec=key_spec, **params)
        key = self._check_key(reply)
        return DataKey(key, self._open(reply), bytes(reply.get("CiphertextBlob", b"")))

    def generate_data_key_pair(
        self,
        *,
        encryption_context: Mapping[str, str] | None = None,
        key_pair_spec: str = "ECC_NIST_P256",
        unsafe_no_encryption_context: bool = False,
    ) -> DataKeyPair:
        """GenerateDataKeyPair; the private key (PKCS#8 DER) is opened here."""
        params = self._context(encryption_context, unsafe_no_encryption_context)
        reply = self._call(
            "generate_data_key_pair", KeyId=self.key_id, KeyPairSpec=key_pair_spec, **params
        )
        key = self._check_key(reply)
        return DataKeyPair(
            key,
            str(reply.get("KeyPairSpec", key_pair_spec)),
            self._open(reply),
            bytes(reply.get("PublicKey", b"")),
            bytes(reply.get("PrivateKeyCiphertextBlob", b"")),
        )

    def generate_random(self, number_of_bytes: int) -> bytes:
        """GenerateRandom (1..1024 bytes), returned only through the recipient.

        Use it as a second entropy source; it is only as trustworthy as the TLS
        session (a forged reply would hand the parent the bytes).
        """
        if type(number_of_bytes) is not int or not 1 <= number_of_bytes <= 1024:
            raise ConfigError("GenerateRandom takes 1..1024 bytes")
        reply = self._call("generate_random", NumberOfBytes=number_of_bytes)
        data = self._open(reply)
        if len(data) != number_of_bytes:
            raise KmsError(
                f"GenerateRandom returned {len(data)} bytes, asked {number_of_bytes}",
                Reason.KMS_REQUEST_FAILED,
            )
        return data

    def derive_shared_secret(self, public_key_der: bytes) -> bytes:
        """DeriveSharedSecret (ECDH) with the pinned KEY_AGREEMENT key and a peer's
        SubjectPublicKeyInfo DER; the shared secret is opened here."""
        reply = self._call(
            "derive_shared_secret",
            KeyId=self.key_id,
            KeyAgreementAlgorithm="ECDH",
            PublicKey=bytes(public_key_der),
        )
        self._check_key(reply)
        return self._open(reply)

    # -- checks ------------------------------------------------------------------------

    @staticmethod
    def _context(
        context: Mapping[str, str] | None, unsafe_no_encryption_context: bool
    ) -> dict[str, Any]:
        if context:
            pairs: list[tuple[object, object]] = list(context.items())
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs):
                raise ConfigError("encryption context keys and values must be strings")
            return {"EncryptionContext": dict(context)}
        if unsafe_no_encryption_context:
            return {}
        raise ConfigError(
            "an EncryptionContext binding purpose and object is required (it stops "
            "wrapped-key substitution); pass unsafe_no_encryption_context=True to opt out",
            Reason.MISSING_ENCRYPTION_CONTEXT,
        )

    def _call(self, method: str, **params: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        params["Recipient"] = self.recipient.parameter()
        try:
            reply: dict[str, Any] = getattr(self._client, method)(**params)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", "Unknown"))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise KmsError(
                f"KMS {method} failed: {code}: {err.get('Message', '')}",
                Reason.KMS_REQUEST_FAILED,
                code=code,
                status=status,
            ) from None
        except BotoCoreError as exc:
            # TLS failures (wrong certificate, wrong host name) land here.
            raise KmsError(
                f"KMS {method} failed: {type(exc).__name__}: {exc}",
                Reason.KMS_REQUEST_FAILED,
                code=type(exc).__name__,
            ) from None
        for name in _PLAINTEXT_FIELDS:
            if reply.get(name):
                raise KmsError(
                    f"the {method} reply carries {name} although Recipient was sent: "
                    "whatever answered did not honour the attestation",
                    Reason.PLAINTEXT_IN_REPLY,
                    field=name,
                )
        return reply

    def _check_key(self, reply: Mapping[str, Any]) -> str:
        key = reply.get("KeyId")
        if not isinstance(key, str) or not _key_matches(self.key_id, key):
            raise KmsError(
                f"the reply is for key {key!r}, not the pinned {self.key_id!r}",
                Reason.KEY_ID_MISMATCH,
                pinned=self.key_id,
                got=str(key),
            )
        return key

    def _open(self, reply: Mapping[str, Any]) -> bytes:
        blob: object = reply.get("CiphertextForRecipient")
        if not isinstance(blob, bytes | bytearray) or not blob:
            raise KmsError("the reply has no CiphertextForRecipient", Reason.MALFORMED_ENVELOPE)
        return self.recipient.open(bytes(blob))


def _make_client(
    region: str,
    credentials: Credentials | None,
    /,
    *,
    endpoint_url: str | None,
    ca_bundle: str | None,
    timeout: float,
    connect_to: tuple[str, int] | None,
) -> Any:
    try:
        import botocore.session
        from botocore.config import Config
    except ImportError:  # pragma: no cover - the extra is installed in dev and CI
        raise ConfigError("KmsClient needs botocore: pip install 'nitroguard[kms]'") from None
    session = botocore.session.Session()
    if credentials is not None:
        session.set_credentials(
            credentials.access_key_id, credentials.secret_access_key, credentials.session_token
        )
    name = f"kms.{region}.amazonaws.com"
    if connect_to is not None:
        host, port = connect_to
        endpoint_url = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": 1, "mode": "standard"},
    )
    client = session.create_client(
        "kms",
        region_name=region,
        endpoint_url=endpoint_url or f"https://{name}",
        verify=ca_bundle if ca_bundle is not None else True,
        config=config,
    )
    if connect_to is not None:
        _pin_host(client, name, ca_bundle, timeout)
    return client


def _pin_host(client: Any, name: str, ca_bundle: str | None, timeout: float) -> None:
    """Connect to the endpoint URL's address, but do TLS (SNI and certificate check) and
    SigV4 (``Host``) for `name`. Uses botocore's http session class, with urllib3's
    ``server_hostname``/``assert_hostname`` pool options."""
    from botocore.httpsession import URLLib3Session

    class _PinnedHostSession(URLLib3Session):  # type: ignore[misc]
        def _get_pool_manager_kwargs(self, **extra: Any) -> dict[str, Any]:
            kwargs: dict[str, Any] = super()._get_pool_manager_kwargs(**extra)
            kwargs.update(server_hostname=name, assert_hostname=name)
            return kwargs

    client._endpoint.http_session = _PinnedHostSession(
        verify=ca_bundle if ca_bundle is not None else True, timeout=(timeout, timeout)
    )

    def set_host(request: Any, **_: Any) -> None:
        request.headers["Host"] = name

    client.meta.events.register("before-sign.kms", set_host)
