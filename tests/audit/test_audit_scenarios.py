"""The audit over fake /proc, /sys and /dev trees: one scenario per real-world setup."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import pytest
from audit_trees import NOW, Tree, build_well_configured

from nitroguard.audit import DEFAULT, require_secure_environment, run
from nitroguard.errors import ConfigError, InsecureEnvironment, Reason
from nitroguard.findings import Finding, Status

MakeTree = Callable[[str], Tree]


def by_id(findings: list[Finding]) -> dict[str, Finding]:
    return {f.id: f for f in findings}


def statuses(findings: list[Finding]) -> dict[str, str]:
    return {f.id: f.status.value for f in findings}


# --- well-configured enclave ---------------------------------------------------------


def test_well_configured_enclave_passes_every_file_check(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    got = statuses(run(tree.probe()))
    assert got == {
        "ENV-1": "pass",
        "RNG-1": "pass",
        "RNG-2": "pass",
        "RNG-3": "pass",
        "RNG-4": "pass",
        "RNG-5": "pass",
        "TIME-1": "pass",
        "TIME-2": "pass",
        "TIME-3": "pass",
        "TIME-4": "pass",
        "CPU-1": "pass",
        "MEM-SWAP": "pass",
        "MEM-3": "pass",
        "MEM-2": "pass",
        "MEM-OVERCOMMIT": "pass",
        "NSM-1": "pass",
        # no NSM handle: DescribeNSM not attempted, attestation checks skipped
        "NSM-2": "warn",
        "NSM-3": "pass",
        "ATT-2": "skip",
        "ATT-7": "skip",
    }


def test_evidence_names_file_and_raw_value(make_tree: MakeTree) -> None:
    found = by_id(run(make_tree("well_configured").probe()))
    assert found["RNG-1"].evidence == (
        "/sys/class/misc/hw_random/rng_current = 'nsm-hwrng\\n'; "
        "/sys/devices/virtual/misc/hw_random/rng_current = 'nsm-hwrng\\n'"
    )
    assert (
        found["RNG-2"].evidence
    ) == "/proc/cmdline: random.trust_cpu=off (off), random.trust_bootloader=off (off)"
    assert found["RNG-3"].evidence == "/proc/sys/kernel/osrelease: '6.6.79-nitro'"
    assert found["TIME-1"].evidence.endswith("current_clocksource = 'kvm-clock\\n'")
    assert "/dev/nsm: char device 10:125, mode 0600" in found["NSM-3"].evidence
    assert found["NSM-1"].evidence.startswith("/proc/sys/kernel/osrelease: '6.6.79-nitro'")
    assert "6.6 backport" in found["NSM-1"].evidence
    assert found["TIME-4"].evidence.startswith("/dev/ptp0: char device 248:0")
    assert found["RNG-1"].remediation == ""


def test_require_secure_environment_needs_an_nsm_inside_an_enclave(make_tree: MakeTree) -> None:
    # Without an NSM handle the debug-mode and PCR checks never ran: fail closed.
    probe = make_tree("well_configured").probe()
    with pytest.raises(InsecureEnvironment, match=r"insecure environment: NSM-2 failed") as info:
        require_secure_environment(probe)
    assert info.value.findings[0].evidence.endswith(
        "DescribeNSM not attempted (no NSM handle given)"
    )
    findings = require_secure_environment(probe, waive={"NSM-2"})
    assert len(findings) == len(DEFAULT)


# --- AWS default image ----------------------------------------------------------------


def test_aws_default_image_fails_rng2_rng3_and_nsm1(make_tree: MakeTree) -> None:
    found = by_id(run(make_tree("aws_default").probe()))
    assert found["RNG-2"].status is Status.FAIL
    assert "random.trust_cpu=on (on)" in found["RNG-2"].evidence
    assert "random.trust_bootloader not set" in found["RNG-2"].evidence
    assert "PCR0 and PCR1 move" in found["RNG-2"].remediation
    assert found["RNG-3"].status is Status.FAIL
    assert "4.14.256" in found["RNG-3"].evidence
    assert found["NSM-1"].status is Status.FAIL
    assert "minor 147" in found["NSM-1"].evidence
    assert found["NSM-3"].status is Status.WARN
    assert "mode 0666" in found["NSM-3"].evidence
    # what the AWS image gets right
    assert found["RNG-1"].status is Status.PASS
    assert found["TIME-1"].status is Status.PASS
    assert found["RNG-5"].status is Status.SKIP  # 4.14 has no rng_quality
    assert found["MEM-2"].status is Status.WARN


def test_require_secure_environment_lists_failures(make_tree: MakeTree) -> None:
    with pytest.raises(InsecureEnvironment, match=r"RNG-2, RNG-3, NSM-1, NSM-2 failed") as info:
        require_secure_environment(make_tree("aws_default").probe())
    assert info.value.reason is Reason.INSECURE_ENVIRONMENT
    assert [f.id for f in info.value.findings] == ["RNG-2", "RNG-3", "NSM-1", "NSM-2"]
    assert all(f.status is Status.FAIL for f in info.value.findings)


def test_waivers_are_logged_and_accepted(
    make_tree: MakeTree, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="nitroguard.audit")
    probe = make_tree("aws_default").probe()
    findings = require_secure_environment(
        probe, waive={"RNG-2", "RNG-3", "NSM-1", "NSM-2", "TIME-1"}
    )
    assert {f.id for f in findings if f.status is Status.FAIL} == {"RNG-2", "RNG-3", "NSM-1"}
    messages = [r.getMessage() for r in caplog.records]
    for waived in ("RNG-2", "RNG-3", "NSM-1"):
        assert any(m.startswith(f"audit: WAIVED {waived} ") for m in messages), messages
    assert "audit: waiver for TIME-1 unused (status pass)" in messages
    # warnings are logged too
    assert any(m.startswith("audit: NSM-3 ") for m in messages)


def test_partial_waiver_still_raises(make_tree: MakeTree) -> None:
    with pytest.raises(InsecureEnvironment, match=r"insecure environment: NSM-1 failed"):
        require_secure_environment(
            make_tree("aws_default").probe(), waive={"RNG-2", "RNG-3", "NSM-2"}
        )


def test_unknown_waiver_is_a_config_error(make_tree: MakeTree) -> None:
    with pytest.raises(ConfigError, match="cannot waive unknown check ids: RNG-99"):
        require_secure_environment(make_tree("well_configured").probe(), waive={"RNG-99"})


# --- laptop / CI VM: outside an enclave -------------------------------------------------


@pytest.mark.parametrize("name", ["laptop", "laptop_none"])
def test_laptop_is_reported_plainly_as_outside(make_tree: MakeTree, name: str) -> None:
    findings = run(make_tree(name).probe())
    assert {f.status for f in findings} == {Status.SKIP}
    env = by_id(findings)["ENV-1"]
    assert env.evidence.startswith("not a Nitro Enclave: /dev/nsm absent")
    rng1 = by_id(findings)["RNG-1"]
    assert rng1.evidence.startswith("outside a Nitro Enclave (would fail): ")
    assert ("virtio_rng.0" if name == "laptop" else "'none\\n'") in rng1.evidence
    assert by_id(findings)["TIME-1"].evidence.startswith("outside a Nitro Enclave (would fail)")


def test_outside_enclave_fails_closed_unless_env_waived(
    make_tree: MakeTree, caplog: pytest.LogCaptureFixture
) -> None:
    probe = make_tree("laptop").probe()
    with pytest.raises(InsecureEnvironment, match=r"ENV-1 failed") as info:
        require_secure_environment(probe)
    assert [f.id for f in info.value.findings] == ["ENV-1"]
    caplog.set_level(logging.WARNING, logger="nitroguard.audit")
    require_secure_environment(probe, waive={"ENV-1"})
    assert any("WAIVED ENV-1" in r.getMessage() for r in caplog.records)


def test_laptop_values_inside_an_enclave_fail(make_tree: MakeTree) -> None:
    # Same laptop values, but /dev/nsm exists: the checks now judge them.
    tree = make_tree("laptop")
    tree.nsm_device()
    found = by_id(run(tree.probe()))
    assert found["ENV-1"].status is Status.PASS
    assert found["RNG-1"].status is Status.FAIL
    assert "echo nsm-hwrng >" in found["RNG-1"].remediation
    assert found["TIME-1"].status is Status.FAIL
    assert "tsc" in found["TIME-1"].evidence
    assert "clocksource=kvm-clock" not in found["TIME-1"].remediation  # not available
    assert "CONFIG_PARAVIRT_CLOCK" in found["TIME-1"].remediation
    assert found["RNG-2"].status is Status.FAIL
    assert found["MEM-SWAP"].status is Status.FAIL
    assert "/swap.img" in found["MEM-SWAP"].evidence
    assert found["CPU-1"].status is Status.FAIL
    assert "spec_store_bypass = 'Vulnerable\\n'" in found["CPU-1"].evidence
    assert "itlb_multihit = 'KVM: Vulnerable\\n'" in found["CPU-1"].evidence
    assert found["TIME-4"].status is Status.WARN


def test_tsc_with_kvm_clock_available_suggests_cmdline(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    tree.clocksource("tsc\n", "tsc kvm-clock \n")
    found = by_id(run(tree.probe()))["TIME-1"]
    assert found.status is Status.FAIL
    assert "add clocksource=kvm-clock" in found.remediation.lower()
    assert "PCR0 and PCR1 move" in found.remediation


# --- missing and partial files ----------------------------------------------------------


def test_empty_root_is_outside_and_does_not_crash(tree: Tree) -> None:
    findings = run(tree.probe(getrandom_ready=None, wall_clock=None))
    assert len(findings) == len(DEFAULT)
    assert {f.status for f in findings} == {Status.SKIP}


def test_enclave_with_nothing_but_dev_nsm(tree: Tree) -> None:
    tree.chardev("/dev/nsm", 0o600, 10, 125)
    found = by_id(run(tree.probe()))
    assert found["ENV-1"].status is Status.PASS
    assert found["RNG-1"].status is Status.FAIL
    assert found["RNG-1"].evidence == (
        "/sys/class/misc/hw_random/rng_current: absent; "
        "/sys/devices/virtual/misc/hw_random/rng_current: absent; "
        "/sys/class/misc/hw_random/rng_available: absent"
    )
    assert found["RNG-2"].status is Status.FAIL
    assert found["RNG-2"].evidence == "/proc/cmdline: absent"
    assert found["RNG-3"].status is Status.WARN  # release unknown
    assert found["RNG-5"].status is Status.SKIP
    assert found["TIME-1"].status is Status.FAIL
    assert found["CPU-1"].status is Status.WARN
    assert found["MEM-SWAP"].status is Status.WARN
    assert found["MEM-2"].status is Status.WARN
    assert found["MEM-OVERCOMMIT"].status is Status.WARN
    assert found["NSM-1"].status is Status.WARN


def test_rng_current_absent_but_nsm_hwrng_available_warns(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    tree.remove("/sys/devices/virtual/misc/hw_random/rng_current")
    found = by_id(run(tree.probe()))["RNG-1"]
    assert found.status is Status.WARN
    assert "rng_available = 'nsm-hwrng \\n'" in found.evidence


def test_rng_available_without_nsm_hwrng_fails(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    tree.remove("/sys/devices/virtual/misc/hw_random/rng_current")
    tree.write("/sys/devices/virtual/misc/hw_random/rng_available", "virtio_rng.0\n")
    found = by_id(run(tree.probe()))["RNG-1"]
    assert found.status is Status.FAIL


def test_only_the_devices_path_exists(make_tree: MakeTree) -> None:
    # Some trees (containers, snapshots) lack the class symlink: the second path counts.
    tree = make_tree("well_configured")
    tree.remove("/sys/class/misc/hw_random")
    found = by_id(run(tree.probe()))
    assert found["RNG-1"].status is Status.PASS
    assert "/sys/class/misc/hw_random/rng_current: absent" in found["RNG-1"].evidence
    assert found["RNG-5"].status is Status.PASS


def test_only_the_class_path_exists(tree: Tree) -> None:
    build_well_configured(tree)
    tree.remove("/sys/class/misc/hw_random")
    tree.write("/sys/class/misc/hw_random/rng_current", "nsm-hwrng\n")
    for name in ("rng_current", "rng_available", "rng_quality"):
        tree.remove(f"/sys/devices/virtual/misc/hw_random/{name}")
    assert by_id(run(tree.probe()))["RNG-1"].status is Status.PASS


def test_paths_disagree_fails(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    tree.remove("/sys/class/misc/hw_random")
    tree.write("/sys/class/misc/hw_random/rng_current", "virtio_rng.0\n")
    assert by_id(run(tree.probe()))["RNG-1"].status is Status.FAIL


def test_rng_quality_zero_fails_and_garbage_warns(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    tree.write("/sys/devices/virtual/misc/hw_random/rng_quality", "0\n")
    assert by_id(run(tree.probe()))["RNG-5"].status is Status.FAIL
    tree.write("/sys/devices/virtual/misc/hw_random/rng_quality", "lots\n")
    assert by_id(run(tree.probe()))["RNG-5"].status is Status.WARN


def test_getrandom_not_ready_fails_rng4(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    found = by_id(run(tree.probe(getrandom_ready=lambda: False)))["RNG-4"]
    assert found.status is Status.FAIL
    assert "EAGAIN" in found.evidence
    assert by_id(run(tree.probe(getrandom_ready=None)))["RNG-4"].status is Status.SKIP


def test_unparseable_kernel_release_warns(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    found = by_id(run(tree.probe(kernel_release="nitro-custom")))
    assert found["RNG-3"].status is Status.WARN
    assert found["RNG-3"].evidence == "injected: 'nitro-custom' (not a version)"
    assert found["NSM-1"].status is Status.WARN


@pytest.mark.parametrize(
    ("release", "rng3", "nsm1"),
    [
        ("5.17.11", "fail", "fail"),
        ("5.17.12", "pass", "fail"),
        ("5.10.240", "fail", "fail"),
        ("6.6.79-nitro", "pass", "pass"),
        ("6.7.12", "pass", "warn"),
        ("6.8.0", "pass", "warn"),
        ("6.12.100", "pass", "warn"),
        ("6.12.101", "pass", "pass"),
        ("6.18.41", "pass", "warn"),
        ("6.18.44-fc", "pass", "pass"),
        ("7.1.5", "pass", "warn"),
        ("7.1.6", "pass", "pass"),
        ("7.2", "pass", "pass"),
    ],
)
def test_kernel_version_boundaries(make_tree: MakeTree, release: str, rng3: str, nsm1: str) -> None:
    tree = make_tree("well_configured")
    found = statuses(run(tree.probe(kernel_release=release), only=["RNG-3", "NSM-1"]))
    assert found == {"RNG-3": rng3, "NSM-1": nsm1}


# --- odd whitespace and newlines ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("nsm-hwrng", Status.PASS),  # no newline at all
        ("nsm-hwrng\n", Status.PASS),
        ("  nsm-hwrng \r\n\n", Status.PASS),
        ("\tnsm-hwrng\t", Status.PASS),
        ("nsm-hwrng2\n", Status.FAIL),
        ("NSM-HWRNG\n", Status.FAIL),
        ("nsm-hwrng virtio_rng.0\n", Status.FAIL),
        ("", Status.FAIL),
        ("\n", Status.FAIL),
        ("nsm-hwrng\x00", Status.FAIL),
    ],
)
def test_rng_current_whitespace(tree: Tree, raw: str, expected: Status) -> None:
    build_well_configured(tree)
    tree.write("/sys/devices/virtual/misc/hw_random/rng_current", raw)
    found = by_id(run(tree.probe(), only=["RNG-1"]))["RNG-1"]
    assert found.status is expected
    assert repr(raw) in found.evidence


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        ("random.trust_cpu=off random.trust_bootloader=off", Status.PASS),
        ("\trandom.trust_cpu=off\n\nrandom.trust_bootloader=off  \n", Status.PASS),
        ('random.trust_cpu="off" random.trust_bootloader=0', Status.PASS),
        ("random.trust-cpu=n random.trust_bootloader=no", Status.PASS),
        ("random.trust_cpu=on random.trust_bootloader=off", Status.FAIL),
        ("random.trust_cpu=off random.trust_cpu=on random.trust_bootloader=off", Status.FAIL),
        ("random.trust_cpu=on random.trust_cpu=off random.trust_bootloader=off", Status.PASS),
        ("random.trust_cpu random.trust_bootloader=off", Status.FAIL),  # bare flag = on
        ("random.trust_cpu=maybe random.trust_bootloader=off", Status.FAIL),
        ("random.trust_cpu=off", Status.FAIL),
        ("quiet -- random.trust_cpu=off random.trust_bootloader=off", Status.FAIL),
        ("xrandom.trust_cpu=off random.trust_bootloader=off", Status.FAIL),
        ("", Status.FAIL),
    ],
)
def test_rng2_cmdline_parsing(tree: Tree, cmdline: str, expected: Status) -> None:
    build_well_configured(tree)
    tree.write("/proc/cmdline", cmdline)
    assert by_id(run(tree.probe(), only=["RNG-2"]))["RNG-2"].status is expected


@pytest.mark.parametrize(
    ("cmdline", "expected", "evidence"),
    [
        ("quiet", Status.PASS, "no no-kvmclock, no clocksource= override"),
        ("clocksource=kvm-clock", Status.PASS, "clocksource=kvm-clock"),
        ("no-kvmclock", Status.FAIL, "no-kvmclock"),
        ("no_kvmclock", Status.FAIL, "no-kvmclock"),
        ("no-kvmclock-vsyscall", Status.PASS, "no no-kvmclock"),
        ("clocksource=tsc", Status.FAIL, "clocksource=tsc"),
        ("clocksource=tsc clocksource=kvm-clock", Status.PASS, "clocksource=kvm-clock"),
        ("clocksource=kvm-clock clocksource=hpet", Status.FAIL, "clocksource=hpet"),
        ("quiet -- no-kvmclock", Status.PASS, "no no-kvmclock"),
    ],
)
def test_time2_cmdline(tree: Tree, cmdline: str, expected: Status, evidence: str) -> None:
    build_well_configured(tree)
    tree.write("/proc/cmdline", cmdline + "\n")
    found = by_id(run(tree.probe(), only=["TIME-2"]))["TIME-2"]
    assert found.status is expected
    assert evidence in found.evidence
    if expected is Status.FAIL:
        assert "PCR0 and PCR1 move" in found.remediation


def test_clocksource_with_odd_whitespace(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    tree.clocksource(" kvm-clock \r\n", "kvm-clock\n")
    assert by_id(run(tree.probe(), only=["TIME-1"]))["TIME-1"].status is Status.PASS
    tree.clocksource("kvm-clock-old\n", "kvm-clock-old\n")
    assert by_id(run(tree.probe(), only=["TIME-1"]))["TIME-1"].status is Status.FAIL


# --- CPU vulnerabilities -----------------------------------------------------------------


def test_vulnerable_cpu_entry_fails(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    tree.vulnerabilities({"spectre_v2": "Vulnerable\n"})
    found = by_id(run(tree.probe(), only=["CPU-1"]))["CPU-1"]
    assert found.status is Status.FAIL
    assert found.evidence == "/sys/devices/system/cpu/vulnerabilities/spectre_v2 = 'Vulnerable\\n'"


def test_smt_vulnerable_warns(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    tree.vulnerabilities({"mds": "Mitigation: Clear CPU buffers; SMT vulnerable\n"})
    found = by_id(run(tree.probe(), only=["CPU-1"]))["CPU-1"]
    assert found.status is Status.WARN
    assert "SMT vulnerable" in found.evidence


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("mitigations=off", Status.FAIL),
        ("mitigations=OFF", Status.FAIL),
        ("mitigations=auto,nosmt", Status.PASS),
        ("nopti", Status.WARN),
        ("spectre_v2=off", Status.WARN),
        ("spectre_v2=on", Status.PASS),
    ],
)
def test_mitigation_switches_on_cmdline(make_tree: MakeTree, extra: str, expected: Status) -> None:
    tree = make_tree("well_configured")
    tree.write("/proc/cmdline", f"quiet {extra}\n")
    found = by_id(run(tree.probe(), only=["CPU-1"]))["CPU-1"]
    assert found.status is expected
    if expected is not Status.PASS:
        assert extra.split("=", maxsplit=1)[0] in found.evidence


# --- memory ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("panic", "overcommit", "mem2", "over"),
    [("1\n", "0\n", "pass", "pass"), ("0\n", "1\n", "warn", "warn"), ("2", "2", "pass", "pass")],
)
def test_memory_reports(
    make_tree: MakeTree, panic: str, overcommit: str, mem2: str, over: str
) -> None:
    tree = make_tree("well_configured")
    tree.memory(panic_on_oom=panic, overcommit=overcommit)
    found = by_id(run(tree.probe(), only=["MEM"]))
    assert statuses(list(found.values())) == {
        "MEM-SWAP": "pass",
        "MEM-2": mem2,
        "MEM-OVERCOMMIT": over,
        "MEM-3": "pass",
    }
    assert f"panic_on_oom = {panic!r}" in found["MEM-2"].evidence
    assert "overcommit_memory" in found["MEM-OVERCOMMIT"].evidence


def test_swap_from_meminfo_when_proc_swaps_missing(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    tree.remove("/proc/swaps")
    assert by_id(run(tree.probe(), only=["MEM-SWAP"]))["MEM-SWAP"].status is Status.PASS
    tree.write("/proc/meminfo", "SwapTotal:  1024 kB\n")
    found = by_id(run(tree.probe(), only=["MEM-SWAP"]))["MEM-SWAP"]
    assert found.status is Status.FAIL
    assert "SwapTotal: 1024 kB" in found.evidence


# --- TIME-3 without an NSM -----------------------------------------------------------------


def test_wall_clock_in_1999_fails(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    y1999 = dt.datetime(1999, 11, 30, tzinfo=dt.UTC).timestamp()
    found = by_id(run(tree.probe(wall_clock=lambda: y1999), only=["TIME-3"]))["TIME-3"]
    assert found.status is Status.FAIL
    assert "1999-11-30" in found.evidence
    assert "before this build" in found.evidence


def test_wall_clock_unknown_for_snapshot(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    found = by_id(run(tree.probe(wall_clock=None), only=["TIME-3"]))["TIME-3"]
    assert found.status is Status.SKIP
    assert "snapshot root" in found.evidence


def test_ptp_via_sysfs_only(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    tree.remove("/dev/ptp0")
    found = by_id(run(tree.probe(), only=["TIME-4"]))["TIME-4"]
    assert found.status is Status.PASS
    assert "clock_name = 'KVM virtual PTP\\n'" in found.evidence


# --- NSM device node ----------------------------------------------------------------------


def test_dev_nsm_regular_file_fails_nsm2(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    tree.remove("/dev/nsm")
    tree.write("/dev/nsm", "not a device")
    found = by_id(run(tree.probe(), only=["NSM-2"]))["NSM-2"]
    assert found.status is Status.FAIL
    assert "/dev/nsm: file, mode" in found.evidence


def test_only_selects_by_id_and_area(make_tree: MakeTree) -> None:
    probe = make_tree("well_configured").probe()
    assert [f.id for f in run(probe, only=["time", " RNG-1 "])] == [
        "RNG-1",
        "TIME-1",
        "TIME-2",
        "TIME-3",
        "TIME-4",
    ]
    with pytest.raises(ConfigError, match="unknown check 'RNG-9'"):
        run(probe, only=["RNG-9"])


def test_now_constant_is_after_build_date() -> None:
    from nitroguard.audit._facts import BUILD_DATE

    assert dt.datetime.fromtimestamp(NOW, tz=dt.UTC) >= BUILD_DATE
