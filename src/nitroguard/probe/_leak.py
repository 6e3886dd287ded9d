"""The side-channel probe (``nitroguard probe leak``): can the parent tell two secret classes apart?

The parent sees every request and reply on the vsock and can time them with
near-clock precision (checklist 2.2, SC-1, SC-3). This driver plays that
parent: it sends two classes of framed requests (say, a correct and a wrong
MAC) on one connection, choosing the class of every sample at random
(dudect-style, so drift and noise hit both classes alike), records each
request's latency (``perf_counter_ns``, from just before the send to the last
byte of the reply) and the reply's payload length, and then judges:

- **SC-1**: Welch's t on latency between the classes, at every dudect crop
  (`nitroguard.probe.stats.timing_test`); fails when max |t| exceeds the
  threshold (default 4.5).
- **SC-3**: the reply-length distributions must be the same: the same set of
  distinct lengths in both classes (a request that got no reply counts as the
  length ``"none"``: the parent sees the close too) and, when there is more
  than one length, no significant difference by Welch's t on the lengths.

Bounds: at most ``samples`` (+ ``warmup``) requests, at most ``duration``
seconds of sampling, a per-request timeout, and at most `MAX_ERRORS` failed
requests before it stops. The connection is closed in a ``finally``. The
clock, the deadline clock and the random source are parameters (tests and
reproducible runs).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, final

from nitroguard.errors import Error, ProbeError
from nitroguard.probe._probe import check_target, preflight
from nitroguard.probe.stats import DEFAULT_THRESHOLD, TimingTest, length_counts, timing_test
from nitroguard.transport import Address, BlockingClient

__all__ = [
    "MAX_ERRORS",
    "MAX_SAMPLES",
    "MIN_CLASS_SAMPLES",
    "LeakCheck",
    "LeakConfig",
    "LeakReport",
    "LeakSamples",
    "analyse",
    "collect",
    "run_leak",
]

#: Most samples one run may take.
MAX_SAMPLES: Final = 1_000_000
#: Longest sampling time, seconds.
MAX_LEAK_DURATION: Final = 600.0
#: A class needs this many timed replies for a verdict on SC-1.
MIN_CLASS_SAMPLES: Final = 10
#: Failed requests (timeouts, resets) after which the run stops.
MAX_ERRORS: Final = 100
#: Length recorded for a request that got no reply (the parent sees the close).
NO_REPLY: Final = -1
_MAX_REPLY: Final = 16 * 1024 * 1024


@final
@dataclass(frozen=True, slots=True)
class LeakConfig:
    """Side-channel probe parameters.

    Attributes:
        class_a: request payload of class A (framed by the probe), e.g. the right MAC.
        class_b: request payload of class B, e.g. a wrong MAC of the same length.
        samples: timed requests in total, split at random between the classes
            (default 4000; 20..1,000,000).
        threshold: |t| above which SC-1 (and the length test of SC-3) fails (default 4.5).
        duration: most seconds of sampling (default 60); fewer samples are
            taken if it runs out.
        timeout: seconds one request may take (default 2).
        warmup: requests sent first and discarded (default 100; caches, JIT-less
            but still: connection setup, allocator).
        allow_remote: allow targets that are not loopback, unix or vsock.
        seed: seed for the class order (reproducible runs).
    """

    class_a: bytes
    class_b: bytes
    samples: int = 4000
    threshold: float = DEFAULT_THRESHOLD
    duration: float = 60.0
    timeout: float = 2.0
    warmup: int = 100
    allow_remote: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.class_a == self.class_b:
            raise ProbeError("class A and class B requests must differ")
        if not 2 * MIN_CLASS_SAMPLES <= self.samples <= MAX_SAMPLES:
            raise ProbeError(
                f"samples must be in {2 * MIN_CLASS_SAMPLES}..{MAX_SAMPLES}, got {self.samples}"
            )
        if not 0 < self.threshold < math.inf:
            raise ProbeError(f"threshold must be a positive number, got {self.threshold}")
        if not 0 < self.duration <= MAX_LEAK_DURATION:
            raise ProbeError(
                f"duration must be in (0, {MAX_LEAK_DURATION:g}] seconds, got {self.duration}"
            )
        if not 0 < self.timeout <= 60:
            raise ProbeError(f"timeout must be in (0, 60] seconds, got {self.timeout}")
        if not 0 <= self.warmup <= 10_000:
            raise ProbeError(f"warmup must be in 0..10000, got {self.warmup}")


@dataclass(slots=True)
class LeakSamples:
    """Raw measurements per class: latencies in ns, reply lengths (`NO_REPLY` if none)."""

    times: tuple[list[int], list[int]] = field(default_factory=lambda: ([], []))
    lengths: tuple[list[int], list[int]] = field(default_factory=lambda: ([], []))
    errors: list[int] = field(default_factory=lambda: [0, 0])
    elapsed: float = 0.0
    stopped: str = ""


@final
@dataclass(frozen=True, slots=True)
class LeakCheck:
    """One check's verdict; ``evidence`` keys are merged into the JSON object."""

    id: str
    passed: bool
    detail: str
    evidence: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """``{"id", "passed", "detail", **evidence}``."""
        return {"id": self.id, "passed": self.passed, "detail": self.detail, **self.evidence}


