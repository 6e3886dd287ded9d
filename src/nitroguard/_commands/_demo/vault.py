"""A small key-value vault on `EnclaveApp` (the demo's application).

Values live only in enclave memory. Each authenticated principal has its own namespace:
a caller reads, lists, overwrites and deletes only its own entries, and anonymous
callers are refused (`unauthenticated`), the parent included. Keys are text
(1..128 chars), values bytes (up to 64 KiB), at most 1024 entries per principal:
every input is bounded, and the number of principals is bounded by the trusted keys.
"""

from __future__ import annotations

from typing import Any

from nitroguard.app import AUTHENTICATED, CallContext, EnclaveApp, TrustedKeys
from nitroguard.errors import ChannelError, Reason

__all__ = ["MAX_ENTRIES", "MAX_KEY", "MAX_VALUE", "build_vault"]

MAX_KEY = 128
MAX_VALUE = 64 * 1024
MAX_ENTRIES = 1024


def _key(args: dict[str, Any]) -> str:
    key = args.get("key")
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY:
        raise ChannelError(f"key must be text of 1..{MAX_KEY} characters", Reason.INVALID_ARGUMENT)
    return key


def build_vault(name: str = "vault", trusted_keys: TrustedKeys | None = None) -> EnclaveApp:
    """An `EnclaveApp` with ``put(key, value)``, ``get(key)``, ``delete(key)``, ``keys()``.

    Every operation requires an authenticated caller and works in that caller's
    namespace only.

    Args:
        name: the service name (bound in the attestation documents).
        trusted_keys: the client keys it accepts (or `AppConfig.client_keys`).
    """
    app = EnclaveApp(name, trusted_keys=trusted_keys)
    stores: dict[str, dict[str, bytes]] = {}

    def store(ctx: CallContext) -> dict[str, bytes]:
        if ctx.principal is None:  # pragma: no cover - the runtime refuses first
            raise ChannelError("the vault needs an authenticated caller", Reason.UNAUTHENTICATED)
        return stores.setdefault(ctx.principal.name, {})

    @app.operation("put", allow=AUTHENTICATED)
    async def put(args: dict[str, Any], ctx: CallContext) -> None:
        key, value = _key(args), args.get("value")
        if not isinstance(value, bytes) or len(value) > MAX_VALUE:
            raise ChannelError(
                f"value must be bytes of at most {MAX_VALUE}", Reason.INVALID_ARGUMENT
            )
        own = store(ctx)
        if key not in own and len(own) >= MAX_ENTRIES:
            raise ChannelError("vault is full", Reason.INVALID_ARGUMENT)
        own[key] = value

    @app.operation("get", allow=AUTHENTICATED)
    async def get(args: dict[str, Any], ctx: CallContext) -> bytes | None:
        return store(ctx).get(_key(args))

    @app.operation("delete", allow=AUTHENTICATED)
    async def delete(args: dict[str, Any], ctx: CallContext) -> bool:
        return store(ctx).pop(_key(args), None) is not None

    @app.operation("keys", allow=AUTHENTICATED)
    async def keys(args: dict[str, Any], ctx: CallContext) -> list[str]:
        return sorted(store(ctx))

    return app
