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
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from nitroguard.app.protocol import decode_request, encode_error, encode_result
from nitroguard.channel._messages import DEFAULT_MAX_MESSAGE
from nitroguard.channel.aio import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_REFRESH_INTERVAL,
    ChannelServer,
    SecureChannel,
    serve,
)
from nitroguard.channel.handshake import MAX_NONCE, MIN_NONCE, ServerIdentity
from nitroguard.errors import ChannelError, ConfigError, Error, InsecureEnvironment, Reason
from nitroguard.findings import Finding, Status
from nitroguard.transport import Address, ServerLimits

__all__ = ["AppConfig", "EnclaveApp", "Mode", "Operation", "RunningApp"]

log = logging.getLogger("nitroguard.app")

Operation = Callable[[dict[str, Any]], Awaitable[Any]]
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
    """[NITROGUARD_NSM] NSM selection for `Nsm.open` (default: /dev/nsm)."""
    max_connections: int = 256
    """[NITROGUARD_MAX_CONNECTIONS] concurrent connections."""
    idle_timeout: float = 60.0
    """[NITROGUARD_IDLE_TIMEOUT] seconds between frames before a connection is dropped."""
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    """[NITROGUARD_HANDSHAKE_TIMEOUT] seconds for a whole channel handshake."""
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL
    """[NITROGUARD_REFRESH_INTERVAL] seconds between attestation document refreshes."""
    max_message: int = DEFAULT_MAX_MESSAGE
    """[NITROGUARD_MAX_MESSAGE] largest request or response in bytes."""
    attest_per_minute: float = 30.0
    """[NITROGUARD_ATTEST_PER_MINUTE] nonce attestations per connection per minute."""
    attest_burst: int = 5
    """Nonce attestations a connection may ask for at once before the rate applies."""
    attest_concurrency: int = 4
    """NSM attestation calls in flight across all connections."""
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
        if "NITROGUARD_MAX_MESSAGE" in env:
            values["max_message"] = int(_env_float(env, "NITROGUARD_MAX_MESSAGE", 1))
        for name, var in (
            ("idle_timeout", "NITROGUARD_IDLE_TIMEOUT"),
            ("handshake_timeout", "NITROGUARD_HANDSHAKE_TIMEOUT"),
            ("refresh_interval", "NITROGUARD_REFRESH_INTERVAL"),
            ("attest_per_minute", "NITROGUARD_ATTEST_PER_MINUTE"),
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


class _Bucket:
    """Token bucket for the nonce attestation endpoint (per connection)."""

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


class RunningApp:
    """A started `EnclaveApp`: its address, identity and lifecycle."""

    def __init__(
        self, server: ChannelServer, config: AppConfig, findings: Sequence[Finding] = ()
    ) -> None:
        self.server = server
        self.config = config
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

    async def close(self) -> None:
        """Stop serving (connections drain within the transport's grace)."""
        await self.server.close()

    async def serve_forever(self) -> None:
        """Serve until cancelled or closed."""
        await self.server.serve_forever()


class EnclaveApp:
    """An enclave application served over the attested channel.

    Example::

        app = EnclaveApp("vault")

        @app.operation("get")
        async def get(args):
            return store.get(args["key"])

        app.run()          # config from NITROGUARD_* environment variables

    Args:
        name: shown in logs.
        clock: monotonic clock for rate limits (injected in tests).
    """

    def __init__(self, name: str = "app", *, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._ops: dict[str, Operation] = {}
        self._clock = clock

    def operation(self, name: str) -> Callable[[_F], _F]:
        """Register ``async def op(args: dict) -> result`` under `name`.

        The result must be CBOR-encodable (bytes, text, ints, bools, None, lists,
        maps). Raise a `nitroguard.errors.Error` to answer with its reason and message.

        Raises:
            ConfigError: `name` is reserved (``attest``) or already registered.
        """
        if name == "attest" or name in self._ops:
            raise ConfigError(f"operation name {name!r} is reserved or already registered")

        def register(func: _F) -> _F:
            self._ops[name] = func
            return func

        return register

    async def start(
        self,
        config: AppConfig | None = None,
        *,
        nsm: Any = None,
        probe: Any = None,
        ready: Callable[[Address], None] | None = None,
    ) -> RunningApp:
        """Audit, seed, generate keys, then serve. Returns once listening.

        Args:
            config: the configuration (default: `AppConfig.from_env()`).
            nsm: an open NSM (default: `Nsm.open(config.nsm)`).
            probe: the audit's `SystemProbe` (default: this machine).
            ready: called with the bound address.

        Raises:
            InsecureEnvironment: production mode and the audit failed.
            NsmError: the NSM is unavailable or failed.
            ConfigError: bad configuration.
        """
        from nitroguard import audit
        from nitroguard.audit.entropy import seed_from_nsm
        from nitroguard.nsm import Nsm

        config = config if config is not None else AppConfig.from_env()
        if nsm is None:
            nsm = Nsm.open(config.nsm)
        log.info("%s: starting in %s mode", self.name, config.mode.value)
        roots = _audit_roots(config, nsm)
        # (1) Audit: fail closed in production, warn in development.
        if config.mode is Mode.PRODUCTION:
            findings = await asyncio.to_thread(
                functools.partial(
                    audit.require_secure_environment,
                    probe,
                    nsm,
                    waive=config.waive,
                    roots=roots,
                    logger=log,
                )
            )
            log.info("%s: environment audit passed", self.name)
        else:
            findings = await asyncio.to_thread(audit.run, probe, nsm, roots=roots)
            if roots is None and not _is_device(nsm):
                findings = [_root_not_given(f) for f in findings]
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
        identity = ServerIdentity.generate(os.urandom)
        # (4) Serve, logging every limit.
        limits = config.limits()
        for field in dataclasses.fields(limits):
            log.info("limit: %s=%s", field.name, getattr(limits, field.name))
        log.info(
            "limit: attest=%s/min per connection (burst %d, %d in flight), max_message=%d",
            config.attest_per_minute,
            config.attest_burst,
            config.attest_concurrency,
            config.max_message,
        )
        nsm_slots = asyncio.Semaphore(config.attest_concurrency)

        async def on_channel(channel: SecureChannel) -> None:
            await self._serve_channel(channel, config, identity, nsm, nsm_slots)

        server = await serve(
            on_channel,
            config.listen,
            nsm,
            limits=limits,
            identity=identity,
            ready=ready,
            refresh_interval=config.refresh_interval,
            handshake_timeout=config.handshake_timeout,
            max_message=config.max_message,
        )
        log.info(
            "%s: serving on %s (identity key sha256 prefix %s)",
            self.name,
            server.address,
            _fingerprint(identity.public_key),
        )
        return RunningApp(server, config, findings)

    async def _serve_channel(
        self,
        channel: SecureChannel,
        config: AppConfig,
        identity: ServerIdentity,
        nsm: Any,
        nsm_slots: asyncio.Semaphore,
    ) -> None:
        bucket = _Bucket(config.attest_per_minute, config.attest_burst, self._clock)
        while True:
            try:
                message = await channel.recv_message()
            except Error as exc:
                if exc.reason is Reason.TOO_LARGE:
                    log.warning("limit enforced: max_message (%s)", exc.message)
                raise
            if message is None:
                return
            try:
                op, args = decode_request(message, max_size=config.max_message)
                result = await self._dispatch(
                    op, args, identity=identity, nsm=nsm, nsm_slots=nsm_slots, bucket=bucket
                )
            except Error as exc:
                await channel.send_message(encode_error(exc))
                continue
            await channel.send_message(encode_result(result))

    async def _dispatch(
        self,
        op: str,
        args: dict[str, Any],
        *,
        identity: ServerIdentity,
        nsm: Any,
        nsm_slots: asyncio.Semaphore,
        bucket: _Bucket,
    ) -> Any:
        if op == "attest":
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
            if not bucket.take():
                log.warning("limit enforced: attest rate on one connection")
                raise ChannelError("too many attestation requests", Reason.RATE_LIMITED)
            async with nsm_slots:
                document = await asyncio.to_thread(
                    identity.attest_nonce, nsm.get_attestation, nonce
                )
            return {"document": document}
        func = self._ops.get(op)
        if func is None:
            raise ChannelError(f"unknown operation {op!r}", Reason.UNKNOWN_OPERATION)
        return await func(args)

    def run(self, config: AppConfig | None = None, *, nsm: Any = None) -> None:
        """Start and serve until SIGTERM or SIGINT (blocking): the application's `main`.

        Logs at INFO on stderr unless the application configured logging itself.
        An expected start-up failure (a bad ``NITROGUARD_*`` setting, no NSM, a port
        in use, a failing audit) prints what failed and how to fix it, without a
        traceback, and exits non-zero (2 for configuration, 1 otherwise).
        """
        if not logging.getLogger().handlers:
            logging.basicConfig(
                level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
            )

        async def main() -> None:
            app = await self.start(config, nsm=nsm)
            sys.stderr.write(f"serving on {app.address}\n")
            sys.stderr.flush()
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            log.info("%s: stopping", self.name)
            await app.close()

        try:
            asyncio.run(main())
        except InsecureEnvironment as exc:
            for finding in exc.findings:
                sys.stderr.write(
                    f"audit {finding.id} {finding.status.value}: {finding.title}\n"
                    f"  evidence: {finding.evidence}\n"
                    + (f"  fix: {finding.remediation}\n" if finding.remediation else "")
                )
            sys.stderr.write(f"{self.name}: refusing to start\n")
            raise SystemExit(1) from None
        except ConfigError as exc:
            sys.stderr.write(f"error: {exc.message}\n")
            raise SystemExit(2) from None
        except Error as exc:
            sys.stderr.write(f"error: {exc.diagnostics()}\n{self.name}: cannot start\n")
            raise SystemExit(1) from None
        except OSError as exc:
            # Binding the listener: a port in use, a socket path we may not create.
            listen = config.listen if config is not None else "the listen address"
            sys.stderr.write(
                f"error: cannot listen on {listen}: {exc.strerror or exc}\n"
                f"{self.name}: cannot start\n"
            )
            raise SystemExit(1) from None


#: Checks that verify the NSM's own attestation document against a root.
_SELF_ATTESTATION_CHECKS = frozenset({"ATT-2", "TIME-3"})


def _is_device(nsm: Any) -> bool:
    from nitroguard.nsm import DeviceNsm

    return isinstance(nsm, DeviceNsm)


def _audit_roots(config: AppConfig, nsm: Any) -> list[Any] | None:
    """Trust roots for the self-attestation: $NITROGUARD_NSM_ROOT, an in-process
    emulator's own root, else None (the pinned AWS root)."""
    if config.nsm_root is not None:
        from nitroguard.attestation.roots import load_pem_roots

        try:
            with open(config.nsm_root, "rb") as fh:
                data = fh.read(1 << 20)
        except OSError as exc:
            raise ConfigError(
                f"$NITROGUARD_NSM_ROOT: cannot read {config.nsm_root}: {exc.strerror}"
            ) from None
        try:
            return list(load_pem_roots(data))
        except ConfigError as exc:
            raise ConfigError(f"$NITROGUARD_NSM_ROOT: {config.nsm_root}: {exc.message}") from None
    if config.mode is Mode.PRODUCTION:
        return None  # production trusts only the pinned AWS root, or an explicit one
    pki = getattr(nsm, "pki", None)
    return [pki.root_certificate] if pki is not None else None


def _root_not_given(finding: Finding) -> Finding:
    """A self-attestation check that failed only because an emulator's document does
    not chain to the AWS root: a skip in development, not a finding."""
    if finding.id in _SELF_ATTESTATION_CHECKS and Reason.UNTRUSTED_ROOT.value in finding.evidence:
        return dataclasses.replace(
            finding,
            status=Status.SKIP,
            evidence="emulator root not given (set $NITROGUARD_NSM_ROOT to the PEM of "
            "`nitroguard nsm pki --export-root`)",
        )
    return finding


def _fingerprint(public_key: bytes) -> str:
    import hashlib

    return hashlib.sha256(public_key).hexdigest()[:16]
