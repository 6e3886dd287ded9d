"""`EnclaveApp` glue: fetch secrets from KMS at start-up; take credentials from the parent.

::

    secrets: dict[str, bytes] = {}
    app.on_start(kms.fetch_secrets(secrets, {"master": (blob, {"app": "vault"})},
                                   key_id=KEY_ARN, region="eu-west-1", ca_bundle=CA))

The hook runs after the start-up audit and NSM seeding (`EnclaveApp.start`), so the
recipient key is generated from a checked RNG, as `Recipient.generate` demands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from nitroguard.errors import ConfigError
from nitroguard.kms._client import Credentials, KmsClient
from nitroguard.kms._envelope import Recipient

__all__ = ["CredentialsBox", "fetch_secrets"]


class CredentialsBox:
    """Credentials pushed by the parent through an `EnclaveApp` operation.

    ``box.install(app, allow=...)`` registers the operation ``kms_credentials`` taking
    ``{"access_key_id", "secret_access_key", "session_token"?}``. Pushed credentials
    only let the enclave *sign* requests: the key policy's attestation conditions still
    decide, and the secret never appears in a log line or an error.
    """

    def __init__(self) -> None:
        self.current: Credentials | None = None
        self._listeners: list[Callable[[Credentials], None]] = []

    def subscribe(self, listener: Callable[[Credentials], None]) -> None:
        """Call `listener` with every new set of credentials (e.g. `KmsClient.set_credentials`)."""
        self._listeners.append(listener)

    def set(self, credentials: Credentials) -> None:
        """Store and announce new credentials."""
        self.current = credentials
        for listener in self._listeners:
            listener(credentials)

    def install(self, app: Any, name: str = "kms_credentials", *, allow: Any) -> None:
        """Register the push operation on `app` (an `EnclaveApp`).

        Args:
            allow: who may push (the ``allow=`` of `EnclaveApp.operation`): usually the
                operator's principal. ``ANYONE`` lets the parent choose which AWS
                identity signs the enclave's requests; the key policy still decides
                what that identity may decrypt, but say so by name if you want it.
        """

        @app.operation(name, allow=allow)  # type: ignore[untyped-decorator]
        async def push(args: Mapping[str, Any], ctx: Any) -> dict[str, bool]:
            del ctx  # who pushed is decided by allow=; the answer does not depend on it
            allowed = {"access_key_id", "secret_access_key", "session_token"}
            if not set(args) <= allowed:
                raise ConfigError(f"{name} takes {', '.join(sorted(allowed))}")
            key, secret = args.get("access_key_id"), args.get("secret_access_key")
            token = args.get("session_token")
            if not isinstance(key, str) or not isinstance(secret, str) or not key or not secret:
                raise ConfigError("access_key_id and secret_access_key must be non-empty text")
            if token is not None and not isinstance(token, str):
                raise ConfigError("session_token must be text")
            self.set(Credentials(key, secret, token))
            return {"ok": True}


def fetch_secrets(
    into: MutableMapping[str, bytes],
    wanted: Mapping[str, tuple[bytes, Mapping[str, str]]],
    **client_args: Any,
) -> Callable[[Any], Awaitable[None]]:
    """A start-up hook for `EnclaveApp.on_start` that decrypts `wanted` into `into`.

    Args:
        into: receives ``name -> plaintext``.
        wanted: ``name -> (ciphertext blob, encryption context)``.
        client_args: `KmsClient` keyword arguments (``key_id``, ``region``,
            ``endpoint_url``, ``ca_bundle``, ``credentials``, ...).
    """
    if not wanted:
        raise ConfigError("fetch_secrets needs at least one secret")

    async def hook(nsm: Any) -> None:
        # EnclaveApp.start runs hooks only after its audit and NSM seeding.
        recipient = await asyncio.to_thread(Recipient.generate, nsm, rng_check=lambda: None)
        client = KmsClient(recipient, **client_args)
        for name, (blob, context) in wanted.items():
            into[name] = await asyncio.to_thread(client.decrypt, blob, encryption_context=context)

    return hook
