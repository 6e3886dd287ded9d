"""The adversarial-parent probe: attack a framed service, measure a legitimate client.

Each attack runs for ``duration`` seconds while a legitimate client sends the
request frame on a fresh connection every ``legit_interval`` seconds and times
the reply. An attack passes when the legitimate p99 stays within the SLA, the
service still answers afterwards, and the attack-specific rule holds (for
example: a frame truncated by FIN or a 4 GiB length prefix must make the
server close the connection, not spin or wait).

Bounds: at most ``connections`` attack connections at once (capped at
`MAX_CONNECTIONS`), every await has a deadline, every socket is closed in a
``finally``, and the whole attack is wrapped in a hard timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, final

from nitroguard.errors import Error, ProbeError, Reason
from nitroguard.framing import Frame as _Frame
from nitroguard.framing import FrameDecoder, encode_frame
from nitroguard.probe.stats import percentile
from nitroguard.transport import Address, BlockingClient, SocketStream, connect, parse_address

if TYPE_CHECKING:
    from nitroguard.channel import DocumentCheck

__all__ = [
    "ATTACKS",
    "DEFAULT_REQUEST",
    "MAX_CONNECTIONS",
    "AttackResult",
    "ProbeConfig",
    "ProbeReport",
    "run_probe",
]

#: Every attack, in the order they run.
ATTACKS: Final = (
    "idle",
    "slowloris",
    "partial-eof",
    "oversize",
    "garbage",
    "churn",
    "half-close",
    "no-read",
    "slow-handler",
)
#: The legitimate request payload used when none is given.
DEFAULT_REQUEST: Final = b"nitroguard-probe"
#: Hard cap on concurrent attack connections.
MAX_CONNECTIONS: Final = 2000
#: Longest allowed attack duration, seconds.
MAX_DURATION: Final = 300.0
_OVERSIZE_PREFIX: Final = struct.pack(">I", 0xFFFF_FFFF)  # a 4 GiB length prefix
# The probe bounds its own memory too: a hostile target cannot make it buffer more.
_MAX_REPLY: Final = 16 * 1024 * 1024


@final
@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """Probe parameters.

    Attributes:
        connections: attack connections per attack (default 50; max 2000).
        duration: seconds each attack lasts (default 3).
        request: legitimate request payload (framed by the probe).
        sla: legitimate p99 latency bound in seconds (default 1).
        legit_interval: pause between legitimate requests (default 0.05 s).
        allow_remote: allow targets that are not loopback, unix or vsock.
        seed: seed for the garbage generator (reproducible runs).
        channel: a `nitroguard.channel.DocumentCheck`: the legitimate client
            then does a full attested-channel handshake (document verified against its
            roots and policy) and one request/response per sample, as a real client of
            an `EnclaveApp` does. None: one framed request per sample.
    """

    connections: int = 50
    duration: float = 3.0
    request: bytes = DEFAULT_REQUEST
    sla: float = 1.0
    legit_interval: float = 0.05
    allow_remote: bool = False
    seed: int | None = None
    channel: DocumentCheck | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.connections <= MAX_CONNECTIONS:
            raise ProbeError(f"connections must be in 1..{MAX_CONNECTIONS}, got {self.connections}")
        if not 0 < self.duration <= MAX_DURATION:
            raise ProbeError(
                f"duration must be in (0, {MAX_DURATION:g}] seconds, got {self.duration}"
            )
        if not 0 < self.sla <= 60:
            raise ProbeError(f"sla must be in (0, 60] seconds, got {self.sla}")
        if not 0 < self.legit_interval <= 10:
            raise ProbeError(
                f"legit_interval must be in (0, 10] seconds, got {self.legit_interval}"
            )

    @property
    def legit_timeout(self) -> float:
        """How long one legitimate request may take before it counts as failed."""
        return max(2 * self.sla, 1.0)


@final
@dataclass(frozen=True, slots=True)
class AttackResult:
    """The outcome of one attack (the JSON keys are exactly these fields)."""

    name: str
    passed: bool
    legit_p50_ms: float
    legit_p99_ms: float
    closed_by_server: int
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the documented keys."""
        return {
            "name": self.name,
            "passed": self.passed,
            "legit_p50_ms": self.legit_p50_ms,
            "legit_p99_ms": self.legit_p99_ms,
            "closed_by_server": self.closed_by_server,
            "detail": self.detail,
        }


