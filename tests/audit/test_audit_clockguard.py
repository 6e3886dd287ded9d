"""ClockGuard: clocksource changes and wall-clock jumps against the monotonic clock."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from audit_trees import Tree

from nitroguard.audit import ClockEvent, ClockGuard

CLOCKSOURCE = "/sys/devices/system/clocksource/clocksource0/current_clocksource"


class Clocks:
    """Two settable clocks (wall and monotonic), advanced by the test."""

    def __init__(self) -> None:
        self.wall = 1_800_000_000.0
        self.mono = 100.0

    def tick(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def guard_for(tree: Tree, clocks: Clocks, **kwargs: object) -> ClockGuard:
    probe = tree.probe(wall_clock=lambda: clocks.wall, monotonic_clock=lambda: clocks.mono)
    return ClockGuard(probe, **kwargs)  # type: ignore[arg-type]


def test_steady_clocks_produce_no_events(tree: Tree) -> None:
    tree.write(CLOCKSOURCE, "kvm-clock\n")
    clocks = Clocks()
    guard = guard_for(tree, clocks)
    for _ in range(5):
        clocks.tick(5.0)
        clocks.wall += 0.01  # ordinary slew stays under max_jump
        assert guard.check() == []
    assert guard.clocksource == "kvm-clock"
    assert guard.events == []


@pytest.mark.parametrize("step", [30.0, -3600.0, 1.5, -1.5])
def test_wall_clock_step_is_reported(tree: Tree, step: float) -> None:
    tree.write(CLOCKSOURCE, "kvm-clock\n")
    clocks = Clocks()
    guard = guard_for(tree, clocks, max_jump=1.0)
    clocks.tick(5.0)
    clocks.wall += step  # settimeofday from a hostile source
    events = guard.check()
    assert [e.kind for e in events] == ["wall_clock_jump"]
    assert events[0].jump == pytest.approx(step)
    direction = "forward" if step > 0 else "backward"
    assert f"jumped {direction} by {abs(step):.3f} s" in events[0].message
    clocks.tick(5.0)
    assert guard.check() == []  # measured from the new baseline


def test_clocksource_change_is_reported(tree: Tree, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="nitroguard.audit.clock")
    tree.write(CLOCKSOURCE, "kvm-clock\n")
    clocks = Clocks()
    seen: list[ClockEvent] = []
    guard = guard_for(tree, clocks, on_event=seen.append)
    tree.write(CLOCKSOURCE, "tsc\n")
    clocks.tick(1.0)
    events = guard.check()
    assert [(e.kind, e.old, e.new) for e in events] == [
        ("clocksource_changed", "kvm-clock", "tsc"),
        ("clocksource_unexpected", "kvm-clock", "tsc"),
    ]
    assert seen == events == guard.events
    assert any(
        "clocksource changed from 'kvm-clock' to 'tsc'" in r.getMessage() for r in caplog.records
    )
    # reported once, not on every tick
    clocks.tick(1.0)
    assert guard.check() == []
    tree.write(CLOCKSOURCE, "kvm-clock\n")
    assert [e.kind for e in guard.check()] == ["clocksource_changed"]


def test_clocksource_becoming_unreadable(tree: Tree) -> None:
    tree.write(CLOCKSOURCE, "kvm-clock\n")
    guard = guard_for(tree, Clocks())
    tree.remove(CLOCKSOURCE)
    events = guard.check()
    assert [(e.kind, e.old) for e in events] == [("clocksource_unreadable", "kvm-clock")]


def test_unexpected_clocksource_at_start(tree: Tree) -> None:
    tree.write(CLOCKSOURCE, "tsc\n")
    guard = guard_for(tree, Clocks())
    assert [e.kind for e in guard.check()] == ["clocksource_unexpected"]
    guard_any = guard_for(tree, Clocks(), expected_clocksource=None)
    assert guard_any.check() == []


def test_unknown_wall_clock_only_watches_the_clocksource(tree: Tree) -> None:
    tree.write(CLOCKSOURCE, "kvm-clock\n")
    guard = ClockGuard(tree.probe(wall_clock=None))
    assert guard.check() == []


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        ClockGuard(None, interval=0)  # type: ignore[arg-type]


def test_background_thread_notices_a_jump_and_stops(tree: Tree) -> None:
    # Real thread, real monotonic clock; only the wall clock is stepped by the test.
    tree.write(CLOCKSOURCE, "kvm-clock\n")
    offset = [0.0]
    probe = tree.probe(wall_clock=lambda: time.time() + offset[0])
    noticed = threading.Event()
    guard = ClockGuard(probe, interval=0.02, max_jump=5.0, on_event=lambda e: noticed.set())
    with guard:
        assert guard.running
        time.sleep(0.1)
        assert guard.events == []
        offset[0] = -86400.0  # the parent "sets" the clock a day back
        assert noticed.wait(10), "the guard did not notice the jump"
    assert not guard.running
    jumps = [e for e in guard.events if e.kind == "wall_clock_jump"]
    assert jumps
    assert jumps[0].jump == pytest.approx(-86400.0, abs=1.0)
    count = len(guard.events)
    offset[0] = 0.0
    time.sleep(0.1)
    assert len(guard.events) == count  # stopped: nothing more is checked
    guard.stop()  # idempotent