@final
@dataclass(frozen=True, slots=True)
class LeakReport:
    """The whole side-channel run."""

    target: str
    checks: tuple[LeakCheck, ...]
    samples: tuple[int, int]
    errors: tuple[int, int]
    elapsed: float
    notes: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """``{"target", "checks": [...], "passed", "samples", "errors", "elapsed_s", "notes"}``."""
        return {
            "target": self.target,
            "checks": [c.to_dict() for c in self.checks],
            "passed": self.passed,
            "samples": {"a": self.samples[0], "b": self.samples[1]},
            "errors": {"a": self.errors[0], "b": self.errors[1]},
            "elapsed_s": round(self.elapsed, 3),
            "notes": list(self.notes),
        }


def collect(
    address: Address,
    config: LeakConfig,
    *,
    rng: random.Random,
    clock: Callable[[], int] = time.perf_counter_ns,
    monotonic: Callable[[], float] = time.monotonic,
) -> LeakSamples:
    """Send ``warmup + samples`` requests of random class on one connection and time them.

    A failed request (timeout, reset, close) is recorded for its class as a
    `NO_REPLY` length and no timing; the next request reconnects.

    Args:
        address: the target (already checked by `check_target`).
        config: the `LeakConfig`.
        rng: chooses each sample's class (``getrandbits(1)``: 0 = A, 1 = B).
        clock: nanosecond clock used for latencies.
        monotonic: seconds clock used for the ``duration`` budget.

    Returns:
        The `LeakSamples`.
    """
    out = LeakSamples()
    payloads = (config.class_a, config.class_b)
    start = monotonic()
    deadline = start + config.duration
    client: BlockingClient | None = None
    total = config.warmup + config.samples
    try:
        for i in range(total):
            if monotonic() >= deadline:
                out.stopped = f"duration of {config.duration:g} s reached after {i} requests"
                break
            if sum(out.errors) >= MAX_ERRORS:
                out.stopped = f"stopped after {MAX_ERRORS} failed requests"
                break
            cls = rng.getrandbits(1)
            try:
                if client is None:
                    client = BlockingClient(
                        address, timeout=config.timeout, max_frame_size=_MAX_REPLY
                    )
                t0 = clock()
                reply = client.request(payloads[cls], timeout=config.timeout)
                t1 = clock()
            except Error:
                if client is not None:
                    client.close()
                    client = None
                if i >= config.warmup:
                    out.errors[cls] += 1
                    out.lengths[cls].append(NO_REPLY)
                continue
            if i >= config.warmup:
                out.times[cls].append(t1 - t0)
                out.lengths[cls].append(len(reply))
    finally:
        if client is not None:
            client.close()
        out.elapsed = monotonic() - start
    return out


def _us(ns: float) -> float:
    return round(ns / 1000, 3)


def _t_json(t: float) -> float | str:
    """JSON has no infinity: a perfectly separated pair of classes reports ``"inf"``."""
    if math.isfinite(t):
        return round(t, 3)
    return "inf" if t > 0 else "-inf"


def _sc1(samples: LeakSamples, threshold: float) -> LeakCheck:
    ta, tb = samples.times
    if len(ta) < MIN_CLASS_SAMPLES or len(tb) < MIN_CLASS_SAMPLES:
        return LeakCheck(
            "SC-1",
            False,
            f"inconclusive: {len(ta)} and {len(tb)} timed replies; need at least "
            f"{MIN_CLASS_SAMPLES} per class",
            {"threshold": threshold, "n_a": len(ta), "n_b": len(tb)},
        )
    test: TimingTest = timing_test(ta, tb, threshold=threshold)
    best = test.best
    slower = "A" if best.t > 0 else "B"
    crop = "uncropped" if best.percentile == 100 else f"cropped at p{best.percentile:.4g}"
    summary = (
        f"max |t| = {abs(best.t):.2f} ({crop}: n = {best.n_a}/{best.n_b}, mean "
        f"{_us(best.mean_a):.1f} vs {_us(best.mean_b):.1f} us)"
    )
    if test.passed:
        detail = f"{summary} <= {threshold:g} over {len(test.crops)} crops"
    else:
        detail = f"{summary} > {threshold:g}: class {slower} is slower (timing leak)"
    return LeakCheck(
        "SC-1",
        test.passed,
        detail,
        {
            "threshold": threshold,
            "t": _t_json(best.t),
            "crop_percentile": round(best.percentile, 4),
            "crop_threshold_us": _us(best.threshold),
            "n_a": best.n_a,
            "n_b": best.n_b,
            "mean_us_a": _us(best.mean_a),
            "mean_us_b": _us(best.mean_b),
            "crops": [
                {
                    "percentile": round(c.percentile, 4),
                    "n_a": c.n_a,
                    "n_b": c.n_b,
                    "mean_us_a": _us(c.mean_a),
                    "mean_us_b": _us(c.mean_b),
                    "t": _t_json(c.t),
                }
                for c in test.crops
            ],
        },
    )