@final
@dataclass(frozen=True, slots=True)
class ProbeReport:
    """The whole probe run."""

    target: str
    attacks: tuple[AttackResult, ...]
    #: ``"framed"`` (one framed request) or ``"attested-channel"`` (handshake + request).
    legit_client: str = "framed"
    #: The legitimate client's latency before any attack, under the same machine load.
    baseline_p50_ms: float = 0.0
    baseline_p99_ms: float = 0.0

    @property
    def passed(self) -> bool:
        """True when every attack passed."""
        return all(a.passed for a in self.attacks)

    def to_dict(self) -> dict[str, Any]:
        """``{"target", "legit_client", "measured", "attacks": [...], "passed"}``."""
        return {
            "target": self.target,
            "legit_client": self.legit_client,
            "measured": (
                "each attack: the legitimate client's latency (p50/p99) and failures while "
                "the attack runs, against the SLA on top of the baseline p99 taken just "
                f"before under the same machine load ({BASELINE_SAMPLES} requests); then "
                "one legitimate request after it"
            ),
            "baseline_p50_ms": self.baseline_p50_ms,
            "baseline_p99_ms": self.baseline_p99_ms,
            "attacks": [a.to_dict() for a in self.attacks],
            "passed": self.passed,
        }


@dataclass(slots=True)
class _Conn:
    stream: SocketStream
    opened_at: float
    closed_at: float | None = None
    replies: int = 0
    sent: int = 0


@dataclass(slots=True)
class _Ctx:
    address: Address
    config: ProbeConfig
    rng: random.Random
    clock: Callable[[], float]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    conns: list[_Conn] = field(default_factory=list)
    connect_failures: int = 0
    notes: list[str] = field(default_factory=list)
    extra_ok: bool = True
    raw_closed: int = 0

    async def open(self) -> _Conn | None:
        try:
            stream = await connect(self.address, timeout=min(2.0, self.config.duration))
        except Error:
            self.connect_failures += 1
            return None
        conn = _Conn(stream, self.clock())
        self.conns.append(conn)
        return conn

    async def open_many(self, n: int) -> list[_Conn]:
        opened = await asyncio.gather(*(self.open() for _ in range(n)))
        return [c for c in opened if c is not None]

    def closed(self) -> list[_Conn]:
        return [c for c in self.conns if c.closed_at is not None]

    async def watch(self, conn: _Conn, *, count_replies: bool = False) -> None:
        """Read until the server closes (records when); never spins."""
        dec = FrameDecoder(max_frame_size=0xFFFF_FFFF, max_buffer_size=1 << 22)
        try:
            while True:
                data = await conn.stream.receive_some(65536)
                if not data:
                    break
                if count_replies:
                    with contextlib.suppress(Error):
                        dec.receive_data(data)
                        while isinstance(dec.next_event(), _Frame):
                            conn.replies += 1
        except Error:
            pass
        conn.closed_at = self.clock()

    def abort_all(self) -> None:
        for conn in self.conns:
            conn.stream.abort()


# --------------------------------------------------------------------------- attacks


async def _hold_until_stop(ctx: _Ctx, conns: list[_Conn], *, replies: bool = False) -> None:
    async with asyncio.TaskGroup() as tg:
        watchers = [tg.create_task(ctx.watch(c, count_replies=replies)) for c in conns]
        ctx.ready.set()
        await ctx.stop.wait()
        for w in watchers:
            w.cancel()


async def _attack_idle(ctx: _Ctx) -> None:
    conns = await ctx.open_many(ctx.config.connections)
    await _hold_until_stop(ctx, conns)


