"""`nitroguard serve`: a framed echo service (and two comparison demos) on the hardened server.

Usage::

    nitroguard serve echo --listen vsock://any:5000
    nitroguard serve echo --listen tcp://127.0.0.1:5000 --frame-timeout 2 --idle-timeout 5
    nitroguard serve leaky-compare --listen tcp://127.0.0.1:5000 --secret 00112233 [--delay-us 50]
    nitroguard serve constant-compare --listen tcp://127.0.0.1:5000 --secret 00112233

``leaky-compare`` and ``constant-compare`` are demonstrations for
``nitroguard probe leak`` (SC-1, SC-3): a guess is compared with the secret,
byte by byte with a per-matching-byte delay and an ``ok``/``denied`` reply
(leaks by timing and length), or with `hmac.compare_digest` and replies padded
to 16 bytes. Never deploy ``leaky-compare``.

Prints ``listening on ADDRESS`` (the bound address) on stdout once ready and
exits 0 on SIGTERM or SIGINT after a graceful shutdown. A payload starting with
``sleep:SECONDS`` is echoed after that delay (for the probe's slow-handler attack).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

from nitroguard._commands._common import parse_hex
from nitroguard._commands._demo.compare import (
    DEFAULT_DELAY,
    constant_compare_handler,
    leaky_compare_handler,
)
from nitroguard._commands._demo.echo import echo_handler
from nitroguard.errors import ConfigError
from nitroguard.transport import Address, Handler, Server, ServerLimits, parse_address, serve


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


#: leaky-compare's busy work per matching byte is bounded: a second per byte already
#: makes a demo unusable, and a huge value would hang the service.
_MAX_DELAY_US = 1e6


def _delay_us(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of microseconds: {text!r}") from None
    if not 0 < value <= _MAX_DELAY_US:
        raise argparse.ArgumentTypeError(
            f"must be a positive number of microseconds, at most {_MAX_DELAY_US:g}: {text!r}"
        )
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
        help="run a hardened framed service (echo; leaky-compare/constant-compare demos)",
        description=(
            "Run a framed service on the hardened server (VS-1, VS-2, VS-3, MEM-1). "
            "leaky-compare and constant-compare are SC-1/SC-3 demonstrations for "
            "'nitroguard probe leak': never deploy leaky-compare."
        ),
    )
    parser.add_argument(
        "service",
        choices=["echo", "leaky-compare", "constant-compare"],
        help="the service to run",
    )
    parser.add_argument(
        "--listen",
        required=True,
        metavar="ADDRESS",
        help="vsock://CID:PORT, vsock://any:PORT, tcp://HOST:PORT or unix:///path",
    )
    parser.add_argument(
        "--secret",
        metavar="HEX",
        default=None,
        help="the secret guesses are compared with (leaky-compare, constant-compare)",
    )
    parser.add_argument(
        "--delay-us",
        type=_delay_us,
        default=DEFAULT_DELAY * 1e6,
        metavar="US",
        help=(
            "leaky-compare: microseconds of busy work per matching byte "
            f"(default {DEFAULT_DELAY * 1e6:g})"
        ),
    )
    add_limit_arguments(parser)
    parser.add_argument(
        "--stats-interval",
        type=_positive_float,
        default=None,
        metavar="S",
        help="log the counters every S seconds (needs -v to show INFO logs)",
    )
    from nitroguard._commands._metrics import add_metrics_argument

    add_metrics_argument(parser)
    parser.set_defaults(func=_run)


def _ready(address: Address) -> None:
    sys.stdout.write(f"listening on {address}\n")
    sys.stdout.flush()


def _handler(args: argparse.Namespace) -> Handler:
    if args.service == "echo":
        if args.secret is not None:
            raise ConfigError("--secret is only for leaky-compare and constant-compare")
        return echo_handler
    if args.secret is None:
        raise ConfigError(f"serve {args.service} needs --secret HEX")
    secret = parse_hex(args.secret, "--secret")
    if not secret:
        raise ConfigError("--secret must not be empty")
    if args.service == "constant-compare":
        return constant_compare_handler(secret)
    sys.stderr.write(
        "nitroguard serve leaky-compare: DEMONSTRATION ONLY: this service leaks the secret "
        "through timing and reply length\n"
    )
    return leaky_compare_handler(secret, args.delay_us / 1e6)


@contextlib.asynccontextmanager
async def stop_on_signals() -> AsyncIterator[asyncio.Event]:
    """An event set by SIGTERM or SIGINT while the block runs (handlers removed after)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def close_when_stopped(server: Server, stop: asyncio.Event) -> None:
    """Wait until `stop` is set or `server` closes by itself, then close it gracefully."""
    stop_wait = asyncio.ensure_future(stop.wait())
    closed_wait = asyncio.ensure_future(server.wait_closed())
    await asyncio.wait([stop_wait, closed_wait], return_when=asyncio.FIRST_COMPLETED)
    stop_wait.cancel()
    closed_wait.cancel()
    await server.close()


async def _main(
    handler: Handler,
    address: Address,
    limits: ServerLimits,
    stats_interval: float | None,
    metrics_listen: str | None = None,
) -> int:
    from nitroguard._commands._metrics import start_metrics

    async with stop_on_signals() as stop:
        server = await serve(handler, address, limits, ready=_ready, stats_interval=stats_interval)
        try:
            from nitroguard.fleet import register_server

            metrics = await start_metrics(
                metrics_listen,
                lambda registry: register_server(registry, server.counters, "nitroguard_server"),
            )
        except BaseException:
            await server.close()
            raise
        await close_when_stopped(server, stop)
        if metrics is not None:
            await metrics.close()
        counters = server.counters.snapshot()
        sys.stderr.write(f"nitroguard serve: stopped; counters {counters}\n")
    return 0


def _run(args: argparse.Namespace) -> int:
    address = parse_address(args.listen)
    limits = limits_from_args(args)
    handler = _handler(args)
    return asyncio.run(_main(handler, address, limits, args.stats_interval, args.metrics_listen))
