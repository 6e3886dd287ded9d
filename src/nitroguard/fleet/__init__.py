"""Running enclaves as a fleet: attested health checks and Prometheus metrics.

- `HealthMonitor`: the parent-side sidecar's logic (``nitroguard health``): attested
  checks through the relying-party client, readiness, and health metrics.
- `new_registry`, `register_server`, `register_proxy`: per-object Prometheus
  registries over the transport's live counters (``--metrics-listen``).
- `start_http`, `start_metrics_endpoint`: a bounded HTTP endpoint for
  ``/metrics``, ``/readyz`` and ``/livez``.

Operations guide: ``docs/operations.md``.
"""

from __future__ import annotations

from nitroguard.fleet._health import LATENCY_BUCKETS, CheckResult, HealthMonitor
from nitroguard.fleet._http import (
    MAX_HEAD,
    Route,
    parse_http_listen,
    start_http,
    start_metrics_endpoint,
)
from nitroguard.fleet._metrics import (
    MAX_ENCLAVE_METRICS,
    new_registry,
    reason_label,
    register_enclave,
    register_proxy,
    register_server,
    render,
    sanitize_enclave_metrics,
)

__all__ = [
    "LATENCY_BUCKETS",
    "MAX_ENCLAVE_METRICS",
    "MAX_HEAD",
    "CheckResult",
    "HealthMonitor",
    "Route",
    "new_registry",
    "parse_http_listen",
    "reason_label",
    "register_enclave",
    "register_proxy",
    "register_server",
    "render",
    "sanitize_enclave_metrics",
    "start_http",
    "start_metrics_endpoint",
]
