"""The shared kernel facts (`nitroguard._kernel`) and both areas that grade them.

The environment audit and the EIF static checks read the same command line the same
way; the edge cases below are decided by the kernel's own rules (lib/cmdline.c
``next_arg``, kernel/params.c, Documentation/admin-guide/kernel-parameters.rst).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nitroguard._kernel import (
    NsmDriver,
    grade_clock,
    grade_mitigations,
    grade_trust_flags,
    kstrtobool,
    nsm_driver,
    parse_cmdline,
    parse_kernel_version,
)
from nitroguard.eif import build_eif, default_metadata, read_eif, static_checks
from nitroguard.findings import Finding, Status

# --- command line, kstrtobool, release strings -------------------------------------------


def test_parse_cmdline_quotes_and_double_dash() -> None:
    cmd = parse_cmdline('a=1 b="x y" "c=d e" flag -- init --arg\n')
    assert cmd.params == (("a", "1"), ("b", "x y"), ("c", "d e"), ("flag", None))
    assert cmd.init_args == ("init", "--arg")
    assert cmd.last("b") == "x y"
    assert cmd.has("flag")
    assert not cmd.has("init")


def test_parse_cmdline_dash_underscore_and_last_wins() -> None:
    cmd = parse_cmdline("random.trust-cpu=on random.trust_cpu=off x=1 x=2")
    assert cmd.last("random.trust_cpu") == "off"
    assert cmd.values("x") == ["1", "2"]
    assert cmd.last("absent") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("on", True),
        ("1", True),
        ("y", True),
        ("Yes", True),
        ("true", True),
        (None, True),
        ("", True),
        ("off", False),
        ("0", False),
        ("n", False),
        ("no", False),
        ("false", False),
        ("OFF", False),
        ("o", None),
        ("maybe", None),
        ("2", None),
    ],
)
def test_kstrtobool(value: str | None, expected: bool | None) -> None:
    assert kstrtobool(value) is expected


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("6.6.79-nitro", (6, 6, 79)),
        ("4.14.256-209.484.amzn2.x86_64", (4, 14, 256)),
        ("6.8", (6, 8, 0)),
        ("5.17.12\n", (5, 17, 12)),
        ("6.18.44-fc-v657", (6, 18, 44)),
        ("v6.6", None),
        ("", None),
        ("six", None),
    ],
)
def test_parse_kernel_version(release: str, expected: tuple[int, int, int] | None) -> None:
    assert parse_kernel_version(release) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_fuzz_cmdline_never_raises(text: str) -> None:
    cmd = parse_cmdline(text)
    for _name, value in cmd.params:
        assert kstrtobool(value) in (True, False, None)
    if '"' not in text:
        # Without quotes the kernel's split is plain whitespace splitting.
        words = [n if v is None else f"{n}={v}" for n, v in cmd.params]
        if "--" in text.split():
            words += ["--", *cmd.init_args]
        assert words == text.split()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(st.characters(categories=["L", "N"], include_characters="._-"), min_size=1),
            st.none() | st.text(st.characters(categories=["L", "N", "Zs"]), max_size=10),
        ),
        max_size=8,
    )
)
def test_fuzz_cmdline_round_trips_quoted_values(params: list[tuple[str, str | None]]) -> None:
    params = [(n, v) for n, v in params if n != "--"]
    text = " ".join(n if v is None else f'{n}="{v}"' for n, v in params)
    assert list(parse_cmdline(text).params) == [(n, v) for n, v in params]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_fuzz_kernel_version_never_raises(text: str) -> None:
    version = parse_kernel_version(text)
    assert version is None or all(part >= 0 for part in version)


# --- edge cases where the two former parsers disagreed --------------------------------------


@pytest.mark.parametrize(
    ("text", "params", "init_args"),
    [
        # next_arg drops the quotes around a word: the kernel sees a bare "--".
        ('quiet "--" random.trust_cpu=off', (("quiet", None),), ("random.trust_cpu=off",)),
        ('quiet "--', (("quiet", None),), ()),
        # Not a word the kernel reads as "--": it stays a parameter.
        ('quiet -"-" x', (("quiet", None), ("--", None), ("x", None)), ()),
        ("quiet --=1 x", (("quiet", None), ("--", "1"), ("x", None)), ()),
    ],
)
def test_quoted_double_dash(
    text: str, params: tuple[tuple[str, str | None], ...], init_args: tuple[str, ...]
) -> None:
    cmd = parse_cmdline(text)
    assert cmd.params == params
    assert cmd.init_args == init_args


@pytest.fixture
def eif_path(tmp_path: Path) -> Path:
    return tmp_path / "t.eif"


def _eif(path: Path, cmdline: str, kernel_version: str = "unknown") -> dict[str, Finding]:
    """Build a real image with `cmdline` and run the EIF static checks on it."""
    meta = default_metadata(image_name="t", kernel_version=kernel_version)
    build_eif(path, kernel=b"k", cmdline=cmdline, ramdisks=[b"r"], metadata=meta)
    return {f.id: f for f in static_checks(read_eif(path))}


GOOD = "random.trust_cpu=off random.trust_bootloader=off clocksource=kvm-clock"


@pytest.mark.parametrize(
    ("cmdline", "switches"),
    [
        ("pti=off pti=on", ()),  # the kernel keeps the last value: PTI stays on
        ("pti=on pti=off", ("pti=off",)),
        ("kpti=0", ("kpti=0",)),  # arm64 "kpti= 0: force disabled"
        ("spectre-v2=OFF nopti", ("nopti", "spectre_v2=off")),
    ],
)
def test_mitigation_switches_last_value_wins(
    eif_path: Path, cmdline: str, switches: tuple[str, ...]
) -> None:
    assert grade_mitigations(parse_cmdline(cmdline)).switches == switches
    cpu1 = _eif(eif_path, f"{GOOD} {cmdline}")["CPU-1"]
    assert cpu1.status is (Status.WARN if switches else Status.PASS)
    for switch in switches:
        assert switch in cpu1.evidence


@pytest.mark.parametrize("value", ["false", "F", "f"])
def test_trust_flags_false_spellings_are_off(eif_path: Path, value: str) -> None:
    # lib/kstrtox.c kstrtobool: 'f'/'F' is false, like 'n' and "off".
    cmd = f"random.trust_cpu={value} random.trust_bootloader={value}"
    assert grade_trust_flags(parse_cmdline(cmd)).ok
    assert _eif(eif_path, cmd)["RNG-2"].status is Status.PASS


def test_trust_flag_evidence_is_shared(eif_path: Path) -> None:
    verdict = grade_trust_flags(parse_cmdline("random.trust_cpu random.trust_bootloader=x"))
    assert not verdict.ok
    assert not verdict.any_absent
    assert verdict.evidence == "random.trust_cpu (on), random.trust_bootloader=x (unparseable)"
    f = _eif(eif_path, "random.trust_cpu")["RNG-2"]
    assert f.status is Status.FAIL
    assert f.evidence.startswith("cmdline: random.trust_cpu (on), random.trust_bootloader not set")
    assert "absent means trusted" in f.evidence


@pytest.mark.parametrize(
    ("cmdline", "problems", "evidence"),
    [
        ("quiet", (), "no no-kvmclock, no clocksource= override"),
        ("clocksource=kvm-clock", (), "clocksource=kvm-clock"),
        ("no_kvmclock clocksource=tsc", ("no-kvmclock", "clocksource=tsc"), None),
        ("clocksource=kvm-clock clocksource", ("clocksource",), None),
    ],
)
def test_grade_clock(cmdline: str, problems: tuple[str, ...], evidence: str | None) -> None:
    verdict = grade_clock(parse_cmdline(cmdline))
    assert verdict.problems == problems
    assert verdict.evidence == (evidence or ", ".join(problems))


def test_huge_version_component_is_not_a_version(eif_path: Path) -> None:
    # int() refuses > 4300 digits; the bounded pattern never hands it such a string.
    assert parse_kernel_version("9" * 5000 + ".1") is None
    assert parse_kernel_version("1234567.1.1") is None
    f = _eif(eif_path, GOOD, kernel_version="9" * 5000 + ".1")
    assert f["RNG-3"].status is Status.SKIP
    assert f["NSM-1"].status is Status.SKIP


@pytest.mark.parametrize(
    ("version", "driver"),
    [
        ((4, 14, 256), NsmDriver.OUT_OF_TREE),
        ((6, 5, 99), NsmDriver.OUT_OF_TREE),
        ((6, 6, 0), NsmDriver.AWS_BACKPORT),
        ((6, 7, 12), NsmDriver.NO_UPSTREAM),
        ((6, 8, 0), NsmDriver.UPSTREAM_CVE),
        ((6, 12, 100), NsmDriver.UPSTREAM_CVE),
        ((6, 12, 101), NsmDriver.UPSTREAM_FIXED),
        ((6, 13, 0), NsmDriver.UPSTREAM_CVE),
        ((6, 18, 42), NsmDriver.UPSTREAM_FIXED),
        ((7, 1, 5), NsmDriver.UPSTREAM_CVE),
        ((7, 1, 6), NsmDriver.UPSTREAM_FIXED),
    ],
)
def test_nsm_driver_classes(version: tuple[int, int, int], driver: NsmDriver) -> None:
    assert nsm_driver(version) is driver