async def _attack_slowloris(ctx: _Ctx) -> None:
    conns = await ctx.open_many(ctx.config.connections)
    # A frame that would complete only after 1000 bytes, trickled one byte at a time.
    frame = encode_frame(b"x" * 996)
    interval = max(0.05, min(0.5, ctx.config.duration / 20))

    async def trickle(conn: _Conn) -> None:
        with contextlib.suppress(Error):
            for i in range(len(frame)):
                if conn.closed_at is not None:
                    return
                await conn.stream.send_all(frame[i : i + 1])
                conn.sent += 1
                await asyncio.sleep(interval)

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(trickle(c)) for c in conns]
        tasks += [tg.create_task(ctx.watch(c)) for c in conns]
        ctx.ready.set()
        await ctx.stop.wait()
        for t in tasks:
            t.cancel()
    sent = sum(c.sent for c in conns)
    ctx.notes.append(f"trickled {sent} bytes at 1 byte per {interval:g} s per connection")


async def _send_then_watch(
    ctx: _Ctx, data: bytes, *, eof: bool, must_close: bool, replies: bool = False
) -> None:
    n = ctx.config.connections
    conns = await ctx.open_many(n)

    async def one(conn: _Conn) -> None:
        with contextlib.suppress(Error):
            await conn.stream.send_all(data)
            if eof:
                await conn.stream.send_eof()
        await ctx.watch(conn, count_replies=replies)

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(one(c)) for c in conns]
        ctx.ready.set()
        await ctx.stop.wait()
        for t in tasks:
            t.cancel()
    if must_close:
        still_open = len(conns) - len(ctx.closed())
        if still_open:
            ctx.extra_ok = False
            ctx.notes.append(
                f"{still_open} connection(s) still open at the end: the server must close them"
            )


