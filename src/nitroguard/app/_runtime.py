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
import functools
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from nitroguard._resource import AsyncResource
from nitroguard.app._authz import (
    ANYONE,
    AUTHENTICATED,
    RESERVED,
    AllowSpec,
    Authenticator,
    CallContext,
    Operation,
    Principal,
)
from nitroguard.app._config import AppConfig, Mode
from nitroguard.app._limits import Bucket, LogLimiter
from nitroguard.app._session import Shared, serve_channel
from nitroguard.channel._aio import MAX_FRAME, ChannelServer, SecureChannel, serve
from nitroguard.channel._auth import TrustedKeys
from nitroguard.channel._handshake import ServerIdentity, channel_user_data
from nitroguard.channel._messages import BufferBudget
from nitroguard.errors import ChannelError, ConfigError, Error, InsecureEnvironment, Reason
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
    "StartHook",
]

#: ``await hook(nsm)`` in `EnclaveApp.start` (see `EnclaveApp.on_start`).
StartHook = Callable[[ReadOnlyNsm], Awaitable[None]]

log = logging.getLogger("nitroguard.app")

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

        The caller is then known as ``f"{scheme}:{name}"`` (``token:carol``): names
        are scoped by scheme, so a hook can never make a caller into a trusted-key
        principal (``alice``) or into another scheme's. The name must match the
        trusted-key name rule (1-128 of ``A-Za-z0-9_.@+-``), or the caller is refused.

        Raises:
            ConfigError: the scheme is ``key`` (built in), already registered, or not
                1-32 of ``a-z0-9_-``.
        """
        if scheme == "key" or scheme in self._authenticators or not _SCHEME.fullmatch(scheme):
            raise ConfigError(
                f"authentication scheme {scheme!r} is built in, registered, or not 1-32 of a-z0-9_-"
            )

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
        from nitroguard.nsm import open as open_nsm

        config = config if config is not None else AppConfig.from_env()
        if nsm is None:
            nsm = open_nsm(config.nsm)
        log.info("%s: starting in %s mode", self.name, config.mode.value)
        findings = await _audit(self.name, config, nsm, probe)  # (1) fail closed in production
        await _seed(self.name, config, nsm)  # (2) entropy before any key exists
        # (3) Keys, only now.
        identity = ServerIdentity.generate(os.urandom, service=self.name)
        trusted = self._trusted(config)
        self._log_access(trusted)
        await self._run_start_hooks(nsm)
        # (4) Serve, logging every limit.
        limits = config.limits()
        max_request = min(config.max_request, config.max_message)
        _log_limits(config, limits, max_request)
        shared = Shared(
            config=config,
            identity=identity,
            nsm=nsm,
            nsm_slots=asyncio.Semaphore(config.attest_concurrency),
            attest_app=Bucket(config.attest_app_per_minute, config.attest_app_burst, self._clock),
            logs=LogLimiter(config.log_interval, self._clock),
            trusted=trusted,
            ops=self._ops,
            authenticators=self._authenticators,
            counters=self.counters,
            clock=self._clock,
        )
        budget = BufferBudget(config.buffer_budget)

        async def on_channel(channel: SecureChannel) -> None:
            await serve_channel(channel, shared)

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

    def run(self, config: AppConfig | None = None, *, nsm: ReadOnlyNsm | None = None) -> None:
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
        from nitroguard.attestation import load_pem_roots

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


_SCHEME = re.compile(r"[a-z0-9_-]{1,32}")


def _fingerprint(public_key: bytes) -> str:
    import hashlib

    return hashlib.sha256(public_key).hexdigest()[:16]


async def _audit(name: str, config: AppConfig, nsm: ReadOnlyNsm, probe: Any) -> Sequence[Finding]:
    """Start-up step 1: fail closed in production, warn in development."""
    from nitroguard import audit

    roots = _audit_roots(config, nsm)
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
        log.info("%s: environment audit passed", name)
        return findings
    findings = await asyncio.to_thread(audit.run, probe, nsm, roots=roots)
    if roots is None and not _is_device(nsm):
        findings = [_root_not_given(f) for f in findings]
    log.warning("%s: DEVELOPMENT MODE: the audit below is NOT enforced; never deploy this", name)
    for finding in findings:
        if finding.status is not Status.PASS:
            log.warning(
                "audit (not enforced) %s %s: %s",
                finding.id,
                finding.status.value,
                finding.evidence,
            )
    return findings


async def _seed(name: str, config: AppConfig, nsm: ReadOnlyNsm) -> None:
    """Start-up step 2: NSM entropy into the kernel pool before any key exists (RNG-1/4)."""
    from nitroguard.audit import seed_from_nsm

    credit = 8 if config.mode is Mode.PRODUCTION else 0
    report = await asyncio.to_thread(
        seed_from_nsm,
        nsm,
        config.seed_bytes,
        device=config.random_device,
        bits_per_byte=credit,
    )
    log.info("%s: seeded %d NSM bytes (%s)", name, report.nbytes, report.method)


def _log_limits(config: AppConfig, limits: ServerLimits, max_request: int) -> None:
    """Log every limit at start (and warn when the worst-case memory exceeds the budget)."""
    for field in dataclasses.fields(limits):
        log.info("limit: %s=%s", field.name, getattr(limits, field.name))
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
