"""Parent-side proxy: ingress (TCP -> vsock) and egress (vsock -> allowlisted TCP).

Behaviour (issue 4 section 3; the gaps of AWS ``vsock-proxy``: fixed worker
pool, no idle timeout):

* Runs on the hardened `serve` loop: connection cap, non-blocking accept that
  survives EMFILE, graceful shutdown.
* Bidirectional copy with backpressure: each direction reads at most 64 KiB
  and does not read again until the other side has taken it, so memory per
  connection is bounded (two socket read buffers plus two write buffers).
* Half-close is propagated: EOF from one side becomes ``SHUT_WR`` on the
  other, and the opposite direction keeps flowing until it ends too.
* Every byte is delivered before the close on a normal end (buffers are
  flushed, bounded by the idle timeout); errors and timeouts abort.
* Idle timeout: the connection is closed when *neither* direction moved a
  byte for ``idle_timeout`` seconds.
* A failing upstream (refused, unreachable, slow) closes only that client.
* Egress allowlist (``--allow HOST:PORT``), checked on every connection: the
  target must match an entry by name or address; its name is resolved again
  for each connection; and every resolved address must pass too. A name entry
  only admits globally routable addresses: a name that resolves to loopback,
  private, link-local (169.254.169.254, the instance metadata service) or
  other special ranges is refused unless an explicit IP or CIDR entry covers
  that address. The proxy then connects to the address it checked, never
  resolving twice (no DNS-rebinding window).
* Peer pinning (``--allow-cid``, issue 16 section 3): with several enclaves on one
  parent, any of them can reach the proxy's vsock port. With ``allow_cids`` set,
  the peer's CID (from ``getpeername``, through the injectable `PeerId` seam) must
  be listed, or the connection is closed and counted before the upstream is
  dialled and before a byte is read or forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, final

from nitroguard.errors import (
    ConfigError,
    DeadlineError,
    Error,
    Reason,
    TransportError,
)
from nitroguard.transport._address import Address, parse_address
from nitroguard.transport._client import connect, connect_socket
from nitroguard.transport._connection import Connection
from nitroguard.transport._limits import ServerLimits
from nitroguard.transport._server import Server, serve
from nitroguard.transport._splice import Relay, splice_available
from nitroguard.transport._stream import SocketStream, Stream

__all__ = [
    "AllowEntry",
    "Allowlist",
    "PeerId",
    "ProxyConfig",
    "ProxyCounters",
    "relay_path",
    "resolve_upstream",
    "start_proxy",
    "vsock_peer_cid",
]

log = logging.getLogger("nitroguard.proxy")

# asyncio's socket transport reads up to 256 KiB per recv: take it in one piece
# (fewer buffer copies). Memory per direction stays bounded: one chunk plus
# the transport's 64 KiB write high-water mark.
_CHUNK: Final = 256 * 1024

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


@final
@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One allowlist entry: a host name, an IP address or a CIDR network, and a port.

    Attributes:
        host: lower-case host name, or ``""`` for address entries.
        network: the IP network for address/CIDR entries (``None`` for names).
        port: the allowed port.
    """

    host: str
    network: IPNetwork | None
    port: int

    @classmethod
    def parse(cls, text: str) -> AllowEntry:
        """Parse ``HOST:PORT``, ``1.2.3.4:PORT``, ``10.0.0.0/8:PORT`` or ``[::1]:PORT``.

        Raises:
            ConfigError: ``invalid_address`` with the precise problem.
        """
        raw = text.strip()
        if raw.startswith("["):
            end = raw.find("]")
            if end < 0 or raw[end + 1 : end + 2] != ":":
                raise ConfigError(
                    f"invalid allow entry {text!r}: expected [IPV6]:PORT", Reason.INVALID_ADDRESS
                )
            host, port_raw = raw[1:end], raw[end + 2 :]
        else:
            host, sep, port_raw = raw.rpartition(":")
            if not sep or not host:
                raise ConfigError(
                    f"invalid allow entry {text!r}: expected HOST:PORT", Reason.INVALID_ADDRESS
                )
        if not port_raw.isdigit() or not 0 < int(port_raw) <= 65535:
            raise ConfigError(
                f"invalid allow entry {text!r}: port must be 1..65535", Reason.INVALID_ADDRESS
            )
        port = int(port_raw)
        try:
            return cls("", ipaddress.ip_network(host, strict=False), port)
        except ValueError:
            pass
        # Validate the name through the address parser (same rules as tcp://HOST:PORT).
        parsed = parse_address(f"tcp://{host}:{port}")
        return cls(parsed.host.lower(), None, port)

    def __str__(self) -> str:
        return f"{self.network if self.network is not None else self.host}:{self.port}"


