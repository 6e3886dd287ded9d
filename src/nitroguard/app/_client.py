"""Clients for `EnclaveApp`: call operations and fetch nonce-fresh attestations."""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from typing import Any

from nitroguard._resource import AsyncResource, Resource
from nitroguard.app._protocol import decode_response, encode_request
from nitroguard.attestation import VerifiedDocument, policy
from nitroguard.channel._aio import SecureChannel
from nitroguard.channel._auth import ClientKey
from nitroguard.channel._blocking import BlockingChannel
from nitroguard.channel._handshake import channel_user_data
from nitroguard.channel._verify import DocumentCheck
from nitroguard.errors import ChannelError, Reason, RemoteProtocolError

__all__ = ["AppClient", "AsyncAppClient"]

_NONCE_SIZE = 32


def _check_fresh(
    check: DocumentCheck, document: bytes, nonce: bytes, session_key: bytes
) -> VerifiedDocument:
    # ATT-4: verify with the nonce we just drew (constant-time compare in the policy),
    # at the check's own clock (the same time source as the handshake's check);
    # ATT-6 CLI: the document must bind the very key that signed this session, for
    # the service we meant to reach.
    verified = check.verifier.verify(
        document,
        policy.AllOf([check.policy, policy.Nonce(nonce)]),
        at=check.now(),
        allow_debug=check.allow_debug,
    )
    if verified.user_data != channel_user_data(check.service):
        raise ChannelError(
            "fresh attestation names another service than the check's",
            Reason.SERVICE_MISMATCH,
        )
    if verified.public_key is None or not hmac.compare_digest(verified.public_key, session_key):
        raise ChannelError(
            "fresh attestation binds another key than this session's",
            Reason.KEY_BINDING_MISMATCH,
        )
    return verified


def _document(result: Any) -> bytes:
    document = result.get("document") if isinstance(result, dict) else None
    if not isinstance(document, bytes):
        raise RemoteProtocolError("attest: no document in the reply", Reason.UNEXPECTED_MESSAGE)
    return document


def _principal(result: Any) -> str:
    name = result.get("principal") if isinstance(result, dict) else None
    if not isinstance(name, str):
        raise RemoteProtocolError(
            "authenticate: no principal in the reply", Reason.UNEXPECTED_MESSAGE
        )
    return name


class AppClient(Resource):
    """Blocking client over an established `BlockingChannel`.

    Args:
        channel: from `nitroguard.channel.connect_blocking`.
        check: the `DocumentCheck` used for the handshake (reused for `attest`).
        max_message: largest reply accepted.
    """

    def __init__(
        self, channel: BlockingChannel, check: DocumentCheck, max_message: int = 1 << 20
    ) -> None:
        self.channel = channel
        self.check = check
        self._max = max_message

    def call(self, op: str, **args: Any) -> Any:
        """Run an operation and return its result.

        Raises:
            AppError: the app answered with an error.
            ChannelError / DecryptionError / TransportError: the channel failed.
        """
        reply = self.channel.request(encode_request(op, args))
        return decode_response(reply, max_size=self._max)

    def authenticate(self, key: ClientKey) -> str:
        """Prove this client's identity with `key`, bound to this very session.

        Returns:
            The principal name the enclave knows the key under.

        Raises:
            AppError: refused (`bad_binding`, `untrusted_client`, `bad_signature`);
                the enclave then closes the connection.
        """
        auth = key.auth_message(self.channel.handshake.channel_binding)
        return _principal(self.call("authenticate", scheme="key", credential=auth))

    def authenticate_with(self, scheme: str, credential: bytes) -> str:
        """Authenticate with an app-defined scheme (the enclave's `authenticator` hook).

        Bind `credential` to ``self.channel.handshake.channel_binding``.
        """
        return _principal(self.call("authenticate", scheme=scheme, credential=credential))

    def attest(self, rng: Callable[[int], bytes] = os.urandom) -> VerifiedDocument:
        """Fetch and verify a document for a fresh nonce bound to this session's key.

        The `nonce` is caller-chosen: it proves freshness to this caller and binds
        nothing else. Do not use the document's bytes as an identifier: ES384
        signatures are malleable (``s`` and ``n - s`` both verify), so the same
        statement has two valid encodings.
        """
        nonce = rng(_NONCE_SIZE)
        document = _document(self.call("attest", nonce=nonce))
        return _check_fresh(self.check, document, nonce, self.channel.handshake.server_public_key)

    def close(self) -> None:
        """Close the channel (authenticated CLOSE)."""
        self.channel.close()


class AsyncAppClient(AsyncResource):
    """Asyncio twin of `AppClient` over a `SecureChannel`."""

    def __init__(
        self, channel: SecureChannel, check: DocumentCheck, max_message: int = 1 << 20
    ) -> None:
        self.channel = channel
        self.check = check
        self._max = max_message

    async def call(self, op: str, **args: Any) -> Any:
        """Run an operation and return its result (see `AppClient.call`)."""
        await self.channel.send_message(encode_request(op, args))
        reply = await self.channel.recv_message()
        if reply is None:
            raise ChannelError("server closed the channel", Reason.CONNECTION_CLOSED)
        return decode_response(reply, max_size=self._max)

    async def authenticate(self, key: ClientKey) -> str:
        """Asyncio twin of `AppClient.authenticate`."""
        auth = key.auth_message(self.channel.handshake.channel_binding)
        return _principal(await self.call("authenticate", scheme="key", credential=auth))

    async def authenticate_with(self, scheme: str, credential: bytes) -> str:
        """Asyncio twin of `AppClient.authenticate_with`."""
        return _principal(await self.call("authenticate", scheme=scheme, credential=credential))

    async def attest(self, rng: Callable[[int], bytes] = os.urandom) -> VerifiedDocument:
        """Fetch and verify a nonce-fresh document bound to this session's key."""
        nonce = rng(_NONCE_SIZE)
        document = _document(await self.call("attest", nonce=nonce))
        return _check_fresh(self.check, document, nonce, self.channel.handshake.server_public_key)

    async def aclose(self) -> None:
        """Close the channel (authenticated CLOSE)."""
        await self.channel.aclose()
