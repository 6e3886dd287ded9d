"""Hypothesis fuzzing of the tar / OCI readers: only nitroguard errors escape.

Bounded for CI; ``bench/fuzz_oci.py`` runs the 100,000-input campaign.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oci_fuzz import check_export, check_flatten, sample

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.integers(min_value=0, max_value=2**32))
def test_fuzz_export_stream(seed: int) -> None:
    assert check_export(sample(random.Random(seed)))


@SETTINGS
@given(st.binary(max_size=2048))
def test_fuzz_export_random_bytes(data: bytes) -> None:
    assert check_export(data)


@SETTINGS
@given(st.integers(min_value=0, max_value=2**32))
def test_fuzz_flatten(seed: int) -> None:
    rng = random.Random(seed)
    assert check_flatten([sample(rng) for _ in range(rng.randrange(1, 4))])