@final
@dataclass(frozen=True, slots=True)
class Allowlist:
    """A set of `AllowEntry`; empty means "no egress restriction"."""

    entries: tuple[AllowEntry, ...] = ()

    @classmethod
    def parse(cls, items: Sequence[str]) -> Allowlist:
        """Parse ``--allow`` values."""
        return cls(tuple(AllowEntry.parse(i) for i in items))

    def __bool__(self) -> bool:
        return bool(self.entries)

    def name_allowed(self, host: str, port: int) -> bool:
        """Does ``host:port`` match an entry (by name, or by address for IP literals)?"""
        host = host.lower()
        try:
            ip: IPAddr | None = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        for e in self.entries:
            if e.port != port:
                continue
            if e.network is None and e.host == host:
                return True
            if e.network is not None and ip is not None and ip in e.network:
                return True
        return False

    def address_allowed(self, ip: IPAddr, port: int) -> bool:
        """Is a resolved address acceptable?

        Allowed when an IP/CIDR entry with this port covers it, or when it is
        globally routable (admitted through a name entry). Loopback, private,
        link-local and other special ranges need an explicit IP/CIDR entry.
        """
        for e in self.entries:
            if e.port == port and e.network is not None and ip in e.network:
                return True
        return ip.is_global


@final
@dataclass(slots=True)
class ProxyCounters:
    """Proxy-specific statistics (the server's `Counters` hold the rest).

    Attributes:
        denied: connections refused by the allowlist (name or resolved address).
        upstream_failures: upstream connects that failed or timed out.
        bytes_up: bytes copied client -> upstream.
        bytes_down: bytes copied upstream -> client.
        half_closes: EOFs propagated as ``SHUT_WR``.
        peer_refused: connections refused because the peer's CID is not allowed.
    """

    denied: int = 0
    upstream_failures: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    half_closes: int = 0
    peer_refused: int = 0

    def snapshot(self) -> dict[str, int]:
        """A JSON-ready copy."""
        return {
            "denied": self.denied,
            "upstream_failures": self.upstream_failures,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "half_closes": self.half_closes,
            "peer_refused": self.peer_refused,
        }


Resolver = Callable[[str, int], Awaitable[list[str]]]

#: Maps a peer's socket address (``getpeername``) to its vsock CID, or None when it
#: has none. The seam lets tests drive the CID check over TCP (no vsock loopback).
PeerId = Callable[[object], int | None]


def vsock_peer_cid(peer: object) -> int | None:
    """The CID of an AF_VSOCK peer address ``(cid, port)``; None for other families.

    Only used on vsock listeners: the address of a TCP or Unix peer is never taken
    for a CID (a TCP peer must not pass ``--allow-cid`` by looking like one).
    """
    if (
        isinstance(peer, tuple)
        and len(peer) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) for x in peer)
    ):
        return int(peer[0])
    return None


