"""Attested health checks for a parent-side sidecar (issue 16, section 1).

Every check opens an attested channel to the enclave with the *same* client code
relying parties use (`connect_blocking` + `DocumentCheck` with the operator's PCR
policy, `MaxAge` and `NotDebug`), makes one round trip (the app's ``metrics``
operation) and closes. A wrong image (``pcr_mismatch``), a debug-mode enclave
(``debug_mode``), a stale document (``stale_document``) or any transport failure
makes the enclave not ready; the reason is one `Reason` value, so it is safe to
use as a metric label.

Readiness is "the last check succeeded, and it finished within two intervals":
a sidecar whose checks hang becomes not ready by itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from cryptography import x509

from nitroguard.attestation.policy import Policy
from nitroguard.errors import ConfigError, Error, Reason
from nitroguard.fleet._metrics import reason_label, register_enclave, sanitize_enclave_metrics

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from nitroguard.channel import ClientKey
    from nitroguard.transport import Address

__all__ = ["LATENCY_BUCKETS", "CheckResult", "HealthMonitor"]

log = logging.getLogger("nitroguard.health")

#: Histogram buckets (seconds) for the check latency: a handshake is milliseconds.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        ok: the channel was established and the round trip answered.
        reason: why it failed (``None`` when ok).
        message: a human-readable diagnosis (never exported as a label).
        latency: seconds from connect to close.
        finished: monotonic time the check ended.
        enclave_metrics: the enclave's own counters (empty when it does not expose them).
    """

    ok: bool
    reason: Reason | None
    message: str
    latency: float
    finished: float
    enclave_metrics: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "ready": self.ok,
            "reason": None if self.reason is None else self.reason.value,
            "message": self.message,
            "latency_seconds": round(self.latency, 6),
            "enclave_metrics": dict(self.enclave_metrics),
        }