def _length_key(length: int) -> str:
    return "none" if length == NO_REPLY else str(length)


def _sc3(samples: LeakSamples, threshold: float) -> LeakCheck:
    la, lb = samples.lengths
    ca, cb = length_counts(la), length_counts(lb)
    evidence: dict[str, Any] = {
        "threshold": threshold,
        "lengths": {
            "a": {_length_key(k): v for k, v in ca.items()},
            "b": {_length_key(k): v for k, v in cb.items()},
        },
    }

    def show(c: dict[int, int]) -> str:
        return ", ".join(f"{_length_key(k)} x{v}" for k, v in c.items()) or "nothing"

    # A request that got no reply has no length to compare: never a pass on those.
    replied_a = sum(1 for x in la if x != NO_REPLY)
    replied_b = sum(1 for x in lb if x != NO_REPLY)
    if not replied_a or not replied_b:
        return LeakCheck(
            "SC-3",
            False,
            f"inconclusive: {replied_a} and {replied_b} replies (no samples to compare)",
            evidence,
        )
    if set(ca) != set(cb):
        detail = (
            f"reply lengths differ between the classes: A {show(ca)}; B {show(cb)} "
            "(the parent learns the class from the length)"
        )
        return LeakCheck("SC-3", False, detail, evidence)
    if len(ca) == 1:
        (length,) = ca
        detail = f"every reply of both classes is {_length_key(length)} bytes"
        return LeakCheck("SC-3", True, detail, evidence)
    if len(la) < 2 or len(lb) < 2:
        return LeakCheck("SC-3", False, f"inconclusive: {len(la)} and {len(lb)} replies", evidence)
    # Same set of lengths, several of them: do their proportions depend on the class?
    t = timing_test(la, lb, crops=(), threshold=threshold).best.t
    evidence["t"] = _t_json(t)
    if abs(t) > threshold:
        detail = (
            f"the reply-length mix depends on the class (|t| = {abs(t):.2f} > {threshold:g}): "
            f"A {show(ca)}; B {show(cb)}"
        )
        return LeakCheck("SC-3", False, detail, evidence)
    detail = (
        f"the same reply lengths in both classes, mixed alike (|t| = {abs(t):.2f}): "
        f"A {show(ca)}; B {show(cb)}"
    )
    return LeakCheck("SC-3", True, detail, evidence)


def analyse(target: str, config: LeakConfig, samples: LeakSamples) -> LeakReport:
    """Turn raw `LeakSamples` into the SC-1 and SC-3 verdicts (pure; no I/O)."""
    notes: list[str] = []
    if len(config.class_a) != len(config.class_b):
        notes.append(
            f"the class requests differ in length ({len(config.class_a)} vs "
            f"{len(config.class_b)} bytes): a difference may come from the length alone"
        )
    if samples.stopped:
        notes.append(samples.stopped)
    if any(samples.errors):
        notes.append(
            f"{samples.errors[0]} class A and {samples.errors[1]} class B requests got no reply"
        )
    checks = (_sc1(samples, config.threshold), _sc3(samples, config.threshold))
    return LeakReport(
        target=target,
        checks=checks,
        samples=(len(samples.lengths[0]), len(samples.lengths[1])),
        errors=(samples.errors[0], samples.errors[1]),
        elapsed=samples.elapsed,
        notes=tuple(notes),
    )


def run_leak(target: str | Address, config: LeakConfig) -> LeakReport:
    """Probe ``target`` for a timing (SC-1) and a reply-length (SC-3) leak (blocking).

    Runs in the calling thread with a blocking socket, so nothing else on an
    event loop distorts the timings.

    Args:
        target: the framed service (``tcp://127.0.0.1:5000``, ``unix:///...``, ``vsock://16:5000``).
        config: the `LeakConfig`.

    Returns:
        The `LeakReport`.

    Raises:
        ProbeError: ``remote_target_refused``, or ``target_unreachable`` when one
            legitimate request made first gets no answer.
        ConfigError: ``invalid_address``.
    """
    address = check_target(target, allow_remote=config.allow_remote)
    preflight(address, config.class_a, config.timeout)
    samples = collect(address, config, rng=random.Random(config.seed))
    return analyse(str(address), config, samples)