async def _system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def resolve_upstream(
    to: Address, allow: Allowlist, *, resolver: Resolver | None = None
) -> Address:
    """Check ``to`` against ``allow`` and return the concrete address to dial.

    For TCP targets the host name is resolved now (on every connection) and
    each resolved address is checked; the first acceptable one is returned as
    an IP-literal `Address`, so the connection goes to exactly what was checked.

    Raises:
        TransportError: ``not_allowed`` when the allowlist rejects the target or
            every resolved address; ``connection_refused`` when resolution fails.
    """
    if to.kind != "tcp":
        return to
    if allow and not allow.name_allowed(to.host, to.port):
        raise TransportError(f"{to.host}:{to.port} is not in the allowlist", Reason.NOT_ALLOWED)
    resolve = resolver if resolver is not None else _system_resolver
    try:
        ips = await resolve(to.host, to.port)
    except OSError as exc:
        raise TransportError(f"cannot resolve {to.host}: {exc}", Reason.CONNECTION_REFUSED) from exc
    rejected: list[str] = []
    for raw in ips:
        ip = ipaddress.ip_address(raw.split("%", 1)[0])
        if not allow or allow.address_allowed(ip, to.port):
            return Address("tcp", host=str(ip), port=to.port)
        rejected.append(str(ip))
    raise TransportError(
        f"{to.host}:{to.port} resolved to {', '.join(rejected) or 'nothing'}, which the allowlist "
        "does not admit (loopback/private/link-local addresses need an explicit IP or CIDR entry)",
        Reason.NOT_ALLOWED,
    )