async def _attack_partial_eof(ctx: _Ctx) -> None:
    # Half a frame, then FIN: a correct server sees EOF inside a frame and closes;
    # the PR 609 recv loop spins forever instead.
    frame = encode_frame(b"p" * 64)
    await _send_then_watch(ctx, frame[: len(frame) // 2], eof=True, must_close=True)


async def _attack_oversize(ctx: _Ctx) -> None:
    await _send_then_watch(ctx, _OVERSIZE_PREFIX + b"\x00" * 16, eof=False, must_close=True)


async def _attack_garbage(ctx: _Ctx) -> None:
    await _send_then_watch(ctx, ctx.rng.randbytes(1024), eof=False, must_close=False)


async def _attack_half_close(ctx: _Ctx) -> None:
    await _send_then_watch(
        ctx, encode_frame(ctx.config.request), eof=True, must_close=False, replies=True
    )
    conns = ctx.conns
    answered = sum(1 for c in conns if c.replies >= 1)
    closed = len(ctx.closed())
    ctx.notes.append(f"{answered}/{len(conns)} got a reply after SHUT_WR")
    if answered < len(conns) or closed < len(conns):
        ctx.extra_ok = False
        ctx.notes.append(
            "every half-closed request must be answered and then closed "
            f"({len(conns) - answered} unanswered, {len(conns) - closed} left open)"
        )


async def _attack_churn(ctx: _Ctx) -> None:
    loops = min(ctx.config.connections, 16)
    cycles = 0
    failures = 0
    budget = 20_000

    async def churn(i: int) -> None:
        nonlocal cycles, failures
        while not ctx.stop.is_set() and cycles < budget:
            try:
                stream = await connect(ctx.address, timeout=1.0)
            except Error:
                failures += 1
                await asyncio.sleep(0.01)
                continue
            cycles += 1
            if (cycles + i) % 2:
                stream.abort()  # RST
            else:
                await stream.aclose(flush_timeout=0.5)  # FIN
            await asyncio.sleep(0)

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(churn(i)) for i in range(loops)]
        ctx.ready.set()
        await ctx.stop.wait()
        for t in tasks:
            t.cancel()
    ctx.notes.append(f"{cycles} connect/close cycles on {loops} loops, {failures} connect failures")


async def _raw_socket(address: Address, rcvbuf: int) -> socket.socket:
    """A connected non-blocking socket with a tiny receive buffer (never read)."""
    loop = asyncio.get_running_loop()
    family: int
    sockaddr: Any
    if address.kind == "tcp":
        infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
        family, sockaddr = infos[0][0], infos[0][4]
    elif address.kind == "unix":
        family, sockaddr = socket.AF_UNIX, address.path
    else:
        family, sockaddr = socket.AF_VSOCK, (address.cid, address.port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Set before connect so the advertised TCP window stays small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        async with asyncio.timeout(2.0):
            await loop.sock_connect(sock, sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


async def _attack_no_read(ctx: _Ctx) -> None:
    # Request large replies (an echo service returns each 64 KiB frame) and never
    # read a byte: a server without a write timeout blocks on this peer forever.
    n = min(ctx.config.connections, 8)
    loop = asyncio.get_running_loop()
    frame = encode_frame(b"r" * 65536)
    tiny = encode_frame(b"")
    socks: list[socket.socket] = []
    sent = 0
    broken = 0
    closed_after: list[float] = []

    async def flood(sock: socket.socket) -> None:
        nonlocal sent, broken
        t0 = ctx.clock()
        try:
            for _ in range(64):
                await loop.sock_sendall(sock, frame)
                sent += 1
            # Keep nudging with empty frames: a server that gave up on us (write
            # timeout) resets the connection, and the next send reports it.
            while True:
                await asyncio.sleep(0.1)
                await loop.sock_sendall(sock, tiny)
        except OSError:
            broken += 1
            closed_after.append(ctx.clock() - t0)

    try:
        for _ in range(n):
            try:
                socks.append(await _raw_socket(ctx.address, 4096))
            except (OSError, TimeoutError):
                ctx.connect_failures += 1
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(flood(s)) for s in socks]
            ctx.ready.set()
            await ctx.stop.wait()
            for t in tasks:
                t.cancel()
    finally:
        for sock in socks:
            sock.close()
    ctx.raw_closed = broken
    ctx.notes.append(f"{broken}/{len(socks)} non-reading connections reset by the server")
    if closed_after:
        ctx.notes.append(
            f"reset after {min(closed_after) * 1000:.0f}..{max(closed_after) * 1000:.0f} ms"
        )
    ctx.notes.append(f"sent {sent} x 64 KiB requests without reading")


async def _attack_slow_handler(ctx: _Ctx) -> None:
    n = min(ctx.config.connections, 8)
    conns = await ctx.open_many(n)
    delay = ctx.config.duration + 1.0
    request = encode_frame(b"sleep:%g" % delay)

    async def one(conn: _Conn) -> None:
        with contextlib.suppress(Error):
            await conn.stream.send_all(request)
        await ctx.watch(conn, count_replies=True)

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(one(c)) for c in conns]
        ctx.ready.set()
        await ctx.stop.wait()
        for t in tasks:
            t.cancel()
    early = sum(c.replies for c in conns)
    ctx.notes.append(
        f"{n} requests asking the handler to sleep {delay:g} s ({early} answered early)"
    )


_ATTACK_FUNCS: Final[dict[str, Callable[[_Ctx], Awaitable[None]]]] = {
    "idle": _attack_idle,
    "slowloris": _attack_slowloris,
    "partial-eof": _attack_partial_eof,
    "oversize": _attack_oversize,
    "garbage": _attack_garbage,
    "churn": _attack_churn,
    "half-close": _attack_half_close,
    "no-read": _attack_no_read,
    "slow-handler": _attack_slow_handler,
}


# --------------------------------------------------------------------------- legit client


def legit_request(
    address: Address, request: bytes, budget: float, channel: DocumentCheck | None = None
) -> float | None:
    """One legitimate request on a fresh connection (blocking); its latency, or None on failure.

    The legitimate client runs in its own thread with blocking sockets, so the
    attack traffic on the probe's event loop does not distort its timings.
    """
    start = time.perf_counter()
    try:
        _one_request(address, request, budget, channel)
    except Error:
        return None
    return time.perf_counter() - start


def _one_request(
    address: Address, request: bytes, budget: float, channel: DocumentCheck | None
) -> None:
    start = time.perf_counter()
    if channel is not None:
        from nitroguard.channel import connect_blocking

        # A full handshake (document verified) plus one request/response.
        with connect_blocking(address, check=channel, timeout=budget) as ch:
            ch.request(request)
        return
    with BlockingClient(address, timeout=budget, max_frame_size=_MAX_REPLY) as client:
        remaining = budget - (time.perf_counter() - start)
        if remaining <= 0:
            raise ProbeError("legitimate request over budget", Reason.TIMEOUT)
        client.request(request, timeout=remaining)


def preflight(
    address: Address, request: bytes, budget: float, channel: DocumentCheck | None = None
) -> None:
    """One legitimate request before any attack: a target that cannot be reached or
    does not answer is a usage error, never a vulnerable service.

    Raises:
        ProbeError: `target_unreachable`, "cannot reach TARGET: why".
    """
    try:
        _one_request(address, request, budget, channel)
    except Error as exc:
        raise ProbeError(
            f"cannot reach {address}: {exc.message} "
            "(no answer to one legitimate request; nothing was attacked"
            + (
                "; for an attested-channel service such as an EnclaveApp, use --channel)"
                if channel is None
                else ")"
            ),
            Reason.TARGET_UNREACHABLE,
        ) from exc


#: Legitimate requests timed before any attack: the baseline under this machine's load.
BASELINE_SAMPLES: Final = 10


def _baseline(address: Address, config: ProbeConfig) -> list[float]:
    samples = []
    for _ in range(BASELINE_SAMPLES):
        latency = legit_request(address, config.request, config.legit_timeout, config.channel)
        # A failed baseline request adds nothing: it must not widen the bound.
        samples.append(0.0 if latency is None else latency)
        time.sleep(config.legit_interval)
    return samples


def _legit_loop(config: ProbeConfig, address: Address) -> tuple[list[float], int]:
    end = time.monotonic() + config.duration
    samples: list[float] = []
    failures = 0
    while time.monotonic() < end:
        latency = legit_request(address, config.request, config.legit_timeout, config.channel)
        if latency is None:
            failures += 1
            # A failed request counts as the full timeout (a lower bound on its latency).
            samples.append(config.legit_timeout)
        else:
            samples.append(latency)
        time.sleep(config.legit_interval)
    return samples, failures


# --------------------------------------------------------------------------- runner


async def _run_attack(
    name: str, address: Address, config: ProbeConfig, rng: random.Random, baseline_p99: float = 0.0
) -> AttackResult:
    ctx = _Ctx(address, config, rng, time.monotonic)
    func = _ATTACK_FUNCS[name]
    loop = asyncio.get_running_loop()
    started = loop.time()
    samples: list[float] = []
    failures = 0
    hard_cap = config.duration + config.legit_timeout + 10.0
    timed_out = False
    try:
        async with asyncio.timeout(hard_cap):
            attack = asyncio.ensure_future(func(ctx))
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(5.0, config.duration + 2.0)):
                        await asyncio.wait(
                            [attack, asyncio.ensure_future(ctx.ready.wait())],
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                samples, failures = await asyncio.to_thread(_legit_loop, config, address)
            finally:
                ctx.stop.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5.0):
                        await asyncio.gather(attack, return_exceptions=True)
                attack.cancel()
    except TimeoutError:
        timed_out = True
    finally:
        ctx.abort_all()
    # Liveness after the attack: the service must still answer.
    after = await asyncio.to_thread(
        legit_request, address, config.request, config.legit_timeout, config.channel
    )
    if not samples:
        samples = [config.legit_timeout]
        failures += 1
    p50 = percentile(samples, 50)
    p99 = percentile(samples, 99)
    closed = ctx.closed()
    notes = list(ctx.notes)
    opened = len(ctx.conns)
    if name not in ("churn", "no-read"):
        notes.insert(0, f"{len(closed)}/{opened} attack connections closed by the server")
        if closed:
            times = sorted(c.closed_at - c.opened_at for c in closed if c.closed_at is not None)
            notes.insert(1, f"closed after {times[0] * 1000:.0f}..{times[-1] * 1000:.0f} ms")
    if ctx.connect_failures:
        notes.append(f"{ctx.connect_failures} attack connects failed or were refused")
    # The SLA bounds the latency the attack adds: the baseline p99, measured just before
    # under the same machine load, is allowed on top (a loaded CI box is not an attack).
    bound = config.sla + baseline_p99
    sla_ok = p99 <= bound and failures == 0
    if failures:
        notes.append(f"{failures}/{len(samples)} legitimate requests failed or timed out")
    if p99 > bound:
        notes.append(
            f"legitimate p99 {p99 * 1000:.0f} ms exceeds the SLA of {config.sla * 1000:.0f} ms "
            f"over the baseline p99 {baseline_p99 * 1000:.0f} ms"
        )
    if after is None:
        notes.append("the service did not answer a legitimate request after the attack")
    if timed_out:
        notes.append("the attack hit the probe's hard time limit")
    passed = sla_ok and ctx.extra_ok and after is not None and not timed_out
    notes.append(f"{len(samples)} legitimate requests in {loop.time() - started:.1f} s")
    return AttackResult(
        name=name,
        passed=passed,
        legit_p50_ms=round(p50 * 1000, 2),
        legit_p99_ms=round(p99 * 1000, 2),
        closed_by_server=ctx.raw_closed if name == "no-read" else len(closed),
        detail="; ".join(notes),
    )


