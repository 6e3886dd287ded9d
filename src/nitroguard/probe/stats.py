"""Sans-IO statistics for the side-channel probe (SC-1, SC-3): Welch's t-test, dudect-style.

Pure functions over sequences of numbers (stdlib only: no numpy or scipy).
Means and variances are computed **exactly** (with `fractions.Fraction`, so
integer nanosecond timings never lose precision), and only the final square
root is a float. That makes the properties the tests rely on exact: ``t(a, b)
== -t(b, a)``, shifting both classes by the same integer leaves ``t``
unchanged, and identical samples give ``0.0``.

dudect (Reparaz, Balasch, Verbauwhede, "Dude, is my code constant time?",
DATE 2017) crops the slowest measurements at a series of percentiles, because
a timing leak hides in the body of the distribution while the slow tail is
mostly scheduler noise, then reports the largest |t| over the crops. Its
percentiles are ``1 - 0.5 ** (10 * (i + 1) / N)``; `dudect_crops` gives the
same series for any ``N``. A |t| above 4.5 (dudect's threshold) is strong
evidence that the two classes take different time.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, final

from nitroguard.errors import ProbeError

__all__ = [
    "DEFAULT_CROPS",
    "DEFAULT_THRESHOLD",
    "CropResult",
    "TimingTest",
    "crop",
    "dudect_crops",
    "length_counts",
    "mean",
    "percentile",
    "timing_test",
    "variance",
    "welch_t",
]

#: dudect's threshold on |t|: above it the classes are considered distinguishable.
DEFAULT_THRESHOLD: Final = 4.5

Number = int | float


def dudect_crops(count: int) -> tuple[float, ...]:
    """dudect's crop percentiles: ``100 * (1 - 0.5 ** (10 * (i + 1) / count))`` for i < count.

    Args:
        count: how many percentiles (dudect uses 100; the probe uses 10).

    Returns:
        Increasing percentiles in (0, 100), e.g. ``50.0, 75.0, 87.5, ...`` for 10.

    Raises:
        ProbeError: ``count`` is not in 1..1000.
    """
    if not 1 <= count <= 1000:
        raise ProbeError(f"crop count must be in 1..1000, got {count}")
    return tuple(100.0 * (1.0 - 0.5 ** (10.0 * (i + 1) / count)) for i in range(count))


#: The crops the probe tries: uncropped (100) and dudect's series for 10 percentiles.
DEFAULT_CROPS: Final = (100.0, *dudect_crops(10))


def _exact(x: Number) -> Fraction | int:
    if isinstance(x, int):
        return x
    if not math.isfinite(x):
        raise ProbeError(f"sample is not a finite number: {x!r}")
    return Fraction(x)


def _moments(values: Sequence[Number]) -> tuple[int, Fraction, Fraction]:
    """``(n, mean, unbiased variance)``, exactly; needs ``n >= 2``."""
    n = len(values)
    if n < 2:
        raise ProbeError(f"need at least 2 samples per class, got {n}")
    s1: Fraction | int = 0
    s2: Fraction | int = 0
    for v in values:
        x = _exact(v)
        s1 += x
        s2 += x * x
    # n * sum(x^2) - (sum x)^2 is exact here, so the usual cancellation problem does not arise.
    return n, Fraction(s1, n), Fraction(n * s2 - s1 * s1, n * (n - 1))


def mean(values: Sequence[Number]) -> float:
    """Arithmetic mean of at least one value (exact, rounded once to float).

    Raises:
        ProbeError: no values, or a non-finite one.
    """
    if not values:
        raise ProbeError("mean of no values")
    total: Fraction | int = 0
    for v in values:
        total += _exact(v)
    return float(Fraction(total, len(values)))


def variance(values: Sequence[Number]) -> float:
    """Unbiased sample variance (divides by ``n - 1``) of at least two values.

    Raises:
        ProbeError: fewer than two values, or a non-finite one.
    """
    return float(_moments(values)[2])


def welch_t(a: Sequence[Number], b: Sequence[Number]) -> float:
    """Welch's t-statistic ``(mean_a - mean_b) / sqrt(var_a / n_a + var_b / n_b)``.

    Args:
        a: samples of class A (at least 2).
        b: samples of class B (at least 2).

    Returns:
        ``t``: positive when A is slower. ``0.0`` when the means are equal
        (including two constant, equal classes); ``±inf`` when both classes are
        constant and differ (no noise at all: perfectly distinguishable).

    Raises:
        ProbeError: fewer than 2 samples in a class, or a non-finite sample.
    """
    na, ma, va = _moments(a)
    nb, mb, vb = _moments(b)
    diff = ma - mb
    if diff == 0:
        return 0.0
    d2 = va / na + vb / nb
    if d2 == 0:
        return math.copysign(math.inf, diff)
    try:
        magnitude = math.sqrt(float(diff * diff / d2))
    except OverflowError:
        magnitude = math.inf
    return math.copysign(magnitude, diff)


def percentile(values: Sequence[Number], q: float) -> Number:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence.

    ``q = 100`` is the maximum; ``q = 0`` the minimum.

    Raises:
        ProbeError: empty input or ``q`` outside 0..100.
    """
    if not values:
        raise ProbeError("percentile of no values")
    if not 0 <= q <= 100:
        raise ProbeError(f"percentile must be in 0..100, got {q}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def crop(
    a: Sequence[Number], b: Sequence[Number], q: float
) -> tuple[Number, list[Number], list[Number]]:
    """Drop the slowest measurements: keep those ``<=`` the pooled ``q``-th percentile.

    The cut-off comes from both classes pooled (as in dudect), so it does not
    depend on the class labels.

    Returns:
        ``(threshold, kept_a, kept_b)``.

    Raises:
        ProbeError: both classes empty, or ``q`` outside 0..100.
    """
    threshold = percentile([*a, *b], q)
    return threshold, [x for x in a if x <= threshold], [x for x in b if x <= threshold]


