"""``--metrics-listen`` for long-running commands (proxy, serve, health): issue 16."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from nitroguard.transport import Address, Server

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from nitroguard.fleet import Route

__all__ = ["add_metrics_argument", "start_metrics"]


def add_metrics_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--metrics-listen tcp://HOST:PORT``."""
    parser.add_argument(
        "--metrics-listen",
        default=None,
        metavar="ADDRESS",
        help="serve Prometheus /metrics on tcp://HOST:PORT (needs nitroguard[metrics]); "
        "prints 'metrics on ADDRESS' once bound",
    )


def _announce(what: str) -> Callable[[Address], None]:
    def ready(address: Address) -> None:
        sys.stdout.write(f"{what} on {address}\n")
        sys.stdout.flush()

    return ready


async def start_metrics(
    listen: str | None,
    fill: Callable[[CollectorRegistry], None],
    *,
    what: str = "metrics",
    extra: Mapping[str, Route] | None = None,
) -> Server | None:
    """Bind the metrics endpoint when `listen` is set; `fill` registers the collectors."""
    if listen is None:
        return None
    from nitroguard.fleet import new_registry, parse_http_listen, start_metrics_endpoint

    address = parse_http_listen(listen)
    registry = new_registry()
    fill(registry)
    return await start_metrics_endpoint(registry, address, extra=extra, ready=_announce(what))