class HealthMonitor:
    """Runs attested checks against one enclave address and keeps the results.

    Args:
        address: the enclave's channel address (``vsock://CID:PORT``, or TCP in tests).
        policy: what the enclave must be (pin the PCRs). `MaxAge` and `NotDebug`
            are always added by `DocumentCheck`.
        roots: trust roots (default: the pinned AWS root).
        service: the `EnclaveApp` name its documents bind (`DocumentCheck(service=)`);
            None accepts only the bare channel label.
        client_key: authenticate with this key before calling ``metrics`` (the app
            decides with ``expose_metrics(allow=...)`` who may read its counters);
            None calls it anonymously.
        interval: seconds between checks (readiness lapses after two of them).
        timeout: bound on connect, each handshake step and the round trip.
        max_age: seconds a document may be old.
        clock: monotonic clock (injected in tests).
        wall_clock: aware UTC clock for the document checks (injected in tests).

    Raises:
        ConfigError: a non-positive interval or timeout.
    """

    def __init__(
        self,
        address: str | Address,
        policy: Policy,
        *,
        roots: Sequence[x509.Certificate] | None = None,
        service: str | None = None,
        client_key: ClientKey | None = None,
        interval: float = 10.0,
        timeout: float = 5.0,
        max_age: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], Any] | None = None,
    ) -> None:
        for name, value in (("interval", interval), ("timeout", timeout), ("max_age", max_age)):
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        from nitroguard.channel import DocumentCheck

        self.address = address
        self.interval = interval
        self.timeout = timeout
        self._clock = clock
        self._client_key = client_key
        kwargs: dict[str, Any] = {"roots": roots, "max_age": max_age, "service": service}
        if wall_clock is not None:
            kwargs["clock"] = wall_clock
        # One check object for the sidecar's lifetime: its verifier's chain cache stays
        # warm; time-dependent rules are re-evaluated on every check (see DocumentCheck).
        self._check = DocumentCheck(policy, **kwargs)
        self._lock = threading.Lock()
        self.last: CheckResult | None = None
        self.last_success: float | None = None
        self.results: dict[tuple[str, str], int] = {}
        self.verifications: dict[tuple[str, str], int] = {}
        self._latencies: list[int] = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._latency_count = 0

    # -- checks -------------------------------------------------------------

    def check_once(self) -> CheckResult:
        """Run one check now (blocking) and record it."""
        from nitroguard.app import AppClient
        from nitroguard.channel import connect_blocking
        from nitroguard.errors import AppError

        start = self._clock()
        reason: Reason | None = None
        message = "ready"
        enclave: dict[str, int] = {}
        verified = False
        try:
            channel = connect_blocking(self.address, check=self._check, timeout=self.timeout)
            verified = True
            with channel:
                client = AppClient(channel, self._check)
                if self._client_key is not None:
                    # A refused key is a failed check: the operator configured it.
                    client.authenticate(self._client_key)
                try:
                    enclave = sanitize_enclave_metrics(client.call("metrics"))
                except AppError as exc:
                    # The app answered over the attested channel: it is serving, it just
                    # does not open `metrics` to us.
                    log.debug("enclave metrics unavailable: %s", exc.diagnostics())
        except Error as exc:
            reason, message = exc.reason, exc.diagnostics()
        except OSError as exc:
            reason, message = Reason.CONNECTION_REFUSED, f"connection failed: {exc}"
        except Exception as exc:  # a bug must not stop the sidecar's checks
            log.exception("health check raised")
            reason, message = Reason.INTERNAL_ERROR, f"check failed: {type(exc).__name__}"
        end = self._clock()
        result = CheckResult(reason is None, reason, message, end - start, end, enclave)
        self._record(result, verified)
        return result

    def _record(self, result: CheckResult, verified: bool) -> None:
        label = "ok" if result.ok else reason_label(result.reason)
        # An attestation verification happened iff the handshake got as far as checking
        # a document: either it passed, or it failed with an attestation reason.
        attestation_failed = result.reason is not None and _is_attestation_reason(result.reason)
        with self._lock:
            self.last = result
            if result.ok:
                self.last_success = result.finished
            key = ("ok", "") if result.ok else ("fail", label)
            self.results[key] = self.results.get(key, 0) + 1
            if verified or attestation_failed:
                vkey = ("ok", "") if verified else ("fail", label)
                self.verifications[vkey] = self.verifications.get(vkey, 0) + 1
            for i, bound in enumerate(LATENCY_BUCKETS):
                if result.latency <= bound:
                    self._latencies[i] += 1
                    break
            else:
                self._latencies[-1] += 1
            self._latency_sum += result.latency
            self._latency_count += 1
        if result.ok:
            log.info("check ok in %.3f s", result.latency)
        else:
            log.warning("not ready: %s", result.message)

    def ready(self) -> bool:
        """True while the last check succeeded and ended within two intervals."""
        with self._lock:
            last, success = self.last, self.last_success
        return (
            last is not None
            and last.ok
            and success is not None
            and self._clock() - success <= 2 * self.interval
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Check every `interval` seconds until `stop` is set (checks run in a thread)."""
        while not stop.is_set():
            await asyncio.to_thread(self.check_once)
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                continue

    # -- metrics ------------------------------------------------------------

    def register(self, registry: CollectorRegistry) -> None:
        """Export health metrics (and the enclave's counters as ``enclave_*``)."""
        from prometheus_client.metrics_core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        monitor = self

        class _Collector:
            def collect(self) -> Iterator[Metric]:
                with monitor._lock:
                    results = dict(monitor.results)
                    verifications = dict(monitor.verifications)
                    buckets = list(monitor._latencies)
                    total = monitor._latency_sum
                    success = monitor.last_success
                checks = CounterMetricFamily(
                    "nitroguard_health_checks",
                    "Attested health checks, by result and reason.",
                    labels=["result", "reason"],
                )
                for (res, why), n in sorted(results.items()):
                    checks.add_metric([res, why], n)
                yield checks
                verif = CounterMetricFamily(
                    "nitroguard_attestation_verifications",
                    "Attestation document verifications by the sidecar, by result and reason.",
                    labels=["result", "reason"],
                )
                for (res, why), n in sorted(verifications.items()):
                    verif.add_metric([res, why], n)
                yield verif
                cumulative, acc = [], 0
                for bound, n in zip((*LATENCY_BUCKETS, math.inf), buckets, strict=True):
                    acc += n
                    cumulative.append(("+Inf" if bound == math.inf else repr(bound), acc))
                yield HistogramMetricFamily(
                    "nitroguard_health_check_duration_seconds",
                    "Seconds per health check (connect, handshake, round trip, close).",
                    buckets=cumulative,
                    sum_value=total,
                )
                yield GaugeMetricFamily(
                    "nitroguard_health_ready",
                    "1 while /readyz answers 200.",
                    value=1 if monitor.ready() else 0,
                )
                age = math.nan if success is None else monitor._clock() - success
                yield GaugeMetricFamily(
                    "nitroguard_health_last_success_age_seconds",
                    "Seconds since the last successful check (NaN before the first).",
                    value=age,
                )

        registry.register(_Collector())

        def enclave() -> Mapping[str, int]:
            last = monitor.last
            return {} if last is None else last.enclave_metrics

        register_enclave(registry, enclave)


_ATTESTATION_REASONS: Final = frozenset(
    {
        Reason.DEBUG_MODE,
        Reason.PCR_MISMATCH,
        Reason.PCR_MISSING,
        Reason.STALE_DOCUMENT,
        Reason.FUTURE_DOCUMENT,
        Reason.POLICY_FAILED,
        Reason.UNTRUSTED_ROOT,
        Reason.EXPIRED_CERTIFICATE,
        Reason.NOT_YET_VALID_CERTIFICATE,
        Reason.INVALID_CERTIFICATE,
        Reason.INVALID_CHAIN,
        Reason.BAD_SIGNATURE,
        Reason.INVALID_DOCUMENT,
        Reason.MISSING_FIELD,
        Reason.INVALID_FIELD,
        Reason.UNKNOWN_FIELD,
        Reason.MALFORMED_COSE,
        Reason.PUBLIC_KEY_MISMATCH,
        Reason.USER_DATA_MISMATCH,
        Reason.KEY_BINDING_MISMATCH,
    }
)


def _is_attestation_reason(reason: Reason) -> bool:
    return reason in _ATTESTATION_REASONS
