"""Enclave application runtime: audit, seed, keys, then serve over the attested channel.

    from nitroguard.app import EnclaveApp, AppConfig

    app = EnclaveApp("signer", trusted_keys=TrustedKeys.from_file("/app/clients"))

    @app.operation("sign", allow=AUTHENTICATED)
    async def sign(args, ctx):       # ctx.principal: who is calling
        ...

    app.run()   # NITROGUARD_MODE, NITROGUARD_LISTEN, NITROGUARD_NSM, ... (docs/app.md)

Clients: `AppClient` / `AsyncAppClient` (authenticate with a `ClientKey`, call
operations, fetch nonce-fresh attestations).
"""

from __future__ import annotations

from nitroguard.app.client import AppClient, AsyncAppClient
from nitroguard.app.protocol import AppError
from nitroguard.app.runtime import (
    ANYONE,
    AUTHENTICATED,
    AppConfig,
    CallContext,
    EnclaveApp,
    Mode,
    Principal,
    RunningApp,
)
from nitroguard.channel.auth import ClientKey, TrustedKeys

__all__ = [
    "ANYONE",
    "AUTHENTICATED",
    "AppClient",
    "AppConfig",
    "AppError",
    "AsyncAppClient",
    "CallContext",
    "ClientKey",
    "EnclaveApp",
    "Mode",
    "Principal",
    "RunningApp",
    "TrustedKeys",
]
