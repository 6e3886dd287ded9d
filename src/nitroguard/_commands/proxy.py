"""`nitroguard proxy`: a hardened parent-side TCP/vsock/unix proxy.

Usage::

    # ingress: internet -> enclave
    nitroguard proxy --listen tcp://0.0.0.0:443 --to vsock://16:5000
    # egress: enclave -> one allowlisted TCP service
    nitroguard proxy --listen vsock://any:8000 --to tcp://kms.eu-west-1.amazonaws.com:443 \\
        --allow kms.eu-west-1.amazonaws.com:443

Prints ``listening on ADDRESS`` once ready; exits 0 on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from nitroguard._commands.serve import (
    _positive_float,
    _positive_int,
    close_when_stopped,
    stop_on_signals,
)
from nitroguard.errors import ConfigError
from nitroguard.transport import Address, parse_address
from nitroguard.transport.proxy import Allowlist, ProxyConfig, relay_path, start_proxy


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `proxy` subcommand."""
    parser = sub.add_parser(
        "proxy",
        help="hardened parent-side proxy (ingress TCP->vsock, egress vsock->allowlisted TCP)",
        description="Forward every connection from --listen to --to with caps, idle timeout, "
        "half-close propagation and an optional egress allowlist.",
    )
    parser.add_argument("--listen", required=True, metavar="ADDRESS", help="where clients connect")
    parser.add_argument("--to", required=True, metavar="ADDRESS", help="where to forward")
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="egress allowlist entry (name, IP or CIDR); repeatable; checked on every connection",
    )
    parser.add_argument(
        "--max-connections", type=_positive_int, default=1024, metavar="N", help="default 1024"
    )
    parser.add_argument(
        "--idle-timeout", type=_positive_float, default=60.0, metavar="S", help="default 60"
    )
    parser.add_argument(
        "--connect-timeout", type=_positive_float, default=5.0, metavar="S", help="default 5"
    )
    parser.add_argument(
        "--allow-cid",
        action="append",
        type=_positive_int,
        default=None,
        metavar="N",
        help="serve only vsock peers with this CID (repeatable; vsock listeners only); "
        "others are refused and counted before a byte is forwarded",
    )
    parser.add_argument(
        "--relay",
        choices=["auto", "splice", "copy"],
        default="auto",
        help="auto (default): zero-copy splice(2) where it works, else copy through Python",
    )
    from nitroguard._commands._metrics import add_metrics_argument

    add_metrics_argument(parser)
    parser.set_defaults(func=_run)


async def _main(config: ProxyConfig, metrics_listen: str | None = None) -> int:
    from nitroguard._commands._metrics import start_metrics

    def ready(address: Address) -> None:
        sys.stdout.write(f"listening on {address} (relay: {relay_path(config.relay)})\n")
        sys.stdout.flush()

    async with stop_on_signals() as stop:
        server, counters = await start_proxy(config, ready=ready)
        try:
            from nitroguard.fleet import register_proxy, register_server

            def fill(registry: Any) -> None:
                register_server(registry, server.counters, "nitroguard_proxy_server")
                register_proxy(registry, counters, relay_path(config.relay))

            metrics = await start_metrics(metrics_listen, fill)
        except BaseException:
            await server.close()
            raise
        await close_when_stopped(server, stop)
        if metrics is not None:
            await metrics.close()
        sys.stderr.write(
            f"nitroguard proxy: stopped; server {server.counters.snapshot()} "
            f"proxy {counters.snapshot()}\n"
        )
    return 0


def _run(args: argparse.Namespace) -> int:
    listen = parse_address(args.listen)
    if args.allow_cid is not None and listen.kind != "vsock":
        raise ConfigError("--allow-cid needs a vsock listener (--listen vsock://any:PORT)")
    config = ProxyConfig(
        listen=listen,
        to=parse_address(args.to),
        allow=Allowlist.parse(args.allow),
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
        connect_timeout=args.connect_timeout,
        allow_cids=None if args.allow_cid is None else frozenset(args.allow_cid),
        relay=args.relay,
    )
    return asyncio.run(_main(config, args.metrics_listen))
