"""Enclave application runtime: audit, seed, keys, then serve over the attested channel.

    from nitroguard.app import EnclaveApp, AppConfig

    app = EnclaveApp("signer", trusted_keys=TrustedKeys.from_file("/app/clients"))

    @app.operation("sign", allow=AUTHENTICATED)
    async def sign(args, ctx):       # ctx.principal: who is calling
        ...

    app.run()   # NITROGUARD_MODE, NITROGUARD_LISTEN, NITROGUARD_NSM, ... (docs/app.md)

Clients: `AppClient` / `AsyncAppClient` (authenticate with a `ClientKey`, call
operations, fetch nonce-fresh attestations). Errors the app answers with arrive as
`AppError` (also `nitroguard.errors.AppError`).

Where things live: ``_runtime`` (`EnclaveApp`, start-up order, `RunningApp`),
``_config`` (`AppConfig`, `Mode`), ``_authz`` (principals and who may call what),
``_session`` (one connection's request loop: authentication, ``attest``, dispatch),
``_limits`` (rate buckets, log throttling), ``_protocol`` (the request/response
encoding), ``_client`` (the clients).
"""

from __future__ import annotations

from nitroguard.app._client import AppClient, AsyncAppClient
from nitroguard.app._runtime import (
    ANYONE,
    AUTHENTICATED,
    METRIC_NAMES,
    AllowSpec,
    AppConfig,
    Authenticator,
    CallContext,
    EnclaveApp,
    Mode,
    Operation,
    Principal,
    RunningApp,
    StartHook,
)
from nitroguard.channel import ClientKey, TrustedKeys
from nitroguard.errors import AppError

__all__ = [
    "ANYONE",
    "AUTHENTICATED",
    "METRIC_NAMES",
    "AllowSpec",
    "AppClient",
    "AppConfig",
    "AppError",
    "AsyncAppClient",
    "Authenticator",
    "CallContext",
    "ClientKey",
    "EnclaveApp",
    "Mode",
    "Operation",
    "Principal",
    "RunningApp",
    "StartHook",
    "TrustedKeys",
]