@final
@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Proxy settings.

    Attributes:
        listen: where clients connect.
        to: where each connection is forwarded.
        allow: egress allowlist (empty: no restriction).
        max_connections: concurrent client connections (default 1024).
        idle_timeout: close when no byte moved either way for this long (default 60 s).
        connect_timeout: upstream connect deadline (default 5 s).
        allow_cids: when set, only peers with one of these vsock CIDs are served
            (``--allow-cid``); others are refused before anything is forwarded.
        relay: ``auto`` (splice where it works, else copy), ``splice`` (required:
            refuse to start without it) or ``copy``.
    """

    listen: Address
    to: Address
    allow: Allowlist = field(default_factory=Allowlist)
    max_connections: int = 1024
    idle_timeout: float = 60.0
    connect_timeout: float = 5.0
    allow_cids: frozenset[int] | None = None
    relay: str = "auto"

    def __post_init__(self) -> None:
        if self.relay not in ("auto", "splice", "copy"):
            raise ConfigError(f"relay must be auto, splice or copy, got {self.relay!r}")
        if self.relay == "splice" and not splice_available():
            raise ConfigError("relay=splice: splice(2) is not available here")
        if self.allow_cids is not None:
            if not self.allow_cids:
                raise ConfigError("allow_cids must name at least one CID (or be None)")
            for cid in self.allow_cids:
                # CIDs 0-2 are the hypervisor, local and host: never an enclave.
                if not 3 <= cid <= 0xFFFF_FFFE:
                    raise ConfigError(f"--allow-cid {cid}: an enclave CID is 3..4294967294")
        if self.max_connections < 1:
            raise ConfigError("max_connections must be positive")
        if not self.idle_timeout > 0 or not self.connect_timeout > 0:
            raise ConfigError("timeouts must be positive")


class _IdleGuard:
    """One timer per proxied connection (not one per chunk): aborts both sides when
    no byte moved either way for ``idle`` seconds. The pumps only store a float."""

    __slots__ = ("_handle", "_idle", "_loop", "_streams", "expired", "last")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, idle: float, streams: Sequence[Stream]
    ) -> None:
        self._loop = loop
        self._idle = idle
        self._streams = streams
        self.expired = False
        self.last = loop.time()
        self._handle = loop.call_at(self.last + idle, self._check)

    def _check(self) -> None:
        if self._loop.time() - self.last >= self._idle - 0.001:
            self.expired = True
            for stream in self._streams:
                if isinstance(stream, SocketStream):
                    stream.abort()
        else:
            self._handle = self._loop.call_at(self.last + self._idle, self._check)

    def cancel(self) -> None:
        self._handle.cancel()


async def _pump(
    src: Stream,
    dst: Stream,
    *,
    guard: _IdleGuard,
    count: Callable[[int], None],
    on_eof: Callable[[], None],
) -> None:
    loop = asyncio.get_running_loop()
    fast = dst if isinstance(dst, SocketStream) else None
    while True:
        data = await src.receive_some(_CHUNK)
        if not data:
            on_eof()
            await dst.send_eof()  # half-close: the other direction keeps going
            return
        guard.last = loop.time()
        # Backpressure: no further read until the destination has taken this chunk.
        if fast is not None:
            if not fast.write_nowait(data):
                await fast.drain()
        else:
            await dst.send_all(data)
        guard.last = loop.time()
        count(len(data))


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _admit(config: ProxyConfig, counters: ProxyCounters, peer_id: PeerId, peer: object) -> bool:
    """The ``--allow-cid`` check (counted and logged, rate-limited, when refused)."""
    allow_cids = config.allow_cids
    if allow_cids is None:
        return True
    cid = peer_id(peer)
    if cid is not None and cid in allow_cids:
        return True
    counters.peer_refused += 1
    if counters.peer_refused == 1 or counters.peer_refused % 100 == 0:
        log.warning(
            "refused a connection from CID %s (allowed: %s); %d refused so far",
            cid,
            ",".join(map(str, sorted(allow_cids))),
            counters.peer_refused,
        )
    return False


async def _target(
    config: ProxyConfig, counters: ProxyCounters, resolver: Resolver | None
) -> Address | None:
    """The checked upstream address for this connection, or None (counted and logged)."""
    try:
        return await resolve_upstream(config.to, config.allow, resolver=resolver)
    except TransportError as exc:
        if exc.reason is Reason.NOT_ALLOWED:
            counters.denied += 1
            log.warning("denied: %s", exc.message)
        else:
            counters.upstream_failures += 1
            log.warning("upstream failed: %s", exc.message)
        return None


def _abort(sock: socket.socket) -> None:
    """Make the coming close() a reset (RST), as an aborted stream does."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def _close_gracefully(sock: socket.socket, budget: float = 1.0) -> None:
    """Send FIN, then drain (bounded: `budget` seconds, 1 MiB) until the client's EOF.

    A client that is still sending when it is turned away then sees a clean close
    rather than a reset, as with the stream path (which reads eagerly).
    """
    loop = asyncio.get_running_loop()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    drained = 0
    try:
        async with asyncio.timeout(budget):
            while drained < 4 * _CHUNK:
                data = await loop.sock_recv(sock, _CHUNK)
                if not data:
                    return
                drained += len(data)
    except (TimeoutError, OSError):
        return


def make_raw_handler(
    config: ProxyConfig,
    counters: ProxyCounters,
    *,
    resolver: Resolver | None = None,
    peer_id: PeerId = vsock_peer_cid,
    use_splice: bool = True,
) -> Callable[[socket.socket], Awaitable[None]]:
    """The zero-copy per-connection handler: takes the raw accepted socket.

    Same checks, in the same order, as `make_handler` (CID, allowlist, upstream), then
    a `Relay` (splice through a pipe on Linux; per-direction copy fallback).
    """

    async def handler(sock: socket.socket) -> None:
        try:
            peer: object = sock.getpeername()
        except OSError:
            peer = None
        if not _admit(config, counters, peer_id, peer):
            _abort(sock)
            return
        target = await _target(config, counters, resolver)
        if target is None:
            await _close_gracefully(sock)
            return
        try:
            upstream = await connect_socket(target, timeout=config.connect_timeout)
        except Error as exc:
            counters.upstream_failures += 1
            log.warning("upstream %s failed: %s", target, exc.diagnostics())
            await _close_gracefully(sock)
            return
        clean = False

        def up(n: int) -> None:
            counters.bytes_up += n

        def down(n: int) -> None:
            counters.bytes_down += n

        def eof() -> None:
            counters.half_closes += 1

        try:
            relay = Relay(
                sock,
                upstream,
                idle=config.idle_timeout,
                count_up=up,
                count_down=down,
                on_eof=eof,
                use_splice=use_splice,
            )
            await relay.run()
            clean = True
        finally:
            if not clean:
                _abort(sock)
                _abort(upstream)
            upstream.close()

    return handler


