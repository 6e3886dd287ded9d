"""MEM-3 in the EIF static checks: ``nokaslr`` in the measured cmdline."""

from __future__ import annotations

from pathlib import Path

from eif_helpers import run_json

from nitroguard.eif import build_eif, default_metadata, read_eif, static_checks
from nitroguard.findings import Finding, Status

GOOD = "random.trust_cpu=off random.trust_bootloader=off clocksource=kvm-clock"


def _build(path: Path, cmdline: str) -> Path:
    meta = default_metadata(image_name="t", kernel_version="unknown")
    build_eif(path, kernel=b"k", cmdline=cmdline, ramdisks=[b"r"], metadata=meta)
    return path


def _mem3(path: Path) -> Finding:
    return {f.id: f for f in static_checks(read_eif(path))}["MEM-3"]


def test_nokaslr_fails(tmp_path: Path) -> None:
    found = _mem3(_build(tmp_path / "t.eif", f"console=ttyS0 nokaslr {GOOD}"))
    assert found.status is Status.FAIL
    assert found.evidence == "cmdline has nokaslr"
    assert "changes PCR0/PCR1" in found.remediation


def test_nokaslr_after_double_dash_still_fails(tmp_path: Path) -> None:
    # arch/x86/lib/cmdline.c scans the whole command line, `--` included.
    found = _mem3(_build(tmp_path / "t.eif", f"{GOOD} -- nokaslr"))
    assert found.status is Status.FAIL
    assert "after --" in found.evidence


def test_without_nokaslr_passes(tmp_path: Path) -> None:
    found = _mem3(_build(tmp_path / "t.eif", GOOD))
    assert found.status is Status.PASS
    assert found.remediation == ""
    assert "CONFIG_RANDOMIZE_BASE, is not in the image" in found.evidence


def test_cli_describe_fails_on_nokaslr_unless_allowed(tmp_path: Path) -> None:
    path = _build(tmp_path / "t.eif", f"{GOOD} nokaslr")
    allow = ("--allow", "RNG-3", "--allow", "NSM-1")
    code, doc = run_json("describe", path, *allow)
    assert code == 1
    mem3 = [f for f in doc["Findings"] if f["id"] == "MEM-3"]
    assert [(f["status"], f["evidence"]) for f in mem3] == [("fail", "cmdline has nokaslr")]
    code, _ = run_json("describe", path, *allow, "--allow", "MEM-3")
    assert code == 0
