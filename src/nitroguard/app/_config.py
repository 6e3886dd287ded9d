"""`AppConfig` and `Mode`: the runtime's configuration, from arguments or ``NITROGUARD_*``."""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Mapping
from typing import Any

from nitroguard.app._protocol import DEFAULT_MAX_ITEMS
from nitroguard.channel._aio import DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_REFRESH_INTERVAL
from nitroguard.channel._messages import DEFAULT_MAX_MESSAGE
from nitroguard.errors import ConfigError
from nitroguard.transport import ServerLimits

__all__ = ["AppConfig", "Mode"]


class Mode(enum.StrEnum):
    """How strictly the runtime treats the environment."""

    PRODUCTION = "production"
    """Fail closed on any audit failure; the default."""
    DEVELOPMENT = "development"
    """Warn only (for the emulator on a laptop or CI). Never deploy it."""


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"${name}: not a number: {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"${name}: must be > 0, got {raw!r}")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class AppConfig:
    """Runtime configuration (arguments, or `from_env`).

    Every field has a safe default; the environment variable is given in brackets.
    """

    mode: Mode = Mode.PRODUCTION
    """[NITROGUARD_MODE] production (fail closed) or development (warn)."""
    listen: str = "vsock://any:5000"
    """[NITROGUARD_LISTEN] where to serve the channel."""
    nsm: str | None = None
    """[NITROGUARD_NSM] NSM selection for `nitroguard.nsm.open` (default: /dev/nsm)."""
    max_connections: int = 256
    """[NITROGUARD_MAX_CONNECTIONS] concurrent connections."""
    idle_timeout: float = 60.0
    """[NITROGUARD_IDLE_TIMEOUT] seconds between frames before a connection is dropped."""
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    """[NITROGUARD_HANDSHAKE_TIMEOUT] seconds for a whole channel handshake."""
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL
    """[NITROGUARD_REFRESH_INTERVAL] seconds between attestation document refreshes."""
    max_message: int = DEFAULT_MAX_MESSAGE
    """[NITROGUARD_MAX_MESSAGE] largest response in bytes (and cap of `max_request`)."""
    max_request: int = 64 * 1024
    """[NITROGUARD_MAX_REQUEST] largest request in bytes, refused before decoding."""
    max_request_items: int = DEFAULT_MAX_ITEMS
    """CBOR items in one request (the strict walk stops at this count)."""
    buffer_budget: int = 16 * 1024 * 1024
    """[NITROGUARD_BUFFER_BUDGET] bytes of partial requests buffered across all
    connections; past it the largest buffers are evicted (their connections fail)."""
    memory_budget: int = 256 * 1024 * 1024
    """[NITROGUARD_MEMORY_BUDGET] start-up warns when the worst-case parked memory
    (``max_connections x (max_request + one frame)``) exceeds it."""
    attest_per_minute: float = 30.0
    """[NITROGUARD_ATTEST_PER_MINUTE] nonce attestations per connection per minute."""
    attest_burst: int = 5
    """Nonce attestations a connection may ask for at once before the rate applies."""
    attest_app_per_minute: float = 120.0
    """[NITROGUARD_ATTEST_APP_PER_MINUTE] nonce attestations per minute for the whole app
    (all connections together: reconnecting does not buy more NSM calls)."""
    attest_app_burst: int = 10
    """App-wide nonce attestations at once before the app-wide rate applies."""
    attest_concurrency: int = 4
    """NSM attestation calls in flight across all connections."""
    max_strikes: int = 3
    """Refusals by a limit or by authorization before a connection is closed."""
    log_interval: float = 10.0
    """Seconds between two log lines about the same refusal (counts are kept)."""
    client_keys: str | None = None
    """[NITROGUARD_CLIENT_KEYS] file of trusted client keys (`TrustedKeys.parse`
    format), e.g. baked into the image so PCR2 covers it."""
    seed_bytes: int = 512
    """NSM random bytes mixed into the kernel pool at start."""
    random_device: str = "/dev/random"
    """Where the NSM randomness goes (tests point it at a file)."""
    waive: frozenset[str] = frozenset()
    """[NITROGUARD_AUDIT_WAIVE, comma-separated] audit check ids whose failure is accepted."""
    nsm_root: str | None = None
    """[NITROGUARD_NSM_ROOT] development: the emulator's root PEM (`nitroguard nsm pki
    --export-root`), so the self-attestation checks verify against an emulator."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> AppConfig:
        """Build a config from ``NITROGUARD_*`` variables, then apply `overrides`.

        Raises:
            ConfigError: a malformed variable.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if "NITROGUARD_MODE" in env:
            try:
                values["mode"] = Mode(env["NITROGUARD_MODE"].strip().lower())
            except ValueError:
                raise ConfigError(
                    f"$NITROGUARD_MODE must be production or development, "
                    f"got {env['NITROGUARD_MODE']!r}"
                ) from None
        if "NITROGUARD_LISTEN" in env:
            values["listen"] = env["NITROGUARD_LISTEN"]
        if "NITROGUARD_NSM" in env:
            values["nsm"] = env["NITROGUARD_NSM"]
        if "NITROGUARD_MAX_CONNECTIONS" in env:
            values["max_connections"] = int(_env_float(env, "NITROGUARD_MAX_CONNECTIONS", 1))
        for name, var in (
            ("max_message", "NITROGUARD_MAX_MESSAGE"),
            ("max_request", "NITROGUARD_MAX_REQUEST"),
            ("buffer_budget", "NITROGUARD_BUFFER_BUDGET"),
            ("memory_budget", "NITROGUARD_MEMORY_BUDGET"),
        ):
            if var in env:
                values[name] = int(_env_float(env, var, 1))
        if env.get("NITROGUARD_CLIENT_KEYS"):
            values["client_keys"] = env["NITROGUARD_CLIENT_KEYS"]
        for name, var in (
            ("idle_timeout", "NITROGUARD_IDLE_TIMEOUT"),
            ("handshake_timeout", "NITROGUARD_HANDSHAKE_TIMEOUT"),
            ("refresh_interval", "NITROGUARD_REFRESH_INTERVAL"),
            ("attest_per_minute", "NITROGUARD_ATTEST_PER_MINUTE"),
            ("attest_app_per_minute", "NITROGUARD_ATTEST_APP_PER_MINUTE"),
        ):
            if var in env:
                values[name] = _env_float(env, var, 1.0)
        if env.get("NITROGUARD_AUDIT_WAIVE"):
            values["waive"] = frozenset(
                w.strip().upper() for w in env["NITROGUARD_AUDIT_WAIVE"].split(",") if w.strip()
            )
        if env.get("NITROGUARD_NSM_ROOT"):
            values["nsm_root"] = env["NITROGUARD_NSM_ROOT"]
        values.update(overrides)
        return cls(**values)

    def limits(self) -> ServerLimits:
        """The transport limits this config implies."""
        return ServerLimits(
            max_connections=self.max_connections,
            idle_timeout=self.idle_timeout,
        )
