"""Trusted time for an enclave: attested time and a background clock guard.

The parent instance is hostile, so it must never be a time authority
(threat-checklist TIME-3/TIME-4, §2.5). Two independent sources remain inside the
enclave: kvm-clock (a page the hypervisor maintains) and the ``timestamp`` of an
attestation document (generated and signed by the NSM, which the threat model
trusts). `attested_time` reads the second; `ClockGuard` watches the first for the
two things that go wrong at runtime: the kernel switching clocksource, and the wall
clock jumping relative to the monotonic clock (``settimeofday`` / NTP steps).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, Self

from cryptography import x509

from nitroguard._resource import Resource
from nitroguard.attestation import AttestationDocument, VerifiedDocument, Verifier, policy
from nitroguard.errors import NsmError, Reason, VerificationError
from nitroguard.nsm import ReadOnlyNsm

__all__ = [
    "ClockEvent",
    "ClockGuard",
    "SelfAttestation",
    "attested_time",
    "self_attest",
]

log = logging.getLogger("nitroguard.audit.clock")  # the pre-_-module name users filter on

#: ATT-4: nonces are at least 16 bytes; 32 is the recommended size.
NONCE_SIZE = 32


@dataclasses.dataclass(frozen=True, slots=True)
class SelfAttestation:
    """A fresh attestation document the enclave requested from its own NSM and verified.

    Attributes:
        document: the verified document returned by `nitroguard.attestation.Verifier`.
        raw: the COSE_Sign1 bytes.
        nonce: the random nonce that was sent and echoed.
        timestamp_ms: the NSM's timestamp (ms since the Unix epoch, UTC).
        pcrs: the locked PCRs reported by the document.
        wall_before: the local wall clock just before the request (None if unknown).
        wall_after: the local wall clock just after the answer (None if unknown).
    """

    document: VerifiedDocument
    raw: bytes
    nonce: bytes
    timestamp_ms: int
    pcrs: dict[int, bytes]
    wall_before: float | None
    wall_after: float | None

    @property
    def time(self) -> dt.datetime:
        """The attested time as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.timestamp_ms / 1000, tz=dt.UTC)

    def clock_offset(self) -> float | None:
        """How far the local wall clock is from the attested time, in seconds.

        Zero when the attested time falls between the two local readings taken around
        the request; otherwise the signed distance to the nearest reading (positive:
        the local clock is behind the hypervisor's). None if the wall clock is unknown.
        """
        if self.wall_before is None or self.wall_after is None:
            return None
        ts = self.timestamp_ms / 1000
        if ts < self.wall_before:
            return ts - self.wall_before
        if ts > self.wall_after:
            return ts - self.wall_after
        return 0.0


def _peek_timestamp(raw: bytes) -> int:
    # The chain must be checked at *some* instant; we use the document's own claimed
    # time instead of our wall clock, which is exactly what we are trying to check.
    # A forged timestamp cannot pass: it is covered by the ES384 signature, and the
    # leaf certificate (valid ~3 h, issued under the pinned root) must be valid then.
    return AttestationDocument.parse(raw).timestamp


def _default_nonce(nsm: ReadOnlyNsm) -> bytes:
    # Early in boot the CRNG may not be ready (RNG-4); never block the audit on it.
    # The NSM's own random bytes are the fallback: the NSM is trusted.
    try:
        return os.getrandom(NONCE_SIZE, os.GRND_NONBLOCK)
    except (BlockingIOError, OSError):
        data = nsm.get_random(NONCE_SIZE)
        if len(data) < NONCE_SIZE:
            raise NsmError(
                f"NSM returned {len(data)} random bytes, wanted {NONCE_SIZE}",
                Reason.INVALID_RESPONSE,
            ) from None
        return data[:NONCE_SIZE]


