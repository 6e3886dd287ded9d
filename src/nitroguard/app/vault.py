"""A small key-value vault on `EnclaveApp` (the demo's application).

Values live only in enclave memory. Keys are text (1..128 chars), values bytes
(up to 64 KiB), at most 1024 entries: every input is bounded.
"""

from __future__ import annotations

from typing import Any

from nitroguard.app.runtime import EnclaveApp
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


def build_vault(name: str = "vault") -> EnclaveApp:
    """An `EnclaveApp` with ``put(key, value)``, ``get(key)``, ``delete(key)``, ``keys()``."""
    app = EnclaveApp(name)
    store: dict[str, bytes] = {}

    @app.operation("put")
    async def put(args: dict[str, Any]) -> None:
        key, value = _key(args), args.get("value")
        if not isinstance(value, bytes) or len(value) > MAX_VALUE:
            raise ChannelError(
                f"value must be bytes of at most {MAX_VALUE}", Reason.INVALID_ARGUMENT
            )
        if key not in store and len(store) >= MAX_ENTRIES:
            raise ChannelError("vault is full", Reason.INVALID_ARGUMENT)
        store[key] = value

    @app.operation("get")
    async def get(args: dict[str, Any]) -> bytes | None:
        return store.get(_key(args))

    @app.operation("delete")
    async def delete(args: dict[str, Any]) -> bool:
        return store.pop(_key(args), None) is not None

    @app.operation("keys")
    async def keys(args: dict[str, Any]) -> list[str]:
        return sorted(store)

    return app
