"""One connection of an `EnclaveApp`: the request loop, authentication and ``attest``.

Every request is decoded under the configured limits, then dispatched: the reserved
``authenticate`` (scheme ``key`` checks a channel-bound `ClientAuth` against
`TrustedKeys`; any other scheme goes to the app's hook; one attempt per connection)
and ``attest`` (ONLY a nonce, ATT-6; per-connection and app-wide budgets), or an app
operation if its ``allow=`` admits the caller. Refusals by a limit or by
authorization count as strikes; `max_strikes` of them close the connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

from nitroguard.app._authz import (
    ANYONE,
    AllowSpec,
    Authenticator,
    CallContext,
    Operation,
    Principal,
    allowed,
)
from nitroguard.app._config import AppConfig
from nitroguard.app._limits import Bucket, LogLimiter
from nitroguard.app._protocol import decode_request, encode_error, encode_result
from nitroguard.channel._aio import SecureChannel
from nitroguard.channel._auth import TrustedKeys, is_principal_name
from nitroguard.channel._handshake import MAX_NONCE, MIN_NONCE, ServerIdentity
from nitroguard.errors import ChannelError, Error, Reason
from nitroguard.nsm import ReadOnlyNsm

__all__ = ["Shared", "serve_channel"]

log = logging.getLogger("nitroguard.app")


@dataclasses.dataclass(slots=True)
class Shared:
    """State shared by every connection of one running app."""

    config: AppConfig
    identity: ServerIdentity
    nsm: ReadOnlyNsm
    nsm_slots: asyncio.Semaphore
    attest_app: Bucket
    logs: LogLimiter
    trusted: TrustedKeys | None
    ops: Mapping[str, tuple[Operation, AllowSpec | None]]
    authenticators: Mapping[str, Authenticator]
    counters: dict[str, int]
    """The app's counters (`EnclaveApp.counters`), updated in place."""
    clock: Callable[[], float]


class _Session:
    """Per-connection state: the caller, its attestation budget and its strikes."""

    __slots__ = ("attest", "channel", "principal", "strikes", "tried_auth")

    def __init__(self, channel: SecureChannel, attest: Bucket) -> None:
        self.channel = channel
        self.attest = attest
        self.principal: Principal | None = None
        self.strikes = 0
        self.tried_auth = False

    def context(self, op: str) -> CallContext:
        handshake = self.channel.handshake
        return CallContext(self.principal, handshake.channel_binding, handshake.transcript_hash, op)


class _Close(Exception):
    """Answer the request, then end the connection."""

    def __init__(self, error: Error) -> None:
        super().__init__(error.message)
        self.error = error


def _strike(session: _Session, shared: Shared, error: Error) -> Error:
    session.strikes += 1
    if session.strikes >= shared.config.max_strikes:
        shared.logs.limited(
            "strikes", "limit enforced: connection closed after %d refusals", session.strikes
        )
        raise _Close(error)
    return error


async def serve_channel(channel: SecureChannel, shared: Shared) -> None:
    config = shared.config
    session = _Session(channel, Bucket(config.attest_per_minute, config.attest_burst, shared.clock))
    while True:
        try:
            message = await channel.recv_message()
        except Error as exc:
            if exc.reason is Reason.TOO_LARGE:
                shared.counters["limit_max_message"] += 1
                shared.logs.limited("too_large", "limit enforced: max_message (%s)", exc.message)
            elif exc.reason is Reason.MEMORY_BUDGET:
                shared.logs.limited("budget", "limit enforced: buffer_budget (%s)", exc.message)
            raise
        if message is None:
            return
        shared.counters["requests"] += 1
        try:
            op, args = decode_request(
                message,
                max_size=min(config.max_request, config.max_message),
                max_items=config.max_request_items,
            )
            result = await _dispatch(op, args, session, shared)
        except _Close as close:
            await channel.send_message(encode_error(close.error))
            return
        except Error as exc:
            shared.counters["error_replies"] += 1
            if exc.reason is Reason.TOO_MANY_ITEMS:
                shared.logs.limited("items", "limit enforced: max_request_items")
                try:
                    _strike(session, shared, exc)
                except _Close:
                    await channel.send_message(encode_error(exc))
                    return
            await channel.send_message(encode_error(exc))
            continue
        await channel.send_message(encode_result(result))