@final
@dataclass(frozen=True, slots=True)
class CropResult:
    """Welch's t after keeping the measurements at or below one pooled percentile."""

    percentile: float
    threshold: float
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    t: float


@final
@dataclass(frozen=True, slots=True)
class TimingTest:
    """Welch's t over every crop; ``best`` is the crop with the largest |t|."""

    threshold: float
    crops: tuple[CropResult, ...]

    @property
    def best(self) -> CropResult:
        """The crop with the largest |t| (the first one on ties)."""
        return max(self.crops, key=lambda c: abs(c.t))

    @property
    def passed(self) -> bool:
        """True when no crop's |t| exceeds the threshold."""
        return abs(self.best.t) <= self.threshold


def timing_test(
    a: Sequence[Number],
    b: Sequence[Number],
    *,
    crops: Iterable[float] = DEFAULT_CROPS,
    threshold: float = DEFAULT_THRESHOLD,
) -> TimingTest:
    """Welch's t between two classes of timings at every crop percentile (dudect-style).

    Args:
        a: class A timings (at least 2).
        b: class B timings (at least 2).
        crops: percentiles to crop at (100 = keep everything). A crop that
            leaves fewer than 2 samples in a class is skipped.
        threshold: the |t| above which the test fails.

    Returns:
        A `TimingTest` (at least the uncropped result).

    Raises:
        ProbeError: fewer than 2 samples in a class, a non-finite sample, a
            percentile outside 0..100 or a threshold that is not positive.
    """
    if not 0 < threshold < math.inf:
        raise ProbeError(f"threshold must be a positive number, got {threshold}")
    if len(a) < 2 or len(b) < 2:
        raise ProbeError(f"need at least 2 samples per class, got {len(a)} and {len(b)}")
    results = [_crop_result(100.0, max(*a, *b), list(a), list(b))]
    for q in crops:
        if q == 100.0:
            continue
        cut, ka, kb = crop(a, b, q)
        if len(ka) >= 2 and len(kb) >= 2:
            results.append(_crop_result(float(q), cut, ka, kb))
    return TimingTest(threshold, tuple(results))


def _crop_result(q: float, cut: Number, a: list[Number], b: list[Number]) -> CropResult:
    return CropResult(
        percentile=q,
        threshold=float(cut),
        n_a=len(a),
        n_b=len(b),
        mean_a=mean(a),
        mean_b=mean(b),
        t=welch_t(a, b),
    )


def length_counts(lengths: Iterable[int]) -> dict[int, int]:
    """Distinct lengths and how often each occurred, sorted by length."""
    return dict(sorted(Counter(lengths).items()))
