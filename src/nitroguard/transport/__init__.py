"""Hardened transports for enclave services: vsock, TCP and Unix sockets.

Public API (stable; the attested channel is built on it)::

    from nitroguard.transport import (
        parse_address, Address, ServerLimits, serve, Server, Connection,
        connect, Stream, Listener, BlockingClient,
    )

Addresses
    ``parse_address("vsock://16:5000" | "vsock://any:5000" | "tcp://127.0.0.1:0"
    | "tcp://[::1]:80" | "unix:///run/app.sock") -> Address``. Malformed input
    raises `ConfigError` with reason ``invalid_address``. ``str(address)`` gives
    the canonical form back.

Streams (trio-style ABCs; `SocketStream` implements them for all three families)
    ``Stream``: ``await receive_some(max_bytes=65536) -> bytes`` (``b""`` = EOF),
    ``await send_all(data)`` (backpressure), ``await send_eof()`` (half-close),
    ``await aclose()`` (idempotent). Errors: `ClosedResourceError` (we closed
    it), `BrokenResourceError` (the peer reset it).
    ``Listener``: ``.address``, ``await accept() -> Stream``, ``await aclose()``.
    ``await connect(address, timeout=10.0) -> SocketStream``: async client.

Server
    ``server = await serve(handler, address, limits=ServerLimits(), *, ready=None,
    stats_interval=None)`` binds, calls ``ready(bound_address)``, starts accepting
    in the background and returns a `Server`::

        async def handler(conn: Connection) -> None:
            while (request := await conn.recv_frame()) is not None:
                await conn.send_frame(request)

        async with await serve(handler, "vsock://any:5000") as server:
            print(server.address)          # actual address (TCP port 0 resolved)
            await server.serve_forever()   # or: await server.wait_closed()

    ``Connection``: ``await recv_frame() -> bytes | None`` (``None`` = clean EOF
    between frames, or graceful shutdown while idle; first-byte, idle and
    absolute per-frame deadlines enforced inside; raises `DeadlineError`
    with ``details["kind"]``, or `RemoteProtocolError` ``frame_too_large`` /
    ``truncated``), ``await send_frame(payload)`` (write timeout), ``.stream``
    for raw access. A handler that raises closes only its own connection.
    ``Server``: ``.address``, ``.counters`` (`Counters`: accepted, refused,
    active, timeouts by kind, protocol_errors, handler_errors, disconnects,
    accept_errors, bytes_in, bytes_out; ``.snapshot()``), ``.limits``,
    ``await close(grace=None)`` (stop accepting, drain, cancel after grace;
    ``aclose()`` and ``async with`` use the default grace),
    ``await wait_closed()``, ``await serve_forever()``.

Limits (`ServerLimits`, frozen; defaults): max_connections 1024,
max_frame_size 1 MiB, first_byte_timeout 10 s, idle_timeout 60 s,
frame_timeout 10 s (absolute from the frame's first byte), write_timeout 10 s,
max_lifetime None, max_concurrent_handlers 256, shutdown_grace 5 s.

Proxy
    `nitroguard.transport.proxy`: ``start_proxy(ProxyConfig(listen, to,
    allow=Allowlist.parse([...])))`` (ingress TCP -> vsock, egress vsock ->
    allowlisted TCP); see ``docs/transport.md``.

Blocking client
    ``BlockingClient(address, timeout=10.0)``: ``send_frame``, ``recv_frame``,
    ``request``, ``recv_exact(n)`` (EOF is an error, EINTR retried, absolute
    deadline), ``send_all``, ``shutdown_write``, ``close``; a context manager.
"""

from nitroguard.transport._address import VMADDR_CID_ANY as VMADDR_CID_ANY
from nitroguard.transport._address import Address as Address
from nitroguard.transport._address import has_vsock as has_vsock
from nitroguard.transport._address import parse_address as parse_address
from nitroguard.transport._client import BlockingClient as BlockingClient
from nitroguard.transport._client import connect as connect
from nitroguard.transport._client import recv_exact as recv_exact
from nitroguard.transport._connection import Connection as Connection
from nitroguard.transport._limits import Counters as Counters
from nitroguard.transport._limits import ServerLimits as ServerLimits
from nitroguard.transport._server import Handler as Handler
from nitroguard.transport._server import Server as Server
from nitroguard.transport._server import serve as serve
from nitroguard.transport._stream import Listener as Listener
from nitroguard.transport._stream import SocketListener as SocketListener
from nitroguard.transport._stream import SocketStream as SocketStream
from nitroguard.transport._stream import Stream as Stream
from nitroguard.transport._stream import open_listener as open_listener

__all__ = [
    "VMADDR_CID_ANY",
    "Address",
    "BlockingClient",
    "Connection",
    "Counters",
    "Handler",
    "Listener",
    "Server",
    "ServerLimits",
    "SocketListener",
    "SocketStream",
    "Stream",
    "connect",
    "has_vsock",
    "open_listener",
    "parse_address",
    "recv_exact",
    "serve",
]
