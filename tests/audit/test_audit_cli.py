"""`nitroguard audit`, in process (`run_cli`); one smoke test through a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from audit_trees import Tree

MakeTree = Callable[[str], Tree]


@pytest.fixture
def audit(run_cli: Any) -> Callable[..., Any]:
    def run(*args: str) -> Any:
        return run_cli("audit", *args)

    return run


@pytest.fixture
def audit_json(audit: Callable[..., Any]) -> Callable[..., tuple[int, dict[str, Any]]]:
    def run(*args: str) -> tuple[int, dict[str, Any]]:
        out = audit("--json", *args)
        assert out.stderr == "" or "WARNING" in out.stderr, out.stderr
        return out.returncode, json.loads(out.stdout)

    return run


def test_json_shape_and_exit_status_for_aws_default(make_tree: MakeTree, audit_json: Any) -> None:
    tree = make_tree("aws_default")
    code, doc = audit_json("--root", str(tree.root))
    assert code == 1
    assert set(doc) == {"findings", "summary"}
    assert set(doc["summary"]) == {"pass", "warn", "fail", "skip"}
    for finding in doc["findings"]:
        assert set(finding) == {"id", "title", "status", "evidence", "remediation"}
    statuses = {f["id"]: f["status"] for f in doc["findings"]}
    assert statuses["RNG-2"] == "fail"
    assert statuses["RNG-3"] == "fail"
    assert doc["summary"]["fail"] == sum(1 for f in doc["findings"] if f["status"] == "fail")
    assert sum(doc["summary"].values()) == len(doc["findings"])


def test_well_configured_exits_0_and_strict_exits_1_on_warn(
    make_tree: MakeTree, audit_json: Any
) -> None:
    tree = make_tree("well_configured")
    # A snapshot root: RNG-4 and TIME-3 are not observable and skip; NSM-2 warns
    # because no NSM handle is given.
    code, doc = audit_json("--root", str(tree.root))
    assert code == 0
    assert doc["summary"]["fail"] == 0
    assert doc["summary"]["warn"] == 1
    code, _ = audit_json("--root", str(tree.root), "--strict")
    assert code == 1
    code, doc = audit_json("--root", str(tree.root), "--strict", "--only", "RNG,TIME-1")
    assert code == 0
    assert [f["id"] for f in doc["findings"]] == [
        "RNG-1",
        "RNG-2",
        "RNG-3",
        "RNG-4",
        "RNG-5",
        "TIME-1",
    ]


def test_table_groups_by_area_with_evidence(make_tree: MakeTree, audit: Any) -> None:
    tree = make_tree("aws_default")
    out = audit("--root", str(tree.root))
    assert out.returncode == 1
    text = out.stdout
    assert text.startswith(f"nitroguard audit (root {tree.root})\n")
    sections = [ln for ln in text.splitlines() if ln and not ln.startswith(" ")]
    assert sections[1:8] == [
        "environment",
        "randomness",
        "time",
        "CPU side channels",
        "memory",
        "NSM driver",
        "attestation",
    ]
    assert "  FAIL  RNG-2" in text
    assert "evidence: /proc/cmdline: random.trust_cpu=on (on)" in text
    assert "fix: Put random.trust_cpu=off" in text
    assert "PCR0 and PCR1 move" in text
    assert text.rstrip().splitlines()[-1].startswith("summary: ")


def test_laptop_root_is_all_skip_and_exits_0(make_tree: MakeTree, audit_json: Any) -> None:
    code, doc = audit_json("--root", str(make_tree("laptop").root))
    assert code == 0
    assert doc["summary"] == {"pass": 0, "warn": 0, "fail": 0, "skip": len(doc["findings"])}
    assert doc["findings"][0]["evidence"].startswith("not a Nitro Enclave")


def test_strict_fails_when_every_check_was_skipped(make_tree: MakeTree, run_cli: Any) -> None:
    # Issue 14: --strict promises something was verified; all-skip verified nothing.
    res = run_cli("audit", "--root", str(make_tree("laptop").root), "--strict", "--json")
    assert res.code == 1
    assert res.json()["summary"]["skip"] == len(res.json()["findings"])
    assert "every check was skipped" in res.err


def test_usage_errors_exit_2(tree: Tree, audit: Any) -> None:
    out = audit("--root", str(tree.root), "--only", "RNG-99")
    assert out.returncode == 2
    assert "unknown check 'RNG-99'" in out.stderr
    out = audit("--root", str(tree.root / "missing"))
    assert out.returncode == 2
    assert "--root: not a directory" in out.stderr
    out = audit("--root", str(tree.root), "--nsm", "bogus")
    assert out.returncode == 2
    assert "--nsm" in out.stderr


def _audit_subprocess(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nitroguard", "audit", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )


def test_smoke_on_this_machine() -> None:
    # The one test that reads the host's real /proc and /sys, through the real entry
    # point: it must not crash and must give a finding per check with sane content.
    out = _audit_subprocess("--json")
    assert out.returncode in (0, 1), out.stderr
    doc = json.loads(out.stdout)
    ids = [f["id"] for f in doc["findings"]]
    assert ids[0] == "ENV-1"
    assert len(ids) == len(set(ids)) == 20
    env = doc["findings"][0]
    if env["status"] == "skip":  # not an enclave: everything is skip, nothing fails
        assert out.returncode == 0
        assert doc["summary"]["skip"] == len(ids)
        assert all(f["evidence"] for f in doc["findings"])
    table = _audit_subprocess()
    assert table.returncode == out.returncode
    assert "summary:" in table.stdout


def test_mem3_kaslr_gap_reported_in_json(make_tree: MakeTree, audit_json: Any) -> None:
    tree = make_tree("well_configured")
    tree.kernel_config("# CONFIG_RANDOMIZE_BASE is not set\nCONFIG_PARAVIRT_CLOCK=y\n")
    code, doc = audit_json("--root", str(tree.root), "--only", "MEM-3")
    assert code == 0  # a warning, not a failure
    (finding,) = doc["findings"]
    assert finding["id"] == "MEM-3"
    assert finding["status"] == "warn"
    assert "CONFIG_RANDOMIZE_BASE is not set" in finding["evidence"]
    tree.write("/proc/cmdline", "console=ttyS0 nokaslr\n")
    code, doc = audit_json("--root", str(tree.root), "--only", "MEM-3")
    assert code == 1
    assert doc["findings"][0]["status"] == "fail"
    assert "/proc/cmdline has nokaslr" in doc["findings"][0]["evidence"]
