"""Fuzz the proxy relay (splice and copy paths): no byte lost/duplicated, no fd leaked."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nitroguard.testing import Scenario, open_fds, random_scenario, run_scenario
from nitroguard.transport._splice import splice_available

PATHS = ["copy", "splice"] if splice_available() else ["copy"]


def run(scenario: Scenario, relay: str) -> None:
    before = open_fds()
    outcome = asyncio.run(asyncio.wait_for(run_scenario(scenario, relay=relay), 30))
    outcome.check(scenario)
    assert open_fds() == before, "a descriptor outlived the proxy"


@pytest.mark.parametrize("relay", PATHS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_random_scenarios(relay: str, seed: int) -> None:
    run(random_scenario(random.Random(seed), max_size=128 * 1024), relay)


@pytest.mark.parametrize("relay", PATHS)
def test_large_both_ways_exact(relay: str) -> None:
    rng = random.Random(7)
    scenario = Scenario(
        up=rng.randbytes(3 << 20),
        down=rng.randbytes(2 << 20),
        client_chunks=(65536, 1, 200_000),
        upstream_chunks=(300_000,),
    )
    run(scenario, relay)


def test_check_catches_a_lost_byte() -> None:
    from nitroguard.testing import Outcome

    scenario = Scenario(up=b"abc", down=b"xyz", client_chunks=(1,), upstream_chunks=(1,))
    Outcome(b"abc", b"xyz").check(scenario)
    with pytest.raises(AssertionError, match="without a reset"):
        Outcome(b"ab", b"xyz").check(scenario)
    with pytest.raises(AssertionError, match="not a prefix"):
        Outcome(b"abc", b"xzy").check(scenario)
