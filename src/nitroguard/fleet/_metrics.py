"""Prometheus collectors over nitroguard's live counters (issue 16, section 2).

The server, proxy and health monitor already count everything in plain
dataclasses; these collectors read them *at scrape time*, so the hot paths pay
nothing for metrics. Each process object gets its own `CollectorRegistry`
(never the global default one), so two servers in one process, or two tests,
never share numbers.

Label values are drawn only from closed sets (timeout kinds, ``up``/``down``,
``ok``/``fail``, the stable `Reason` enum): no metric can carry a secret, an
address or any other unbounded value.

``prometheus-client`` is an optional dependency (``nitroguard[metrics]``);
it is imported when a registry is built, and a missing package is a
`ConfigError` that names the extra.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from nitroguard.errors import ConfigError, Reason

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from nitroguard.transport import Counters
    from nitroguard.transport.proxy import ProxyCounters

__all__ = [
    "MAX_ENCLAVE_METRICS",
    "new_registry",
    "reason_label",
    "register_enclave",
    "register_proxy",
    "register_server",
    "render",
    "sanitize_enclave_metrics",
]

#: The most counters accepted from an enclave's ``metrics`` operation.
MAX_ENCLAVE_METRICS: Final = 64
_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_REASONS: Final = frozenset(r.value for r in Reason)


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:  # pragma: no cover - the dev extra installs it
        raise ConfigError(
            "metrics need the optional prometheus-client package: pip install 'nitroguard[metrics]'"
        ) from None
    return prometheus_client


def new_registry() -> CollectorRegistry:
    """A fresh registry for one process object (not the global default one).

    Raises:
        ConfigError: ``prometheus-client`` is not installed.
    """
    registry: CollectorRegistry = _client().CollectorRegistry(auto_describe=False)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text exposition format."""
    body: bytes = _client().generate_latest(registry)
    return body


def reason_label(reason: object) -> str:
    """A metric label for `reason`: its value when it is a `Reason`, else ``internal_error``."""
    text = str(getattr(reason, "value", reason))
    return text if text in _REASONS else Reason.INTERNAL_ERROR.value


class _FuncCollector:
    """A collector whose ``collect`` is a function (read at scrape time)."""

    def __init__(self, func: Callable[[], Iterator[Metric]]) -> None:
        self._func = func

    def collect(self) -> Iterator[Metric]:
        return self._func()


def _counter(name: str, doc: str, value: float, labels: Mapping[str, str] | None = None) -> Any:
    core = _client().metrics_core
    if labels:
        family = core.CounterMetricFamily(name, doc, labels=list(labels))
        family.add_metric(list(labels.values()), value)
        return family
    return core.CounterMetricFamily(name, doc, value=value)


def register_server(registry: CollectorRegistry, counters: Counters, prefix: str) -> None:
    """Export a transport `Counters` under ``<prefix>_*`` (e.g. ``nitroguard_server``)."""
    core = _client().metrics_core

    def collect() -> Iterator[Metric]:
        c = counters
        yield _counter(f"{prefix}_connections_accepted", "Connections accepted.", c.accepted)
        yield _counter(
            f"{prefix}_connections_refused",
            "Connections closed at once: the max-connections cap (or shutdown).",
            c.refused,
        )
        yield core.GaugeMetricFamily(
            f"{prefix}_connections_active", "Connections being handled now.", value=c.active
        )
        timeouts = core.CounterMetricFamily(
            f"{prefix}_timeouts", "Connections closed by a timeout, by kind.", labels=["kind"]
        )
        for kind, n in sorted(c.timeouts.items()):
            timeouts.add_metric([kind], n)
        yield timeouts
        yield _counter(
            f"{prefix}_protocol_errors",
            "Connections closed for a framing violation.",
            c.protocol_errors,
        )
        yield _counter(
            f"{prefix}_handler_errors",
            "Handler failures (each closed one connection).",
            c.handler_errors,
        )
        yield _counter(f"{prefix}_disconnects", "Connections reset by the peer.", c.disconnects)
        yield _counter(
            f"{prefix}_accept_errors", "accept(2) failures survived (EMFILE, ...).", c.accept_errors
        )
        yield _counter(
            f"{prefix}_received_bytes", "Bytes received through the stream layer.", c.bytes_in
        )
        yield _counter(f"{prefix}_sent_bytes", "Bytes sent through the stream layer.", c.bytes_out)

    registry.register(_FuncCollector(collect))


def register_proxy(
    registry: CollectorRegistry, counters: ProxyCounters, relay_path: str = "copy"
) -> None:
    """Export `ProxyCounters` under ``nitroguard_proxy_*``."""
    core = _client().metrics_core

    def collect() -> Iterator[Metric]:
        c = counters
        yield _counter(
            "nitroguard_proxy_egress_denied",
            "Connections refused by the egress allowlist (name or resolved address).",
            c.denied,
        )
        yield _counter(
            "nitroguard_proxy_peer_refused",
            "Connections refused because the peer's CID is not --allow-cid (none forwarded).",
            c.peer_refused,
        )
        yield _counter(
            "nitroguard_proxy_upstream_failures",
            "Upstream resolutions or connects that failed or timed out.",
            c.upstream_failures,
        )
        moved = core.CounterMetricFamily(
            "nitroguard_proxy_bytes",
            "Bytes relayed, by direction (up: client to upstream).",
            labels=["direction"],
        )
        moved.add_metric(["up"], c.bytes_up)
        moved.add_metric(["down"], c.bytes_down)
        yield moved
        yield _counter("nitroguard_proxy_half_closes", "EOFs propagated as SHUT_WR.", c.half_closes)
        info = core.GaugeMetricFamily(
            "nitroguard_proxy_relay_path",
            "1 for the relay path in use (splice: zero-copy; copy: through Python).",
            labels=["path"],
        )
        info.add_metric([relay_path], 1)
        yield info

    registry.register(_FuncCollector(collect))


def sanitize_enclave_metrics(raw: object) -> dict[str, int]:
    """Keep only well-formed counters from an enclave's ``metrics`` reply.

    At most `MAX_ENCLAVE_METRICS` names matching ``[a-z][a-z0-9_]*`` (63 chars
    at most) with non-negative integer values; anything else is dropped, so a
    reply can never create unbounded series.
    """
    out: dict[str, int] = {}
    if not isinstance(raw, dict):
        return out
    for name, value in raw.items():
        if len(out) >= MAX_ENCLAVE_METRICS:
            break
        if (
            isinstance(name, str)
            and _NAME_RE.match(name)
            and isinstance(value, int)
            and not isinstance(value, bool)
            and 0 <= value < 1 << 63
        ):
            out[name] = value
    return out


def register_enclave(registry: CollectorRegistry, source: Callable[[], Mapping[str, int]]) -> None:
    """Re-export the enclave's own counters as ``enclave_<name>`` (read at scrape time)."""
    core = _client().metrics_core

    def collect() -> Iterator[Metric]:
        for name, value in sorted(source().items()):
            yield core.CounterMetricFamily(
                f"enclave_{name}",
                f"Enclave counter {name} (from its metrics operation).",
                value=value,
            )

    registry.register(_FuncCollector(collect))