def check_target(target: str | Address, *, allow_remote: bool) -> Address:
    """Parse the target and refuse remote TCP hosts unless ``allow_remote``.

    Raises:
        ProbeError: reason ``remote_target_refused``.
        ConfigError: reason ``invalid_address``.
    """
    address = parse_address(target) if isinstance(target, str) else target
    if not address.is_local and not allow_remote:
        raise ProbeError(
            f"refusing to attack {address}: not loopback, unix or vsock (pass --allow-remote "
            "only for a service you are authorised to test)",
            Reason.REMOTE_TARGET_REFUSED,
        )
    return address


async def run_probe(
    target: str | Address,
    attacks: Sequence[str] = ATTACKS,
    config: ProbeConfig | None = None,
    *,
    on_result: Callable[[AttackResult], None] | None = None,
) -> ProbeReport:
    """Run the selected attacks one after the other against ``target``.

    Args:
        target: the framed service (``tcp://127.0.0.1:5000``, ``unix:///...``, ``vsock://16:5000``).
        attacks: names from `ATTACKS`.
        config: `ProbeConfig` (defaults if omitted).
        on_result: called after each attack (progress output).

    Returns:
        The `ProbeReport`.

    Raises:
        ProbeError: ``remote_target_refused``, ``invalid_argument`` (unknown attack), or
            ``target_unreachable`` (one legitimate request first got no answer).
    """
    config = config if config is not None else ProbeConfig()
    address = check_target(target, allow_remote=config.allow_remote)
    unknown = [a for a in attacks if a not in _ATTACK_FUNCS]
    if unknown:
        raise ProbeError(f"unknown attack(s): {', '.join(unknown)}; known: {', '.join(ATTACKS)}")
    await asyncio.to_thread(
        preflight, address, config.request, config.legit_timeout, config.channel
    )
    baseline = await asyncio.to_thread(_baseline, address, config)
    baseline_p99 = percentile(baseline, 99)
    rng = random.Random(config.seed)
    results: list[AttackResult] = []
    for name in attacks:
        result = await _run_attack(name, address, config, rng, baseline_p99)
        results.append(result)
        if on_result is not None:
            on_result(result)
    legit = "attested-channel" if config.channel is not None else "framed"
    return ProbeReport(
        str(address),
        tuple(results),
        legit,
        round(percentile(baseline, 50) * 1000, 3),
        round(baseline_p99 * 1000, 3),
    )