def make_handler(
    config: ProxyConfig,
    counters: ProxyCounters,
    *,
    resolver: Resolver | None = None,
    peer_id: PeerId = vsock_peer_cid,
) -> Callable[[Connection], Awaitable[None]]:
    """The per-connection proxy handler (exposed for embedding in another server)."""

    async def handler(conn: Connection) -> None:
        client = conn.stream
        peer = client.peer if isinstance(client, SocketStream) else None
        if not _admit(config, counters, peer_id, peer):
            if isinstance(client, SocketStream):
                client.abort()
            return
        target = await _target(config, counters, resolver)
        if target is None:
            return
        try:
            upstream = await connect(target, timeout=config.connect_timeout)
        except Error as exc:
            counters.upstream_failures += 1
            log.warning("upstream %s failed: %s", target, exc.diagnostics())
            return
        guard = _IdleGuard(asyncio.get_running_loop(), config.idle_timeout, (client, upstream))
        clean = False

        def up(n: int) -> None:
            counters.bytes_up += n

        def down(n: int) -> None:
            counters.bytes_down += n

        def eof() -> None:
            counters.half_closes += 1

        try:
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(_pump(client, upstream, guard=guard, count=up, on_eof=eof))
                    tg.create_task(_pump(upstream, client, guard=guard, count=down, on_eof=eof))
            except BaseExceptionGroup as group:
                if guard.expired:
                    raise DeadlineError(
                        f"idle timeout: no traffic either way for {config.idle_timeout:g} s",
                        Reason.TIMEOUT,
                        kind="idle",
                    ) from None
                raise _first_leaf(group) from None
            clean = True
        finally:
            guard.cancel()
            if clean:
                await upstream.aclose(flush_timeout=config.idle_timeout)
            else:
                upstream.abort()

    return handler


async def start_proxy(
    config: ProxyConfig,
    *,
    ready: Callable[[Address], None] | None = None,
    resolver: Resolver | None = None,
    peer_id: PeerId = vsock_peer_cid,
) -> tuple[Server, ProxyCounters]:
    """Start a proxy; returns the running `Server` and the proxy's counters.

    Raises:
        ConfigError: ``invalid_address`` when ``listen`` cannot be bound.
    """
    counters = ProxyCounters()
    limits = ServerLimits(
        max_connections=config.max_connections,
        # The raw-stream handler enforces its own idle timeout; these bound teardown.
        write_timeout=config.idle_timeout,
        shutdown_grace=5.0,
    )
    server = await serve(
        make_handler(config, counters, resolver=resolver, peer_id=peer_id),
        config.listen,
        limits,
        ready=ready,
    )
    # No await since serve() started the accept task, so this applies from the first accept:
    # a half-closed client that sent nothing may still expect the upstream's data.
    server._drop_early_eof = False
    if relay_path(config.relay) == "splice":
        server._raw_handler = make_raw_handler(config, counters, resolver=resolver, peer_id=peer_id)
    return server, counters


def relay_path(relay: str = "auto") -> str:
    """The relay path a proxy with ``relay`` uses here: ``splice`` (zero-copy) or ``copy``.

    ``auto`` picks splice where it works (Linux); ``copy`` forces the asyncio-stream
    path. A splice relay still falls back to copying, per direction, for a socket
    family that splice refuses.
    """
    if relay == "copy":
        return "copy"
    return "splice" if splice_available() else "copy"
