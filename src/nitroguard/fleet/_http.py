"""A small, bounded HTTP/1.1 endpoint for ``/metrics``, ``/readyz`` and ``/livez``.

It runs on the hardened transport server (`nitroguard.transport.serve`), so the
connection cap, EMFILE-safe accept loop and graceful shutdown come for free. Each
connection gets one GET: the request head is read within ``head_timeout``
seconds and at most `MAX_HEAD` bytes, the answer is written, and the
connection is closed (``Connection: close``). Nothing else is parsed: no
bodies, no keep-alive, no chunking.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from nitroguard.errors import ConfigError, Reason
from nitroguard.transport import Address, Connection, Server, ServerLimits, parse_address, serve

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = ["MAX_HEAD", "Route", "parse_http_listen", "start_http", "start_metrics_endpoint"]

#: Largest request head accepted (request line plus headers).
MAX_HEAD: Final = 8192

#: A route returns ``(status, content type, body)``.
Route = Callable[[], tuple[int, str, bytes]]

_STATUS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


def parse_http_listen(text: str) -> Address:
    """Parse ``http://HOST:PORT`` or ``tcp://HOST:PORT`` into a TCP `Address`.

    Raises:
        ConfigError: ``invalid_address`` for any other scheme or a malformed address.
    """
    raw = text.strip()
    if raw.startswith("http://"):
        raw = "tcp://" + raw[len("http://") :].rstrip("/")
    address = parse_address(raw)
    if address.kind != "tcp":
        raise ConfigError(
            f"{text!r}: the HTTP endpoint listens on TCP (http://HOST:PORT or tcp://HOST:PORT)",
            Reason.INVALID_ADDRESS,
        )
    return address


def _response(status: int, content_type: str, body: bytes, head_only: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_STATUS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return head if head_only else head + body


async def _read_head(conn: Connection, limit_s: float) -> bytes | None:
    buf = bytearray()
    async with asyncio.timeout(limit_s):
        while b"\r\n\r\n" not in buf:
            chunk = await conn.stream.receive_some(MAX_HEAD)
            if not chunk:
                return None
            buf += chunk
            if len(buf) > MAX_HEAD:
                return None
    return bytes(buf)


async def start_http(
    routes: Mapping[str, Route],
    address: Address,
    *,
    max_connections: int = 32,
    head_timeout: float = 5.0,
    ready: Callable[[Address], None] | None = None,
) -> Server:
    """Serve GET `routes` on `address` until the returned `Server` is closed.

    Raises:
        ConfigError: ``invalid_address`` when the address cannot be bound.
    """

    async def handler(conn: Connection) -> None:
        try:
            head = await _read_head(conn, head_timeout)
        except TimeoutError:
            return
        if head is None:
            return
        line = head.split(b"\r\n", 1)[0].split(b" ")
        if len(line) != 3 or not line[2].startswith(b"HTTP/1."):
            answer = _response(400, "text/plain", b"bad request\n", False)
        else:
            method, target = line[0], line[1].split(b"?", 1)[0].decode("ascii", "replace")
            route = routes.get(target)
            if method not in (b"GET", b"HEAD"):
                answer = _response(405, "text/plain", b"GET only\n", False)
            elif route is None:
                answer = _response(404, "text/plain", b"not found\n", method == b"HEAD")
            else:
                status, ctype, body = route()
                answer = _response(status, ctype, body, method == b"HEAD")
        await conn.stream.send_all(answer)

    limits = ServerLimits(
        max_connections=max_connections,
        first_byte_timeout=head_timeout,
        write_timeout=head_timeout,
        shutdown_grace=1.0,
    )
    return await serve(handler, address, limits, ready=ready)


async def start_metrics_endpoint(
    registry: CollectorRegistry,
    address: Address,
    *,
    extra: Mapping[str, Route] | None = None,
    ready: Callable[[Address], None] | None = None,
) -> Server:
    """Serve ``/metrics`` for `registry` (plus `extra` routes) on `address`."""
    from nitroguard.fleet._metrics import render

    def metrics() -> tuple[int, str, bytes]:
        return 200, "text/plain; version=0.0.4; charset=utf-8", render(registry)

    routes: dict[str, Route] = {"/metrics": metrics}
    routes.update(extra or {})
    return await start_http(routes, address, ready=ready)
