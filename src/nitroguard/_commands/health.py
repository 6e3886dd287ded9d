"""`nitroguard health`: the parent-side attested health sidecar (issue 16).

Usage::

    # one check, for scripts: exit 0 ready, 1 not ready, 2 usage
    nitroguard health vsock://16:5000 --channel --service vault --pcr 0=HEX --pcr 8=HEX
    # sidecar: /readyz, /livez, /metrics
    nitroguard health vsock://16:5000 --channel --pcr 0=HEX --interval 10 \\
        --serve http://0.0.0.0:8080

Each check opens the attested channel with the relying parties' client code and the
PCR policy given, makes one round trip and closes. ``/readyz`` is 200 only while the
last check succeeded within two intervals.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from cryptography import x509

from nitroguard._commands._common import read_blob
from nitroguard._commands.attest import _parse_pcr
from nitroguard._commands.serve import _positive_float, stop_on_signals
from nitroguard.attestation import policy as _policy
from nitroguard.errors import ConfigError

if TYPE_CHECKING:
    from nitroguard.channel import ClientKey


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `health` subcommand."""
    parser = sub.add_parser(
        "health",
        help="attested health check / readiness sidecar for an enclave (parent side)",
        description="Open the attested channel to ADDRESS with the PCR policy given, make a "
        "round trip and close: once (exit 0 ready, 1 not ready), or every --interval "
        "seconds with --serve (/readyz, /livez, /metrics).",
    )
    parser.add_argument("address", metavar="ADDRESS", help="the enclave's channel address")
    parser.add_argument(
        "--channel",
        action="store_true",
        required=True,
        help="check over the attested channel (required: the only supported check)",
    )
    parser.add_argument(
        "--root",
        action="append",
        default=[],
        metavar="PEM",
        help="trust root PEM instead of the pinned AWS Root-G1 (repeatable)",
    )
    parser.add_argument(
        "--pcr",
        action="append",
        default=[],
        metavar="N=HEX",
        help="expected PCR value (repeatable; at least one: the image to expect)",
    )
    parser.add_argument(
        "--service",
        default=None,
        metavar="NAME",
        help="the EnclaveApp's name, bound in its documents' user_data (required for apps)",
    )
    parser.add_argument(
        "--client-key",
        default=None,
        metavar="PEM",
        help="authenticate with this client key before reading the app's metrics",
    )
    parser.add_argument(
        "--interval", type=_positive_float, default=10.0, metavar="S", help="default 10"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=5.0,
        metavar="S",
        help="bound on connect, each handshake step and the round trip (default 5)",
    )
    parser.add_argument(
        "--max-age",
        type=_positive_float,
        default=300.0,
        metavar="S",
        help="oldest attestation document accepted (default 300)",
    )
    parser.add_argument(
        "--serve",
        default=None,
        metavar="http://HOST:PORT",
        help="run as a sidecar serving /readyz, /livez and /metrics here",
    )
    from nitroguard._commands._metrics import add_metrics_argument

    add_metrics_argument(parser)
    parser.add_argument("--json", action="store_true", help="one-shot: print the result as JSON")
    parser.set_defaults(func=_run)


def _policy_from(pcrs: list[str]) -> _policy.Policy:
    if not pcrs:
        raise ConfigError("health needs at least one --pcr N=HEX: the image the enclave must run")
    expected: dict[int, bytes] = {}
    for text in pcrs:
        index, value = _parse_pcr(text)
        if index in expected:
            raise ConfigError(f"--pcr {index} given twice")
        expected[index] = value
    return _policy.PCRs(expected)


def _client_key(path: str | None) -> ClientKey | None:
    if path is None:
        return None
    from nitroguard.channel import ClientKey

    return ClientKey.from_pem(read_blob(path, limit=1 << 16, decode_text=False))


def _roots(paths: list[str]) -> list[x509.Certificate] | None:
    if not paths:
        return None
    from nitroguard.attestation import load_pem_roots

    roots: list[x509.Certificate] = []
    for path in paths:
        roots.extend(load_pem_roots(read_blob(path, limit=1 << 20, decode_text=False)))
    return roots


async def _sidecar(monitor: Any, serve_at: str, metrics_listen: str | None) -> int:
    from nitroguard._commands._metrics import start_metrics
    from nitroguard.fleet import Route, parse_http_listen

    def readyz() -> tuple[int, str, bytes]:
        last = monitor.last
        if monitor.ready():
            return 200, "text/plain", b"ready\n"
        why = "no check yet" if last is None else (last.reason or "stale")
        return 503, "text/plain", f"not ready: {why}\n".encode()

    def livez() -> tuple[int, str, bytes]:
        return 200, "text/plain", b"alive\n"

    routes: dict[str, Route] = {"/readyz": readyz, "/livez": livez}
    address = parse_http_listen(serve_at)
    async with stop_on_signals() as stop:
        endpoint = await start_metrics(serve_at, monitor.register, what="serving", extra=routes)
        extra_metrics = None
        try:
            if metrics_listen is not None and parse_http_listen(metrics_listen) != address:
                extra_metrics = await start_metrics(metrics_listen, monitor.register)
            await monitor.run(stop)
        finally:
            if endpoint is not None:
                await endpoint.close()
            if extra_metrics is not None:
                await extra_metrics.close()
    return 0


def _run(args: argparse.Namespace) -> int:
    from nitroguard.fleet import HealthMonitor

    monitor = HealthMonitor(
        args.address,
        _policy_from(args.pcr),
        roots=_roots(args.root),
        service=args.service,
        client_key=_client_key(args.client_key),
        interval=args.interval,
        timeout=args.timeout,
        max_age=args.max_age,
    )
    if args.serve is not None:
        return asyncio.run(_sidecar(monitor, args.serve, args.metrics_listen))
    if args.metrics_listen is not None:
        raise ConfigError("--metrics-listen needs --serve (a one-shot check exits at once)")
    result = monitor.check_once()
    if args.json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    elif result.ok:
        sys.stdout.write(f"ready: attested round trip in {result.latency * 1000:.1f} ms\n")
    else:
        sys.stdout.write(f"not ready: {result.reason}: {result.message}\n")
    return 0 if result.ok else 1
