"""Shared helpers for the fleet tests: a real EnclaveApp on loopback, in its own thread."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from nitroguard.app import ANYONE, AppConfig, CallContext, EnclaveApp, Mode
from nitroguard.testing import ephemeral_nsm

#: Boot measurements of the "good" test image.
GOOD_PCRS = {0: b"\x11" * 48, 1: b"\x22" * 48, 2: b"\x33" * 48}
OTHER_PCR0 = b"\x44" * 48


@dataclass
class Enclave:
    address: str
    root_pem: Path
    app: EnclaveApp
    nsm: Any


def build_app(
    *, metrics: bool = True, metrics_allow: Any = ANYONE, trusted_keys: Any = None
) -> EnclaveApp:
    app = EnclaveApp("fleet-test", trusted_keys=trusted_keys)

    @app.operation("echo", allow=ANYONE)
    async def echo(args: dict[str, Any], ctx: CallContext) -> Any:
        return args.get("value")

    @app.operation("boom", allow=ANYONE)
    async def boom(args: dict[str, Any], ctx: CallContext) -> Any:
        raise RuntimeError("handler bug")

    @app.operation("kms", allow=ANYONE)
    async def kms(args: dict[str, Any], ctx: CallContext) -> Any:
        app.count("kms_calls")
        return None

    if metrics:
        app.expose_metrics(allow=metrics_allow)
    return app


@contextlib.contextmanager
def running_enclave(
    tmp_path: Path,
    *,
    debug_mode: bool = False,
    metrics: bool = True,
    metrics_allow: Any = ANYONE,
    trusted_keys: Any = None,
    **config: Any,
) -> Iterator[Enclave]:
    """Start an EnclaveApp (development mode, emulated NSM) on 127.0.0.1:0 in a thread."""
    nsm = ephemeral_nsm(pcrs=GOOD_PCRS, debug_mode=debug_mode)
    app = build_app(metrics=metrics, metrics_allow=metrics_allow, trusted_keys=trusted_keys)
    (tmp_path / "random").touch()
    cfg = AppConfig(
        mode=Mode.DEVELOPMENT,
        listen="tcp://127.0.0.1:0",
        random_device=str(tmp_path / "random"),
        **config,
    )
    root = tmp_path / "root.pem"
    root.write_bytes(nsm.pki.root_certificate.public_bytes(Encoding.PEM))
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        try:
            box["running"] = await app.start(cfg, nsm=nsm)
        except BaseException as exc:
            box["error"] = exc
            raise
        finally:
            started.set()
        box["stop"] = asyncio.Event()
        await box["stop"].wait()
        await box["running"].close()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert started.wait(30)
    if "error" in box:
        raise box["error"]
    try:
        yield Enclave(str(box["running"].address), root, app, nsm)
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(30)
        loop.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(
    port: int, path: str, method: str = "GET", raw: bytes | None = None
) -> tuple[int, bytes]:
    """One HTTP request over a real socket; returns (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            raw if raw is not None else f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    if not data:
        return 0, b""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body
