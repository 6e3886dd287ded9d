"""`nitroguard serve echo`: a framed echo service on the hardened server.

Usage::

    nitroguard serve echo --listen vsock://any:5000
    nitroguard serve echo --listen tcp://127.0.0.1:5000 --frame-timeout 2 --idle-timeout 5

Prints ``listening on ADDRESS`` (the bound address) on stdout once ready and
exits 0 on SIGTERM or SIGINT after a graceful shutdown. A payload starting with
``sleep:SECONDS`` is echoed after that delay (for the probe's slow-handler attack).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from nitroguard.transport import Address, ServerLimits, parse_address, serve
from nitroguard.transport._echo import echo_handler


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ServerLimits` options shared by `serve` (defaults are ServerLimits')."""
    d = ServerLimits()
    parser.add_argument(
        "--max-connections",
        type=_positive_int,
        default=d.max_connections,
        metavar="N",
        help=f"connections handled at once; more are closed at once (default {d.max_connections})",
    )
    parser.add_argument(
        "--max-frame-size",
        type=_positive_int,
        default=d.max_frame_size,
        metavar="BYTES",
        help=f"largest frame payload (default {d.max_frame_size})",
    )
    parser.add_argument(
        "--first-byte-timeout",
        type=_positive_float,
        default=d.first_byte_timeout,
        metavar="S",
        help=f"seconds from accept to the first byte (default {d.first_byte_timeout:g})",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_positive_float,
        default=d.idle_timeout,
        metavar="S",
        help=f"seconds allowed between frames (default {d.idle_timeout:g})",
    )
    parser.add_argument(
        "--frame-timeout",
        type=_positive_float,
        default=d.frame_timeout,
        metavar="S",
        help=f"absolute s from a frame's first byte to its end (default {d.frame_timeout:g})",
    )
    parser.add_argument(
        "--write-timeout",
        type=_positive_float,
        default=d.write_timeout,
        metavar="S",
        help=f"seconds a reply may wait for a non-reading peer (default {d.write_timeout:g})",
    )
    parser.add_argument(
        "--max-lifetime",
        type=_positive_float,
        default=None,
        metavar="S",
        help="optional cap on a connection's duration (default: none)",
    )
    parser.add_argument(
        "--max-handlers",
        type=_positive_int,
        default=d.max_concurrent_handlers,
        metavar="N",
        help=f"requests processed at once (default {d.max_concurrent_handlers})",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=_positive_float,
        default=d.shutdown_grace,
        metavar="S",
        help=f"seconds to drain on SIGTERM before cancelling (default {d.shutdown_grace:g})",
    )


def limits_from_args(args: argparse.Namespace) -> ServerLimits:
    """Build `ServerLimits` from the options added by `add_limit_arguments`."""
    return ServerLimits(
        max_connections=args.max_connections,
        max_frame_size=args.max_frame_size,
        first_byte_timeout=args.first_byte_timeout,
        idle_timeout=args.idle_timeout,
        frame_timeout=args.frame_timeout,
        write_timeout=args.write_timeout,
        max_lifetime=args.max_lifetime,
        max_concurrent_handlers=args.max_handlers,
        shutdown_grace=args.shutdown_grace,
    )


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `serve` subcommand."""
    parser = sub.add_parser(
        "serve",
        help="run a hardened framed service (echo)",
        description="Run a framed service on the hardened server (VS-1, VS-2, VS-3, MEM-1).",
    )
    parser.add_argument("service", choices=["echo"], help="the service to run")
    parser.add_argument(
        "--listen",
        required=True,
        metavar="ADDRESS",
        help="vsock://CID:PORT, vsock://any:PORT, tcp://HOST:PORT or unix:///path",
    )
    add_limit_arguments(parser)
    parser.add_argument(
        "--stats-interval",
        type=_positive_float,
        default=None,
        metavar="S",
        help="log the counters every S seconds (needs -v to show INFO logs)",
    )
    parser.set_defaults(func=_run)


def _ready(address: Address) -> None:
    sys.stdout.write(f"listening on {address}\n")
    sys.stdout.flush()


async def _main(address: Address, limits: ServerLimits, stats_interval: float | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        server = await serve(
            echo_handler, address, limits, ready=_ready, stats_interval=stats_interval
        )
        stop_wait = asyncio.ensure_future(stop.wait())
        closed_wait = asyncio.ensure_future(server.wait_closed())
        await asyncio.wait([stop_wait, closed_wait], return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        closed_wait.cancel()
        await server.close()
        counters = server.counters.snapshot()
        sys.stderr.write(f"nitroguard serve: stopped; counters {counters}\n")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def _run(args: argparse.Namespace) -> int:
    address = parse_address(args.listen)
    limits = limits_from_args(args)
    return asyncio.run(_main(address, limits, args.stats_interval))
