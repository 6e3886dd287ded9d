"""`EnclaveApp`: the secure path as the easy path for enclave developers.

Start-up order (issue 6, section 3), each step logged:

1. **Audit.** `production` mode calls `require_secure_environment` and refuses to
   start on any failure (fail closed). `development` mode (meant for the emulator)
   runs the same audit and logs every non-passing finding as a warning.
2. **Entropy.** `seed_from_nsm` mixes NSM randomness into the kernel pool (credited
   in production; never credited in development, where the "NSM" is software).
3. **Keys.** The channel identity (Ed25519) is generated only now.
4. **Serve.** The attested channel on the hardened transport, with every limit
   logged at start and each enforcement logged when it happens.

The built-in operation ``attest`` takes ONLY a nonce (16..512 bytes). The document's
`public_key` and `user_data` are always the app's own (ATT-6): an API that passes
caller-supplied key material to the NSM lets anyone obtain attested statements about
keys they control.

Who may call what (issue 10): the channel authenticates the enclave only, and the
parent can always run the real client. So every operation declares ``allow=``; a
request runs only if its caller is allowed. Callers authenticate inside the channel
with the reserved ``authenticate`` operation: scheme ``key`` checks a channel-bound
`ClientAuth` against `TrustedKeys` (measured configuration), and any other scheme goes
to the app's `authenticator` hook. ``attest`` stays open to anonymous callers behind a
per-connection and an app-wide budget.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

from nitroguard._resource import AsyncResource
from nitroguard.app._protocol import DEFAULT_MAX_ITEMS, decode_request, encode_error, encode_result
from nitroguard.channel._aio import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_REFRESH_INTERVAL,
    MAX_FRAME,
    ChannelServer,
    SecureChannel,
    serve,
)
from nitroguard.channel._auth import TrustedKeys
from nitroguard.channel._handshake import (
    MAX_NONCE,
    MIN_NONCE,
    ServerIdentity,
    channel_user_data,
)
from nitroguard.channel._messages import DEFAULT_MAX_MESSAGE, BufferBudget
from nitroguard.errors import ChannelError, ConfigError, Error, Reason
from nitroguard.findings import Finding, Status
from nitroguard.nsm import ReadOnlyNsm
from nitroguard.transport import Address, ServerLimits

__all__ = [
    "ANYONE",
    "AUTHENTICATED",
    "METRIC_NAMES",
    "AllowSpec",
    "AppConfig",
    "Authenticator",
    "CallContext",
    "EnclaveApp",
    "Mode",
    "Operation",
    "Principal",
    "RunningApp",
]

#: ``await hook(nsm)`` in `EnclaveApp.start` (see `EnclaveApp.on_start`).
StartHook = Callable[[ReadOnlyNsm], Awaitable[None]]

log = logging.getLogger("nitroguard.app")

#: ``allow=AUTHENTICATED``: any caller that authenticated (any scheme).
AUTHENTICATED = "authenticated"
#: ``allow=ANYONE``: anonymous callers too. Unsafe for anything but public data: the
#: parent is always a possible caller. Logged as a warning at start.
ANYONE = "anyone"
#: Reserved operation names.
RESERVED = frozenset({"attest", "authenticate"})


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    name: str
    """The name under which it is trusted (a `TrustedKeys` name, or the hook's)."""
    scheme: str
    """How it authenticated: ``key`` or the hook's scheme."""


@dataclasses.dataclass(frozen=True, slots=True)
class CallContext:
    """What an operation (or the authentication hook) learns about its caller."""

    principal: Principal | None
    """The authenticated caller; None for an anonymous one (only with ``allow=ANYONE``)."""
    channel_binding: bytes
    """This session's 32-byte exporter value (secret to the two ends)."""
    transcript_hash: bytes
    """SHA-256 of this session's ClientHello || ServerHello."""
    operation: str
    """The operation being called."""


Operation = Callable[[dict[str, Any], CallContext], Awaitable[Any]]
#: ``async def hook(scheme, credential, ctx) -> principal name`` (raise to refuse).
Authenticator = Callable[[str, bytes, CallContext], Awaitable[str]]
#: ``AUTHENTICATED``, ``ANYONE``, a collection of principal names, or a predicate.
AllowSpec = str | Collection[str] | Callable[[Principal], bool]

#: The counters of the built-in ``metrics`` operation (issue 16): requests served,
#: error replies, handler crashes, limits enforced, NSM calls, KMS calls (counted by
#: the app with `EnclaveApp.count`).
METRIC_NAMES: tuple[str, ...] = (
    "requests",
    "error_replies",
    "handler_errors",
    "limit_max_message",
    "limit_attest_rate",
    "nsm_calls",
    "kms_calls",
)
_F = TypeVar("_F", bound=Operation)


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
        values.update(overrides)
        return cls(**values)

    def limits(self) -> ServerLimits:
        """The transport limits this config implies."""
        return ServerLimits(
            max_connections=self.max_connections,
            idle_timeout=self.idle_timeout,
        )


class _Bucket:
    """Token bucket for the nonce attestation endpoint (per connection or app-wide)."""

    __slots__ = ("_clock", "_last", "_rate", "_size", "_tokens")

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = per_minute / 60.0
        self._size = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._size, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class _LogLimiter:
    """At most one log line per key and interval; the suppressed count goes in the next.

    Anonymous peers trigger refusals at will: logging each one would let them flood
    the log (and the disk or the log pipeline behind it).
    """

    __slots__ = ("_clock", "_interval", "_state")

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self._interval = interval
        self._clock = clock
        self._state: dict[str, tuple[float, int]] = {}

    def limited(self, key: str, message: str, *args: object) -> bool:
        """Log `message` unless `key` was logged within the interval. True if logged."""
        now = self._clock()
        last, suppressed = self._state.get(key, (-float("inf"), 0))
        if now - last < self._interval:
            self._state[key] = (last, suppressed + 1)
            return False
        if suppressed:
            message += f" ({suppressed} similar suppressed in the last interval)"
        self._state[key] = (now, 0)
        log.warning(message, *args)
        return True


@dataclasses.dataclass(slots=True)
class _Shared:
    """State shared by every connection of one running app."""

    config: AppConfig
    identity: ServerIdentity
    nsm: ReadOnlyNsm
    nsm_slots: asyncio.Semaphore
    attest_app: _Bucket
    logs: _LogLimiter
    trusted: TrustedKeys | None


class _Session:
    """Per-connection state: the caller, its attestation budget and its strikes."""

    __slots__ = ("attest", "channel", "principal", "strikes", "tried_auth")

    def __init__(self, channel: SecureChannel, attest: _Bucket) -> None:
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


def _allowed(spec: AllowSpec, principal: Principal) -> bool:
    if isinstance(spec, str):
        return spec in (AUTHENTICATED, ANYONE)
    if callable(spec):
        return bool(spec(principal))
    return principal.name in spec


class RunningApp(AsyncResource):
    """A started `EnclaveApp`: its address, identity and lifecycle (``async with`` closes it)."""

    def __init__(
        self,
        server: ChannelServer,
        config: AppConfig,
        findings: Sequence[Finding] = (),
        buffer_budget: BufferBudget | None = None,
    ) -> None:
        self.server = server
        self.config = config
        self.buffer_budget = buffer_budget
        """The global budget of partial requests (its `used` and `evictions`)."""
        self.findings: tuple[Finding, ...] = tuple(findings)
        """The start-up audit's findings (all passing or waived in production)."""

    @property
    def address(self) -> Address:
        """The bound address."""
        return self.server.address

    @property
    def identity(self) -> ServerIdentity:
        """The attested channel identity (its `public_key` is in every document)."""
        return self.server.identity

    async def aclose(self) -> None:
        """Stop serving (connections drain within the transport's grace)."""
        await self.server.aclose()

    async def close(self) -> None:
        """The same as `aclose`."""
        await self.aclose()

    async def serve_forever(self) -> None:
        """Serve until cancelled or closed."""
        await self.server.serve_forever()


class EnclaveApp:
    """An enclave application served over the attested channel.

    Example::

        app = EnclaveApp("vault", trusted_keys=TrustedKeys.from_file("/app/clients"))

        @app.operation("get", allow=AUTHENTICATED)
        async def get(args, ctx):
            return stores[ctx.principal.name].get(args["key"])

        app.run()          # config from NITROGUARD_* environment variables

    Deny by default: an operation registered without ``allow=`` can be called by no
    one (start-up warns). Anonymous callers reach only ``allow=ANYONE`` operations and
    the built-in ``attest``.

    Args:
        name: the service name, bound in every attestation document's `user_data`
            (clients name it in `DocumentCheck(service=...)`) and shown in logs.
        clock: monotonic clock for rate limits and log intervals (injected in tests).
        trusted_keys: client keys accepted by the ``key`` scheme (in addition to the
            `AppConfig.client_keys` file).
    """

    def __init__(
        self,
        name: str = "app",
        *,
        clock: Callable[[], float] = time.monotonic,
        trusted_keys: TrustedKeys | None = None,
    ) -> None:
        channel_user_data(name)  # a valid service name, or ConfigError now
        self.name = name
        self._ops: dict[str, tuple[Operation, AllowSpec | None]] = {}
        self._authenticators: dict[str, Authenticator] = {}
        self._clock = clock
        self.trusted_keys = trusted_keys
        #: The app's own counters, served by the built-in ``metrics`` operation once
        #: `expose_metrics` opened it (issue 16). Fixed names, integer values only.
        self.counters: dict[str, int] = dict.fromkeys(METRIC_NAMES, 0)
        self._start_hooks: list[StartHook] = []

    def count(self, name: str, n: int = 1) -> None:
        """Add `n` to one of `METRIC_NAMES` (e.g. ``app.count("kms_calls")`` in an operation).

        Raises:
            ConfigError: `name` is not one of `METRIC_NAMES` (series stay bounded).
        """
        if name not in self.counters:
            raise ConfigError(f"unknown app counter {name!r}; use one of {METRIC_NAMES}")
        self.counters[name] += n

    def expose_metrics(self, **register: Any) -> None:
        """Open the built-in ``metrics`` operation (closed unless this is called).

        It returns `counters` (no secrets: counts only). The keyword arguments go to
        `operation`, so the app decides who may call it under its authorization
        rules (``allow=``): for example the operator's principal, or ``ANYONE`` by
        explicit choice (the parent-side `nitroguard health` sidecar calls it).
        """

        async def metrics(args: dict[str, Any], ctx: CallContext) -> dict[str, int]:
            del ctx  # counts only: the same answer for every allowed caller
            if args:
                raise ChannelError("metrics takes no arguments", Reason.INVALID_ARGUMENT)
            return dict(self.counters)

        self.operation("metrics", **register)(metrics)

    def operation(self, name: str, *, allow: AllowSpec | None = None) -> Callable[[_F], _F]:
        """Register ``async def op(args: dict, ctx: CallContext) -> result`` under `name`.

        The result must be CBOR-encodable (bytes, text, ints, bools, None, lists,
        maps). Raise a `nitroguard.errors.Error` to answer with its reason and message.

        Args:
            name: the operation's name.
            allow: who may call it: `AUTHENTICATED`, `ANYONE` (anonymous callers too:
                the parent is one), a collection of principal names, or a predicate
                on the `Principal`. None (the default) denies everyone.

        Raises:
            ConfigError: `name` is reserved (``attest``, ``authenticate``) or already
                registered, or `allow` is a string other than the two constants.
        """
        if name in RESERVED or name in self._ops:
            raise ConfigError(f"operation name {name!r} is reserved or already registered")
        if isinstance(allow, str) and allow not in (AUTHENTICATED, ANYONE):
            raise ConfigError(
                f"allow={allow!r}: use AUTHENTICATED, ANYONE, a set of principal names "
                "or a predicate"
            )

        def register(func: _F) -> _F:
            self._ops[name] = (func, allow)
            return func

        return register

    def authenticator(self, scheme: str) -> Callable[[Authenticator], Authenticator]:
        """Register the hook for an app-defined authentication scheme.

        ``async def hook(scheme, credential: bytes, ctx: CallContext) -> str`` runs
        when a client calls ``authenticate`` with this scheme, after the handshake and
        before any operation. Return the principal's name, or raise an `Error` to
        refuse (the connection is then closed). Bind the credential to
        ``ctx.channel_binding`` (e.g. an HMAC or a signature over it): a credential
        that does not depend on it can be replayed by whoever saw it once.

        Raises:
            ConfigError: the scheme is ``key`` (built in) or already registered.
        """
        if scheme == "key" or scheme in self._authenticators or not scheme:
            raise ConfigError(f"authentication scheme {scheme!r} is built in or registered")

        def register(func: Authenticator) -> Authenticator:
            self._authenticators[scheme] = func
            return func

        return register

    async def start(
        self,
        config: AppConfig | None = None,
        *,
        nsm: ReadOnlyNsm | None = None,
        probe: Any = None,
        ready: Callable[[Address], None] | None = None,
    ) -> RunningApp:
        """Audit, seed, generate keys, then serve. Returns once listening.

        Args:
            config: the configuration (default: `AppConfig.from_env()`).
            nsm: an open NSM (default: `nitroguard.nsm.open(config.nsm)`).
            probe: the audit's `SystemReader` (default: this machine).
            ready: called with the bound address.

        Raises:
            InsecureEnvironment: production mode and the audit failed.
            NsmError: the NSM is unavailable or failed.
            ConfigError: bad configuration.
        """
        from nitroguard import audit
        from nitroguard.audit import seed_from_nsm
        from nitroguard.nsm import open as open_nsm

        config = config if config is not None else AppConfig.from_env()
        if nsm is None:
            nsm = open_nsm(config.nsm)
        log.info("%s: starting in %s mode", self.name, config.mode.value)
        # (1) Audit: fail closed in production, warn in development.
        if config.mode is Mode.PRODUCTION:
            findings = await asyncio.to_thread(
                audit.require_secure_environment, probe, nsm, waive=config.waive, logger=log
            )
            log.info("%s: environment audit passed", self.name)
        else:
            pki = getattr(nsm, "pki", None)
            roots = [pki.root_certificate] if pki is not None else None
            findings = await asyncio.to_thread(audit.run, probe, nsm, roots=roots)
            log.warning(
                "%s: DEVELOPMENT MODE: the audit below is NOT enforced; never deploy this",
                self.name,
            )
            for finding in findings:
                if finding.status is not Status.PASS:
                    log.warning(
                        "audit (not enforced) %s %s: %s",
                        finding.id,
                        finding.status.value,
                        finding.evidence,
                    )
        # (2) Entropy from the NSM before any key exists (RNG-1/RNG-4).
        credit = 8 if config.mode is Mode.PRODUCTION else 0
        report = await asyncio.to_thread(
            seed_from_nsm,
            nsm,
            config.seed_bytes,
            device=config.random_device,
            bits_per_byte=credit,
        )
        log.info("%s: seeded %d NSM bytes (%s)", self.name, report.nbytes, report.method)
        # (3) Keys, only now.
        identity = ServerIdentity.generate(os.urandom, service=self.name)
        trusted = self._trusted(config)
        self._log_access(trusted)
        await self._run_start_hooks(nsm)
        # (4) Serve, logging every limit.
        limits = config.limits()
        for field in dataclasses.fields(limits):
            log.info("limit: %s=%s", field.name, getattr(limits, field.name))
        max_request = min(config.max_request, config.max_message)
        log.info(
            "limit: attest=%s/min per connection (burst %d), %s/min per app (burst %d), "
            "%d in flight; max_message=%d max_request=%d max_request_items=%d "
            "max_strikes=%d",
            config.attest_per_minute,
            config.attest_burst,
            config.attest_app_per_minute,
            config.attest_app_burst,
            config.attest_concurrency,
            config.max_message,
            max_request,
            config.max_request_items,
            config.max_strikes,
        )
        worst = config.max_connections * (max_request + MAX_FRAME)
        log.info(
            "limit: worst-case parked memory %d bytes (max_connections %d x (max_request "
            "%d + frame %d)); buffered requests capped at buffer_budget=%d",
            worst,
            config.max_connections,
            max_request,
            MAX_FRAME,
            config.buffer_budget,
        )
        if worst > config.memory_budget:
            log.warning(
                "worst-case parked memory %d bytes exceeds memory_budget=%d: lower "
                "max_connections or max_request",
                worst,
                config.memory_budget,
            )
        shared = _Shared(
            config=config,
            identity=identity,
            nsm=nsm,
            nsm_slots=asyncio.Semaphore(config.attest_concurrency),
            attest_app=_Bucket(config.attest_app_per_minute, config.attest_app_burst, self._clock),
            logs=_LogLimiter(config.log_interval, self._clock),
            trusted=trusted,
        )

        budget = BufferBudget(config.buffer_budget)

        async def on_channel(channel: SecureChannel) -> None:
            await self._serve_channel(channel, shared)

        server = await serve(
            on_channel,
            config.listen,
            nsm,
            limits=limits,
            identity=identity,
            ready=ready,
            refresh_interval=config.refresh_interval,
            handshake_timeout=config.handshake_timeout,
            max_message=max_request,
            message_budget=budget,
        )
        log.info(
            "%s: serving on %s (identity key sha256 prefix %s)",
            self.name,
            server.address,
            _fingerprint(identity.public_key),
        )
        return RunningApp(server, config, findings, budget)

    def on_start(self, hook: StartHook) -> None:
        """Run ``await hook(nsm)`` in `start`, after the audit and the NSM seeding (so
        keys made there come from a checked, seeded RNG) and before serving.

        Fetching secrets from KMS at start-up is one line (``docs/kms.md``)::

            app.on_start(kms.fetch_secrets(secrets, {"master": (blob, context)}, ...))

        A hook that raises stops the start: the app never serves without its secrets.
        """
        self._start_hooks.append(hook)

    async def _run_start_hooks(self, nsm: ReadOnlyNsm) -> None:
        for hook in self._start_hooks:
            await hook(nsm)

    def _trusted(self, config: AppConfig) -> TrustedKeys | None:
        keys: dict[str, bytes] = {}
        for source in (
            self.trusted_keys,
            TrustedKeys.from_file(config.client_keys) if config.client_keys else None,
        ):
            if source is not None:
                for name, der in source.items():
                    if name in keys and keys[name] != der:
                        raise ConfigError(f"client principal {name!r} has two different keys")
                    keys[name] = der
        return TrustedKeys(keys) if keys else None

    def _log_access(self, trusted: TrustedKeys | None) -> None:
        log.info(
            "%s: %d trusted client key(s)%s; authentication schemes: %s",
            self.name,
            len(trusted) if trusted else 0,
            f" ({', '.join(trusted)})" if trusted else "",
            ", ".join(["key", *sorted(self._authenticators)]),
        )
        for op, (_, allow) in sorted(self._ops.items()):
            if allow is None:
                log.warning("operation %r has no allow=: nobody can call it (deny by default)", op)
            elif allow == ANYONE:
                log.warning("operation %r is open to anonymous callers (allow=ANYONE)", op)

    def _strike(self, session: _Session, shared: _Shared, error: Error) -> Error:
        session.strikes += 1
        if session.strikes >= shared.config.max_strikes:
            shared.logs.limited(
                "strikes", "limit enforced: connection closed after %d refusals", session.strikes
            )
            raise _Close(error)
        return error

    async def _serve_channel(self, channel: SecureChannel, shared: _Shared) -> None:
        config = shared.config
        session = _Session(
            channel, _Bucket(config.attest_per_minute, config.attest_burst, self._clock)
        )
        while True:
            try:
                message = await channel.recv_message()
            except Error as exc:
                if exc.reason is Reason.TOO_LARGE:
                    self.counters["limit_max_message"] += 1
                    shared.logs.limited(
                        "too_large", "limit enforced: max_message (%s)", exc.message
                    )
                elif exc.reason is Reason.MEMORY_BUDGET:
                    shared.logs.limited("budget", "limit enforced: buffer_budget (%s)", exc.message)
                raise
            if message is None:
                return
            self.counters["requests"] += 1
            try:
                op, args = decode_request(
                    message,
                    max_size=min(config.max_request, config.max_message),
                    max_items=config.max_request_items,
                )
                result = await self._dispatch(op, args, session, shared)
            except _Close as close:
                await channel.send_message(encode_error(close.error))
                return
            except Error as exc:
                self.counters["error_replies"] += 1
                if exc.reason is Reason.TOO_MANY_ITEMS:
                    shared.logs.limited("items", "limit enforced: max_request_items")
                    try:
                        self._strike(session, shared, exc)
                    except _Close:
                        await channel.send_message(encode_error(exc))
                        return
                await channel.send_message(encode_error(exc))
                continue
            await channel.send_message(encode_result(result))

    async def _dispatch(
        self, op: str, args: dict[str, Any], session: _Session, shared: _Shared
    ) -> Any:
        if op == "attest":
            return await self._attest(args, session, shared)
        if op == "authenticate":
            return await self._authenticate(args, session, shared)
        entry = self._ops.get(op)
        if entry is None:
            raise ChannelError(f"unknown operation {op!r}", Reason.UNKNOWN_OPERATION)
        func, allow = entry
        principal = session.principal
        if allow != ANYONE:
            if principal is None:
                shared.logs.limited("unauthenticated", "refused: anonymous call to %r", op)
                raise self._strike(
                    session,
                    shared,
                    ChannelError(
                        f"{op!r} requires an authenticated caller", Reason.UNAUTHENTICATED
                    ),
                )
            if allow is None or not _allowed(allow, principal):
                shared.logs.limited(
                    "not_authorized", "refused: %r may not call %r", principal.name, op
                )
                raise self._strike(
                    session,
                    shared,
                    ChannelError(f"{principal.name!r} may not call {op!r}", Reason.NOT_AUTHORIZED),
                )
        try:
            return await func(args, session.context(op))
        except Error:
            raise
        except Exception:
            self.counters["handler_errors"] += 1
            raise

    async def _authenticate(
        self, args: dict[str, Any], session: _Session, shared: _Shared
    ) -> dict[str, str]:
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
                hook = self._authenticators.get(scheme)
                if hook is None:
                    raise ChannelError(
                        f"unknown authentication scheme {scheme!r}", Reason.UNAUTHENTICATED
                    )
                name = await hook(scheme, credential, ctx)
                returned: object = name  # an untyped hook may return anything
                if not isinstance(returned, str) or not name:
                    raise ChannelError(
                        "authenticator returned no principal", Reason.UNAUTHENTICATED
                    )
        except Error as exc:
            shared.logs.limited("auth", "refused: authentication failed [%s]", exc.reason.value)
            raise _Close(exc) from None
        session.principal = Principal(name, scheme)
        log.info("authenticated %r (%s)", name, scheme)
        return {"principal": name}

    async def _attest(self, args: dict[str, Any], session: _Session, shared: _Shared) -> Any:
        # ATT-6: only a nonce is taken from the caller; anything else is refused.
        if set(args) != {"nonce"} or not isinstance(args["nonce"], bytes):
            raise ChannelError(
                "attest takes exactly one argument: nonce (bytes); public_key and "
                "user_data are always the enclave's own",
                Reason.INVALID_ARGUMENT,
            )
        nonce: bytes = args["nonce"]
        if not MIN_NONCE <= len(nonce) <= MAX_NONCE:
            raise ChannelError(
                f"nonce must be {MIN_NONCE}..{MAX_NONCE} bytes", Reason.INVALID_ARGUMENT
            )
        # Per connection first, then the app-wide budget shared by every connection:
        # reconnecting buys a fresh per-connection bucket, never more NSM calls.
        if not session.attest.take():
            self.counters["limit_attest_rate"] += 1
            shared.logs.limited("attest_conn", "limit enforced: attest rate on one connection")
            raise self._strike(
                session,
                shared,
                ChannelError("too many attestation requests", Reason.RATE_LIMITED),
            )
        if not shared.attest_app.take():
            self.counters["limit_attest_rate"] += 1
            shared.logs.limited("attest_app", "limit enforced: app-wide attest rate")
            raise self._strike(
                session,
                shared,
                ChannelError("too many attestation requests (app-wide)", Reason.RATE_LIMITED),
            )
        async with shared.nsm_slots:
            self.counters["nsm_calls"] += 1
            document = await asyncio.to_thread(shared.identity.attest_nonce, shared.nsm, nonce)
        return {"document": document}

    def run(self, config: AppConfig | None = None, *, nsm: ReadOnlyNsm | None = None) -> None:
        """Start and serve until SIGTERM or SIGINT (blocking)."""

        async def main() -> None:
            app = await self.start(config, nsm=nsm)
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            log.info("%s: stopping", self.name)
            await app.close()

        asyncio.run(main())


def _fingerprint(public_key: bytes) -> str:
    import hashlib

    return hashlib.sha256(public_key).hexdigest()[:16]
