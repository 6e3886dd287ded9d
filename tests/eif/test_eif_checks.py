"""Static checks: RNG-2, TIME-2, CPU-1 from the cmdline; RNG-3, NSM-1 from the kernel."""

from __future__ import annotations

import json

import pytest
from eif_helpers import bzimage, craft

from nitroguard.eif import kernel_params, read_eif, static_checks
from nitroguard.findings import Finding

GOOD = "console=ttyS0 random.trust_cpu=off random.trust_bootloader=off clocksource=kvm-clock"


def _findings(
    cmdline: str, kernel: bytes = b"k", kernel_version: str | None = None
) -> dict[str, Finding]:
    meta: dict[str, object] = {"ImageName": "t"}
    if kernel_version is not None:
        meta["BuildMetadata"] = {"KernelVersion": kernel_version}
    image = read_eif(
        craft([(1, kernel), (2, cmdline.encode()), (5, json.dumps(meta).encode()), (3, b"r")])
    )
    return {f.id: f for f in static_checks(image)}


def test_kernel_params_parsing() -> None:
    assert kernel_params('a=1  b "c=d e" f= --  random.trust_cpu=on') == [
        ("a", "1"),
        ("b", None),
        ("c", "d e"),
        ("f", ""),
    ]
    assert kernel_params("no-kvmclock random.trust-cpu=off") == [
        ("no_kvmclock", None),
        ("random.trust_cpu", "off"),
    ]


def test_good_cmdline_passes() -> None:
    f = _findings(GOOD)
    assert f["RNG-2"].status == "pass"
    assert f["TIME-2"].status == "pass"
    assert f["CPU-1"].status == "pass"
    assert f["RNG-2"].remediation == ""


@pytest.mark.parametrize(
    "cmdline",
    [
        "console=ttyS0 random.trust_cpu=on",  # the AWS default
        "random.trust_cpu=off",  # bootloader flag missing
        "random.trust_cpu=off random.trust_bootloader=off random.trust_cpu=on",  # last wins
        "random.trust_cpu=1 random.trust_bootloader=0",
        "-- random.trust_cpu=off random.trust_bootloader=off",  # init args, not kernel
    ],
)
def test_rng2_fails(cmdline: str) -> None:
    f = _findings(cmdline)["RNG-2"]
    assert f.status == "fail"
    assert "random.trust_cpu=off" in f.remediation


@pytest.mark.parametrize("value", ["off", "0", "n", "N", "no"])
def test_rng2_accepts_kstrtobool_false(value: str) -> None:
    cmdline = f"random.trust_cpu={value} random.trust_bootloader={value}"
    assert _findings(cmdline)["RNG-2"].status == "pass"


@pytest.mark.parametrize(
    ("cmdline", "status"),
    [
        ("no-kvmclock clocksource=kvm-clock", "fail"),
        ("clocksource=tsc", "fail"),
        ("clocksource=kvm-clock", "pass"),
        ("console=ttyS0", "warn"),
    ],
)
def test_time2(cmdline: str, status: str) -> None:
    assert _findings(cmdline)["TIME-2"].status == status


@pytest.mark.parametrize(
    ("cmdline", "status"),
    [
        ("mitigations=off", "fail"),
        ("mitigations=auto mitigations=OFF", "fail"),
        ("nospectre_v2", "warn"),
        ("pti=off", "warn"),
        ("mds=off", "warn"),
        ("nopti", "warn"),
        ("ssbd=force-off", "warn"),
    ],
)
def test_cpu1_disabled_mitigations(cmdline: str, status: str) -> None:
    f = _findings(GOOD + " " + cmdline)["CPU-1"]
    assert f.status == status
    assert cmdline.rsplit(maxsplit=1)[-1].split("=", maxsplit=1)[0].lower() in f.evidence.lower()
    assert f.remediation


def test_cpu1_mitigations_auto_passes() -> None:
    assert _findings(GOOD + " mitigations=auto,nosmt")["CPU-1"].status == "pass"


@pytest.mark.parametrize(
    ("version", "rng3", "nsm1"),
    [
        ("4.14.256-209.484.amzn2.x86_64", "fail", "fail"),  # the nitro-cli blob
        ("5.17.11", "fail", "fail"),
        ("5.17.12", "pass", "fail"),
        ("6.6.12-amzn", "pass", "pass"),
        ("6.12", "pass", "pass"),
    ],
)
def test_kernel_version_from_metadata(version: str, rng3: str, nsm1: str) -> None:
    f = _findings(GOOD, kernel_version=version)
    assert f["RNG-3"].status == rng3
    assert f["NSM-1"].status == nsm1
    assert "NOT attested" in f["RNG-3"].evidence


def test_kernel_version_from_bzimage_wins_over_metadata() -> None:
    kernel = bzimage("6.6.52 (builder@host) #1 SMP")
    f = _findings(GOOD, kernel=kernel, kernel_version="4.14.1")
    assert f["RNG-3"].status == "pass"
    assert "measured" in f["RNG-3"].evidence
    assert "the unattested metadata claims '4.14.1'" in f["RNG-3"].evidence
    image = read_eif(craft([(1, kernel), (2, b"c"), (5, b"{}"), (3, b"r")]))
    assert image.kernel_version == "6.6.52 (builder@host) #1 SMP"


@pytest.mark.parametrize("version", [None, "unknown"])
def test_kernel_version_unknown_is_skipped(version: str | None) -> None:
    f = _findings(GOOD, kernel_version=version)
    assert f["RNG-3"].status == "skip"
    assert f["NSM-1"].status == "skip"


@pytest.mark.parametrize("offset", [0, 100, 4090, 4096 - 14, 4096 + 5, 9000])
def test_kernel_version_from_image_banner(offset: int) -> None:
    """aarch64 Image: no setup header, but the measured "Linux version" banner."""
    banner = b"Linux version 6.1.55-arm64 (builder@host) (gcc 12) #1 SMP PREEMPT\n"
    kernel = bytearray(b"\x00" * 12000)
    kernel[offset : offset + len(banner)] = banner
    image = read_eif(
        craft([(1, bytes(kernel)), (2, GOOD.encode()), (5, b"{}"), (3, b"r")]), chunk_size=4096
    )
    assert image.kernel_version == "6.1.55-arm64 (builder@host) (gcc 12) #1 SMP PREEMPT"
    f = {x.id: x for x in static_checks(image)}
    assert f["RNG-3"].status == "pass"
    assert f["NSM-1"].status == "fail"
    assert "measured" in f["NSM-1"].evidence


def test_kernel_banner_cut_by_end_of_kernel() -> None:
    image = read_eif(craft([(1, b"xx Linux version 5.10.1"), (2, b"c"), (5, b"{}"), (3, b"r")]))
    assert image.kernel_version == "5.10.1"