def self_attest(
    nsm: ReadOnlyNsm,
    *,
    roots: Sequence[x509.Certificate] | None = None,
    verifier: Verifier | None = None,
    nonce: bytes | None = None,
    wall_clock: Callable[[], float | None] | None = None,
) -> SelfAttestation:
    """Request a nonce-bound attestation document from `nsm` and verify it.

    The document's signature and certificate chain are verified against `roots`
    (default: the pinned AWS Nitro root) at the document's own timestamp, and the
    nonce must come back exactly (constant-time compare). Debug-mode documents are
    accepted here; callers decide what zero PCRs mean (ATT-2).

    Args:
        nsm: the NSM (device or emulator).
        roots: trust anchors for `nitroguard.attestation.Verifier` (None: AWS root).
        verifier: a ready verifier (overrides `roots`).
        nonce: the nonce to send (default: 32 fresh random bytes).
        wall_clock: a callable giving the local wall clock, sampled around the request.

    Returns:
        The verified `SelfAttestation`.

    Raises:
        NsmError: the NSM refused the request.
        VerificationError: the document did not verify or did not echo the nonce.
        DecodeError: the document is malformed.
    """
    if verifier is None:
        verifier = Verifier(roots=list(roots)) if roots is not None else Verifier()
    if nonce is None:
        nonce = _default_nonce(nsm)
    if len(nonce) < 16:
        raise VerificationError(
            "self-attestation nonce shorter than 16 bytes", Reason.INVALID_FIELD
        )
    before = wall_clock() if wall_clock is not None else None
    raw = nsm.get_attestation(nonce=nonce)
    after = wall_clock() if wall_clock is not None else None
    timestamp = _peek_timestamp(raw)
    at = dt.datetime.fromtimestamp(timestamp / 1000, tz=dt.UTC)
    # policy.Nonce compares in constant time and fails with `nonce_mismatch`.
    document = verifier.verify(raw, policy.Nonce(nonce), at=at, allow_debug=True)
    pcrs = {int(k): bytes(v) for k, v in document.pcrs.items()}
    return SelfAttestation(document, raw, nonce, timestamp, pcrs, before, after)


def attested_time(
    nsm: ReadOnlyNsm,
    *,
    roots: Sequence[x509.Certificate] | None = None,
    verifier: Verifier | None = None,
    nonce: bytes | None = None,
) -> dt.datetime:
    """The hypervisor's current time, read from a fresh, verified attestation document.

    This never consults the local wall clock or anything the parent controls: the
    timestamp is generated by the NSM and covered by its signature, and the random
    nonce proves the document was made for this request.

    Args:
        nsm: the NSM (device or emulator).
        roots: trust anchors (None: the pinned AWS Nitro root).
        verifier: a ready verifier (overrides `roots`).
        nonce: the nonce to send (default: 32 fresh random bytes).

    Returns:
        An aware UTC datetime (millisecond resolution).

    Raises:
        NsmError: the NSM refused the request.
        VerificationError: the document did not verify or did not echo the nonce.
        DecodeError: the document is malformed.
    """
    return self_attest(nsm, roots=roots, verifier=verifier, nonce=nonce).time


@dataclasses.dataclass(frozen=True, slots=True)
class ClockEvent:
    """Something `ClockGuard` noticed.

    Attributes:
        kind: ``"clocksource_changed"``, ``"clocksource_unexpected"`` (not the
            expected one, reported once until it returns), ``"clocksource_unreadable"``
            or ``"wall_clock_jump"``.
        message: a human-readable description.
        old: the previous value (clocksource name, or None).
        new: the new value (clocksource name, or None).
        jump: for wall-clock jumps, the step in seconds (positive: forward).
    """

    kind: str
    message: str
    old: str | None = None
    new: str | None = None
    jump: float | None = None


class _ClockProbe(Protocol):
    def read(self, path: str) -> Any: ...

    def wall_time(self) -> float | None: ...

    def monotonic(self) -> float: ...


CLOCKSOURCE = "/sys/devices/system/clocksource/clocksource0/current_clocksource"