async def _dispatch(op: str, args: dict[str, Any], session: _Session, shared: Shared) -> Any:
    if op == "attest":
        return await _attest(args, session, shared)
    if op == "authenticate":
        return await _authenticate(args, session, shared)
    entry = shared.ops.get(op)
    if entry is None:
        raise ChannelError(f"unknown operation {op!r}", Reason.UNKNOWN_OPERATION)
    func, allow = entry
    principal = session.principal
    if allow != ANYONE:
        if principal is None:
            shared.logs.limited("unauthenticated", "refused: anonymous call to %r", op)
            raise _strike(
                session,
                shared,
                ChannelError(f"{op!r} requires an authenticated caller", Reason.UNAUTHENTICATED),
            )
        if allow is None or not allowed(allow, principal):
            shared.logs.limited("not_authorized", "refused: %r may not call %r", principal.name, op)
            raise _strike(
                session,
                shared,
                ChannelError(f"{principal.name!r} may not call {op!r}", Reason.NOT_AUTHORIZED),
            )
    try:
        return await func(args, session.context(op))
    except Error:
        raise
    except Exception:
        shared.counters["handler_errors"] += 1
        raise


async def _authenticate(args: dict[str, Any], session: _Session, shared: Shared) -> dict[str, str]:
    scheme, credential = args.get("scheme"), args.get("credential")
    if set(args) != {"scheme", "credential"} or not (
        isinstance(scheme, str) and isinstance(credential, bytes)
    ):
        raise _Close(
            ChannelError(
                "authenticate takes scheme (text) and credential (bytes)",
                Reason.INVALID_ARGUMENT,
            )
        )
    if session.tried_auth:
        # One attempt per connection: guessing costs a handshake each time.
        raise _Close(
            ChannelError("this connection already authenticated", Reason.INVALID_OPERATION)
        )
    session.tried_auth = True
    ctx = session.context("authenticate")
    try:
        if scheme == "key":
            if shared.trusted is None:
                raise ChannelError("no client keys are trusted", Reason.UNTRUSTED_CLIENT)
            name = shared.trusted.verify(credential, ctx.channel_binding)
        else:
            hook = shared.authenticators.get(scheme)
            if hook is None:
                raise ChannelError(
                    f"unknown authentication scheme {scheme!r}", Reason.UNAUTHENTICATED
                )
            try:
                returned: object = await hook(scheme, credential, ctx)
            except Error:
                raise
            except Exception as exc:  # noqa: BLE001 (an app hook's bug is a refusal)
                # A hook that chokes on a hostile credential refuses it; the parent
                # must not get a traceback per connection into the log (docs §9).
                raise ChannelError(
                    f"authenticator raised {type(exc).__name__}", Reason.UNAUTHENTICATED
                ) from None
            if not isinstance(returned, str) or not is_principal_name(returned):
                raise ChannelError(
                    "authenticator returned no valid principal name", Reason.UNAUTHENTICATED
                )
            # Scoped by scheme: a hook can never name a trusted-key principal.
            name = f"{scheme}:{returned}"
    except Error as exc:
        shared.logs.limited("auth", "refused: authentication failed [%s]", exc.reason.value)
        raise _Close(exc) from None
    session.principal = Principal(name, scheme)
    log.info("authenticated %r (%s)", name, scheme)
    return {"principal": name}


async def _attest(args: dict[str, Any], session: _Session, shared: Shared) -> Any:
    # ATT-6: only a nonce is taken from the caller; anything else is refused.
    if set(args) != {"nonce"} or not isinstance(args["nonce"], bytes):
        raise ChannelError(
            "attest takes exactly one argument: nonce (bytes); public_key and "
            "user_data are always the enclave's own",
            Reason.INVALID_ARGUMENT,
        )
    nonce: bytes = args["nonce"]
    if not MIN_NONCE <= len(nonce) <= MAX_NONCE:
        raise ChannelError(f"nonce must be {MIN_NONCE}..{MAX_NONCE} bytes", Reason.INVALID_ARGUMENT)
    # Per connection first, then the app-wide budget shared by every connection:
    # reconnecting buys a fresh per-connection bucket, never more NSM calls.
    for bucket, key, where, suffix in (
        (session.attest, "attest_conn", "attest rate on one connection", ""),
        (shared.attest_app, "attest_app", "app-wide attest rate", " (app-wide)"),
    ):
        if not bucket.take():
            shared.counters["limit_attest_rate"] += 1
            shared.logs.limited(key, f"limit enforced: {where}")
            raise _strike(
                session,
                shared,
                ChannelError(f"too many attestation requests{suffix}", Reason.RATE_LIMITED),
            )
    async with shared.nsm_slots:
        shared.counters["nsm_calls"] += 1
        document = await asyncio.to_thread(shared.identity.attest_nonce, shared.nsm, nonce)
    return {"document": document}
