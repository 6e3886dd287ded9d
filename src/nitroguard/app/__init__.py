"""Enclave application runtime: audit, seed, keys, then serve over the attested channel.

    from nitroguard.app import EnclaveApp, AppConfig

    app = EnclaveApp("signer")

    @app.operation("sign")
    async def sign(args):
        ...

    app.run()   # NITROGUARD_MODE, NITROGUARD_LISTEN, NITROGUARD_NSM, ... (docs/app.md)

Clients: `AppClient` / `AsyncAppClient` (operations and nonce-fresh attestation).
"""

from __future__ import annotations

from nitroguard.app.client import AppClient, AsyncAppClient
from nitroguard.app.protocol import AppError
from nitroguard.app.runtime import AppConfig, EnclaveApp, Mode, RunningApp

__all__ = [
    "AppClient",
    "AppConfig",
    "AppError",
    "AsyncAppClient",
    "EnclaveApp",
    "Mode",
    "RunningApp",
]