class ClockGuard(Resource):
    """Watch for clocksource changes and wall-clock jumps, in a background thread.

    Every `interval` seconds it reads the current clocksource through the probe and
    compares how far the wall clock and the monotonic clock advanced since the last
    check. A difference above `max_jump` seconds is a step of the wall clock (someone
    called ``settimeofday``, or a time daemon stepped it): the monotonic clock cannot
    be stepped, so it is the reference. Each event is logged at WARNING and passed to
    `on_event`.

    Use it as a context manager, or call `start` and `stop`. `check` runs one
    comparison synchronously (useful in tests and in event loops that poll).

    Args:
        probe: a `SystemReader` (its wall and monotonic clocks are used).
        interval: seconds between checks.
        max_jump: the largest tolerated divergence per interval, in seconds.
        on_event: called (in the guard's thread) for each `ClockEvent`.
        expected_clocksource: the clocksource that must stay selected (TIME-1).
    """

    def __init__(
        self,
        probe: _ClockProbe,
        *,
        interval: float = 5.0,
        max_jump: float = 1.0,
        on_event: Callable[[ClockEvent], None] | None = None,
        expected_clocksource: str | None = "kvm-clock",
    ) -> None:
        if interval <= 0 or max_jump <= 0:
            raise ValueError("interval and max_jump must be positive")
        self._probe = probe
        self._interval = interval
        self._max_jump = max_jump
        self._on_event = on_event
        self._expected = expected_clocksource
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.events: list[ClockEvent] = []
        self._source: str | None = None
        self._last: tuple[float | None, float] = (None, 0.0)
        self._reported_unexpected = False
        self._baseline()

    def _read_source(self) -> str | None:
        read = self._probe.read(CLOCKSOURCE)
        value = read.value
        return value if isinstance(value, str) else None

    def _baseline(self) -> None:
        self._source = self._read_source()
        self._last = (self._probe.wall_time(), self._probe.monotonic())

    @property
    def clocksource(self) -> str | None:
        """The clocksource seen at the last check."""
        return self._source

    def _emit(self, event: ClockEvent) -> None:
        log.warning("clock guard: %s", event.message)
        with self._lock:
            self.events.append(event)
        if self._on_event is not None:
            self._on_event(event)

    def check(self) -> list[ClockEvent]:
        """Run one comparison now and return the events it produced."""
        found: list[ClockEvent] = []
        source = self._read_source()
        if source != self._source:
            if source is None:
                found.append(
                    ClockEvent(
                        "clocksource_unreadable",
                        f"{CLOCKSOURCE} became unreadable (was {self._source!r})",
                        old=self._source,
                    )
                )
            else:
                found.append(
                    ClockEvent(
                        "clocksource_changed",
                        f"clocksource changed from {self._source!r} to {source!r}",
                        old=self._source,
                        new=source,
                    )
                )
            self._source = source
        if self._expected is not None and source is not None and source != self._expected:
            if not self._reported_unexpected:
                found.append(
                    ClockEvent(
                        "clocksource_unexpected",
                        f"clocksource is {source!r}, not {self._expected!r} (TIME-1)",
                        old=self._expected,
                        new=source,
                    )
                )
                self._reported_unexpected = True
        else:
            self._reported_unexpected = False
        wall = self._probe.wall_time()
        mono = self._probe.monotonic()
        last_wall, last_mono = self._last
        if wall is not None and last_wall is not None:
            jump = (wall - last_wall) - (mono - last_mono)
            if abs(jump) > self._max_jump:
                direction = "forward" if jump > 0 else "backward"
                found.append(
                    ClockEvent(
                        "wall_clock_jump",
                        f"wall clock jumped {direction} by {abs(jump):.3f} s "
                        f"relative to the monotonic clock",
                        jump=jump,
                    )
                )
        self._last = (wall, mono)
        for event in found:
            self._emit(event)
        return found

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.check()

    def start(self) -> ClockGuard:
        """Start the background thread (idempotent). Returns self."""
        if self._thread is None:
            self._stop.clear()
            self._baseline()
            self._thread = threading.Thread(
                target=self._loop, name="nitroguard-clockguard", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the background thread and wait for it to finish."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """`stop` with the default timeout (what ``with`` calls on exit)."""
        self.stop()

    def __enter__(self) -> Self:
        # Entering starts the thread (the base class only returns self).
        self.start()
        return self
