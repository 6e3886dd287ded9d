"""`nitroguard.probe.stats` (sans-IO) and the leak verdicts, against hand-computed values."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nitroguard._commands._demo.compare import leaky_compare
from nitroguard.errors import Error, ProbeError, Reason
from nitroguard.probe._leak import NO_REPLY, LeakConfig, LeakSamples, analyse
from nitroguard.probe.stats import (
    DEFAULT_CROPS,
    crop,
    dudect_crops,
    length_counts,
    mean,
    percentile,
    timing_test,
    variance,
    welch_t,
)

# ----------------------------------------------------------------- hand-computed values


def test_welch_t_hand_computed() -> None:
    # a: mean 2.5, var 5/3; b: mean 5, var 20/3; t = -2.5 / sqrt(5/12 + 20/12) = -sqrt(3).
    assert welch_t([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(-math.sqrt(3), rel=1e-15)
    # a: mean 0.25, var 0.25; b constant 1: t = -0.75 / sqrt(0.25 / 4) = -3.
    assert welch_t([0, 0, 0, 1], [1, 1, 1, 1]) == -3.0
    assert welch_t([1.5, 2.5], [0.5, 1.5]) == pytest.approx(1 / math.sqrt(0.5 / 2 + 0.5 / 2))
    assert welch_t([3, 3], [3, 3]) == 0.0
    assert welch_t([3, 3], [2, 2]) == math.inf
    assert welch_t([2, 2], [3, 3]) == -math.inf


def test_mean_variance_hand_computed() -> None:
    assert mean([1, 2, 3, 4]) == 2.5
    assert variance([1, 2, 3, 4]) == pytest.approx(5 / 3)
    assert variance([0.1, 0.1, 0.1]) == 0.0
    # Exact arithmetic: no cancellation for large offsets (naive sum of squares fails here).
    big = 10**15
    assert variance([big + 1, big + 2, big + 3]) == 1.0


def test_percentile_nearest_rank_wikipedia_example() -> None:
    values = [15, 20, 35, 40, 50]
    assert percentile(values, 0) == 15
    assert percentile(values, 30) == 20
    assert percentile(values, 40) == 20
    assert percentile(values, 50) == 35
    assert percentile(values, 100) == 50


def test_dudect_crops_and_crop() -> None:
    assert dudect_crops(10)[:3] == (50.0, 75.0, 87.5)
    assert dudect_crops(1) == (100 * (1 - 0.5**10),)
    assert len(dudect_crops(100)) == 100
    assert DEFAULT_CROPS[0] == 100.0
    assert len(DEFAULT_CROPS) == 11
    # pooled [1,2,3,4,5,6,10,20]: the 75th percentile (rank 6) is 6.
    assert crop([1, 2, 3, 10], [4, 5, 6, 20], 75) == (6, [1, 2, 3], [4, 5, 6])


def test_timing_test_picks_the_largest_abs_t() -> None:
    # The slow outliers (1000) hide the shift; cropping them reveals it.
    a = [10, 11, 10, 11, 10, 11, 10, 11, 1000, 1000]
    b = [12, 13, 12, 13, 12, 13, 12, 13, 1000, 1000]
    test = timing_test(a, b)
    uncropped = test.crops[0]
    assert uncropped.percentile == 100.0
    assert abs(uncropped.t) < 1
    by_q = {c.percentile: c for c in test.crops}
    p75 = by_q[75.0]  # pooled p75 (rank 15 of 20) = 13: every small value kept, 1000s dropped
    assert (p75.threshold, p75.n_a, p75.n_b, p75.mean_a, p75.mean_b) == (13.0, 8, 8, 10.5, 12.5)
    # var 2/7 each (n=8): t = -2 / sqrt(2 * (2/7) / 8) = -2 * sqrt(14).
    assert p75.t == pytest.approx(-2 * math.sqrt(14))
    # pooled p50 (rank 10) = 12: b keeps only its four 12s (variance 0).
    # t = -1.5 / sqrt((2/7) / 8) = -1.5 * sqrt(28), larger in size than p75's: the best.
    best = test.best
    assert (best.percentile, best.threshold, best.n_a, best.n_b) == (50.0, 12.0, 8, 4)
    assert best.t == pytest.approx(-1.5 * math.sqrt(28))
    assert not test.passed
    assert timing_test(a, b, threshold=100).passed
    # A crop that leaves fewer than 2 samples in a class is skipped, not an error.
    only = timing_test([1, 2, 100], [3, 4, 100], crops=(100.0, 10.0))
    assert [c.percentile for c in only.crops] == [100.0]


def test_length_counts() -> None:
    assert length_counts([6, 2, 6, 6]) == {2: 1, 6: 3}
    assert list(length_counts([9, 1, 5])) == [1, 5, 9]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: welch_t([1], [1, 2]), "at least 2 samples"),
        (lambda: welch_t([1, math.nan], [1, 2]), "not a finite number"),
        (lambda: welch_t([1, 2], [math.inf, 2]), "not a finite number"),
        (lambda: mean([]), "mean of no values"),
        (lambda: percentile([], 50), "percentile of no values"),
        (lambda: percentile([1], 101), "percentile must be"),
        (lambda: dudect_crops(0), "crop count"),
        (lambda: timing_test([1, 2], [3, 4], threshold=0), "threshold must be"),
        (lambda: timing_test([1], [3, 4]), "at least 2 samples"),
    ],
)
def test_stats_errors(call: object, message: str) -> None:
    with pytest.raises(ProbeError, match=message) as info:
        call()  # type: ignore[operator]
    assert info.value.reason is Reason.INVALID_ARGUMENT


def test_leaky_compare_spins_once_per_matching_byte() -> None:
    spins: list[float] = []
    assert leaky_compare(b"abcd", b"abcd", 0.5, spins.append) is True
    assert spins == [0.5] * 4
    spins.clear()
    assert leaky_compare(b"abXd", b"abcd", 0.5, spins.append) is False
    assert len(spins) == 2
    spins.clear()
    assert leaky_compare(b"ab", b"abcd", 0.5, spins.append) is False
    assert len(spins) == 2


# ----------------------------------------------------------------- properties

_ns = st.integers(min_value=0, max_value=10**9)
_samples = st.lists(_ns, min_size=2, max_size=60)


@settings(max_examples=300, deadline=None)
@given(_samples, _samples)
def test_t_is_antisymmetric(a: list[int], b: list[int]) -> None:
    assert welch_t(a, b) == -welch_t(b, a)


@settings(max_examples=300, deadline=None)
@given(_samples, _samples, st.integers(min_value=-(10**12), max_value=10**12))
def test_t_is_invariant_to_shifting_both_classes(a: list[int], b: list[int], k: int) -> None:
    assert welch_t([x + k for x in a], [x + k for x in b]) == welch_t(a, b)


@settings(max_examples=200, deadline=None)
@given(_samples, _samples, st.integers(min_value=1, max_value=10**6))
def test_t_is_invariant_to_scaling_both_classes(a: list[int], b: list[int], k: int) -> None:
    assert welch_t([x * k for x in a], [x * k for x in b]) == welch_t(a, b)


@settings(max_examples=200, deadline=None)
@given(_samples, st.randoms(use_true_random=False))
def test_t_is_zero_for_the_same_samples(a: list[int], rnd: object) -> None:
    shuffled = list(a)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert welch_t(a, shuffled) == 0.0
    assert all(c.t == 0.0 for c in timing_test(a, list(a)).crops)


@settings(max_examples=200, deadline=None)
@given(_samples, _samples)
def test_t_sign_follows_the_means(a: list[int], b: list[int]) -> None:
    t = welch_t(a, b)
    if sum(a) * len(b) > sum(b) * len(a):
        assert t > 0
    elif sum(a) * len(b) < sum(b) * len(a):
        assert t < 0
    else:
        assert t == 0.0
    assert not math.isnan(t)
    assert mean(a) == pytest.approx(sum(a) / len(a))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=20),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=20),
    st.floats(min_value=-1, max_value=101),
)
def test_stats_only_raise_nitroguard_errors(a: list[float], b: list[float], q: float) -> None:
    for call in (
        lambda: welch_t(a, b),
        lambda: timing_test(a, b),
        lambda: percentile(a, q),
        lambda: crop(a, b, q),
    ):
        with contextlib.suppress(Error):
            call()


@settings(max_examples=100, deadline=None)
@given(_samples, st.floats(min_value=0, max_value=100))
def test_crop_keeps_at_least_the_requested_share(a: list[int], q: float) -> None:
    cut, kept_a, kept_b = crop(a, a, q)
    assert len(kept_a) == len(kept_b) >= math.ceil(q / 100 * len(a) * 2) // 2
    assert all(x <= cut for x in kept_a)


# ----------------------------------------------------------------- verdicts (pure)

_CFG = LeakConfig(class_a=b"\x00" * 4, class_b=b"\xff" * 4, samples=20)


def _samples_of(
    times: tuple[list[int], list[int]], lengths: tuple[list[int], list[int]]
) -> LeakSamples:
    return LeakSamples(times=times, lengths=lengths, errors=[0, 0], elapsed=1.0)


def test_analyse_passes_identical_classes() -> None:
    times = [100, 120, 110, 130, 105, 125, 115, 135, 101, 121, 111, 131]
    report = analyse("tcp://127.0.0.1:1", _CFG, _samples_of((times, times[::-1]), ([4] * 12,) * 2))
    assert report.passed
    sc1, sc3 = report.checks
    assert sc1.to_dict()["t"] == 0.0
    assert sc3.detail == "every reply of both classes is 4 bytes"
    assert report.to_dict()["samples"] == {"a": 12, "b": 12}


def test_analyse_flags_a_separated_pair_and_reports_inf() -> None:
    report = analyse(
        "t", _CFG, _samples_of(([200] * 10, [100] * 10), ([2] * 10, [6] * 9 + [NO_REPLY]))
    )
    sc1, sc3 = report.checks
    assert not sc1.passed
    assert sc1.to_dict()["t"] == "inf"
    assert "class A is slower" in sc1.detail
    assert not sc3.passed
    assert sc3.to_dict()["lengths"] == {"a": {"2": 10}, "b": {"none": 1, "6": 9}}
    assert not report.passed


def test_analyse_inconclusive_and_length_mix() -> None:
    few = analyse("t", _CFG, _samples_of(([1, 2, 3], [1, 2, 3]), ([], [])))
    assert [c.passed for c in few.checks] == [False, False]
    assert "inconclusive" in few.checks[0].detail
    assert "inconclusive" in few.checks[1].detail
    times = list(range(100, 130))
    # The same two lengths in both classes, but mixed 29:1 versus 1:29.
    skewed = analyse("t", _CFG, _samples_of((times, times), ([8] * 29 + [9], [8] + [9] * 29)))
    assert not skewed.checks[1].passed
    assert "mix depends on the class" in skewed.checks[1].detail
    alike = analyse("t", _CFG, _samples_of((times, times), ([8, 9] * 15, [9, 8] * 15)))
    assert alike.checks[1].passed
    assert "mixed alike" in alike.checks[1].detail


def test_analyse_notes_unequal_request_lengths() -> None:
    cfg = LeakConfig(class_a=b"aa", class_b=b"aaaa", samples=20)
    report = analyse("t", cfg, _samples_of(([1, 2] * 6, [1, 2] * 6), ([2] * 12, [4] * 12)))
    assert any("differ in length" in n for n in report.notes)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"class_b": b"a"}, "must differ"),
        ({"samples": 19}, "samples must be"),
        ({"threshold": 0.0}, "threshold must be"),
        ({"duration": 0.0}, "duration must be"),
        ({"timeout": 61.0}, "timeout must be"),
        ({"warmup": -1}, "warmup must be"),
    ],
)
def test_leak_config_bounds(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"class_a": b"a", "class_b": b"b", **kwargs}
    with pytest.raises(ProbeError, match=message):
        LeakConfig(**args)  # type: ignore[arg-type]
