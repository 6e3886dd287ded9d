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
from nitroguard.transport import Address, parse_address
from nitroguard.transport.proxy import Allowlist, ProxyConfig, start_proxy


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
    parser.set_defaults(func=_run)


async def _main(config: ProxyConfig) -> int:
    def ready(address: Address) -> None:
        sys.stdout.write(f"listening on {address}\n")
        sys.stdout.flush()

    async with stop_on_signals() as stop:
        server, counters = await start_proxy(config, ready=ready)
        await close_when_stopped(server, stop)
        sys.stderr.write(
            f"nitroguard proxy: stopped; server {server.counters.snapshot()} "
            f"proxy {counters.snapshot()}\n"
        )
    return 0


def _run(args: argparse.Namespace) -> int:
    config = ProxyConfig(
        listen=parse_address(args.listen),
        to=parse_address(args.to),
        allow=Allowlist.parse(args.allow),
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
        connect_timeout=args.connect_timeout,
    )
    return asyncio.run(_main(config))
