"""NSM-backed checks (NSM-2, ATT-2, ATT-7, TIME-3) with the real emulator, and the CLI's --nsm."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from audit_trees import Tree

from nitroguard.audit import attested_time, require_secure_environment, run
from nitroguard.audit._clock import self_attest
from nitroguard.errors import InsecureEnvironment, NsmError, Reason, VerificationError
from nitroguard.findings import Finding, Status
from nitroguard.nsm import DeviceNsm, EmulatedNsm, NsmServer
from nitroguard.testing import ephemeral_nsm

MakeTree = Callable[[str], Tree]
BOOT_PCRS = {i: hashlib.sha384(f"image section {i}".encode()).digest() for i in (0, 1, 2)}


def by_id(findings: list[Finding]) -> dict[str, Finding]:
    return {f.id: f for f in findings}


@pytest.fixture
def production_nsm() -> EmulatedNsm:
    return ephemeral_nsm(pcrs=BOOT_PCRS)


@pytest.fixture
def debug_nsm() -> EmulatedNsm:
    return ephemeral_nsm(pcrs=BOOT_PCRS, debug_mode=True)


def audit(tree: Tree, nsm: object, skew: float = 0.0, **kwargs: object) -> dict[str, Finding]:
    probe = tree.probe(wall_clock=lambda: time.time() + skew)
    return by_id(run(probe, nsm, **kwargs))  # type: ignore[arg-type]


# --- normal mode ------------------------------------------------------------------------


def test_well_configured_enclave_with_emulator_passes_everything(
    make_tree: MakeTree, production_nsm: EmulatedNsm
) -> None:
    found = audit(
        make_tree("well_configured"), production_nsm, roots=[production_nsm.pki.root_certificate]
    )
    assert {f.id: f.status.value for f in found.values() if f.status is not Status.PASS} == {}
    assert f"module_id={production_nsm.module_id}" in found["NSM-2"].evidence
    assert "version=1.0.0, max_pcrs=32, digest=SHA384, locked_pcrs=0-15" in found["NSM-2"].evidence
    assert found["ATT-2"].evidence.startswith("fresh nonce-bound document verified; PCR0=")
    assert BOOT_PCRS[0].hex()[:16] in found["ATT-2"].evidence
    assert "from a fresh nonce-bound attestation; offset" in found["TIME-3"].evidence
    assert found["ATT-7"].evidence == "DescribePCR: PCR16-31 not extended"


def test_require_secure_environment_with_emulator(
    make_tree: MakeTree, production_nsm: EmulatedNsm
) -> None:
    tree = make_tree("well_configured")
    probe = tree.probe(wall_clock=time.time)
    findings = require_secure_environment(
        probe, production_nsm, roots=[production_nsm.pki.root_certificate]
    )
    assert all(f.status is Status.PASS for f in findings)


def test_emulator_without_dev_nsm_warns_nsm2(
    make_tree: MakeTree, production_nsm: EmulatedNsm
) -> None:
    tree = make_tree("well_configured")
    tree.remove("/dev/nsm")
    found = audit(tree, production_nsm, roots=[production_nsm.pki.root_certificate])
    assert found["NSM-2"].status is Status.WARN
    assert found["NSM-2"].evidence.startswith("/dev/nsm: absent; DescribeNSM: module_id=")
    assert found["NSM-3"].status is Status.SKIP


# --- debug mode ---------------------------------------------------------------------------


def test_debug_mode_fails_att2(make_tree: MakeTree, debug_nsm: EmulatedNsm) -> None:
    found = audit(make_tree("well_configured"), debug_nsm, roots=[debug_nsm.pki.root_certificate])
    att2 = found["ATT-2"]
    assert att2.status is Status.FAIL
    assert att2.evidence.endswith("(all zero: debug mode)")
    assert "PCR0=0000000000000000..." in att2.evidence
    assert "--debug-mode" in att2.remediation
    # the rest of a debug enclave can be perfectly configured
    assert found["RNG-1"].status is Status.PASS
    assert found["TIME-3"].status is Status.PASS


def test_require_secure_environment_refuses_debug_mode(
    make_tree: MakeTree, debug_nsm: EmulatedNsm
) -> None:
    probe = make_tree("well_configured").probe(wall_clock=time.time)
    with pytest.raises(InsecureEnvironment, match=r"insecure environment: ATT-2 failed") as info:
        require_secure_environment(probe, debug_nsm, roots=[debug_nsm.pki.root_certificate])
    assert [f.id for f in info.value.findings] == ["ATT-2"]


# --- ATT-7: application PCRs ---------------------------------------------------------------


def test_extended_but_unlocked_pcr_warns(make_tree: MakeTree, production_nsm: EmulatedNsm) -> None:
    tree = make_tree("well_configured")
    roots = [production_nsm.pki.root_certificate]
    production_nsm.extend_pcr(16, b"app config")
    found = audit(tree, production_nsm, roots=roots)["ATT-7"]
    assert found.status is Status.WARN
    assert found.evidence == "DescribePCR: extended but NOT locked: PCR16"
    assert "LockPCR" in found.remediation
    production_nsm.lock_pcr(16)
    production_nsm.extend_pcr(17, b"a")
    production_nsm.lock_pcr(17)
    production_nsm.extend_pcr(20, b"b")
    production_nsm.extend_pcr(21, b"c")
    found = audit(tree, production_nsm, roots=roots)["ATT-7"]
    assert found.status is Status.WARN
    assert found.evidence == (
        "DescribePCR: extended and locked: PCR16-17; extended but NOT locked: PCR20-21"
    )
    production_nsm.lock_pcrs(32)
    found = audit(tree, production_nsm, roots=roots)["ATT-7"]
    assert found.status is Status.PASS
    assert found.evidence == "DescribePCR: extended and locked: PCR16-17,20-21"


def test_locked_pcrs_appear_in_the_self_attestation(production_nsm: EmulatedNsm) -> None:
    production_nsm.extend_pcr(16, b"x")
    production_nsm.lock_pcr(16)
    att = self_attest(production_nsm, roots=[production_nsm.pki.root_certificate])
    assert sorted(att.pcrs) == [*range(16), 16]
    assert att.pcrs[0] == BOOT_PCRS[0]


# --- TIME-3 against attested time -------------------------------------------------------------


@pytest.mark.parametrize(
    ("skew", "status"),
    [(0.0, Status.PASS), (4.0, Status.WARN), (-60.0, Status.FAIL), (3600.0, Status.FAIL)],
)
def test_wall_clock_compared_with_attested_time(
    make_tree: MakeTree, production_nsm: EmulatedNsm, skew: float, status: Status
) -> None:
    found = audit(
        make_tree("well_configured"),
        production_nsm,
        skew=skew,
        roots=[production_nsm.pki.root_certificate],
    )
    assert found["TIME-3"].status is status
    if skew:
        offset = float(found["TIME-3"].evidence.rsplit("offset ", 1)[1].split()[0])
        assert offset == pytest.approx(-skew, abs=1.0)


def test_wall_clock_in_1999_fails_even_with_an_nsm(
    make_tree: MakeTree, production_nsm: EmulatedNsm
) -> None:
    y1999 = dt.datetime(1999, 11, 30, tzinfo=dt.UTC).timestamp()
    probe = make_tree("well_configured").probe(wall_clock=lambda: y1999)
    found = by_id(run(probe, production_nsm, roots=[production_nsm.pki.root_certificate]))
    assert found["TIME-3"].status is Status.FAIL
    assert "before this build" in found["TIME-3"].evidence


def test_attested_time_is_the_emulator_clock() -> None:
    when = dt.datetime(2027, 3, 1, 12, 30, 45, 123000, tzinfo=dt.UTC)
    nsm = ephemeral_nsm(clock=lambda: when, pcrs=BOOT_PCRS)
    assert attested_time(nsm, roots=[nsm.pki.root_certificate]) == when


def test_attested_time_does_not_trust_another_root(production_nsm: EmulatedNsm) -> None:
    stranger = ephemeral_nsm()
    with pytest.raises(VerificationError) as info:
        attested_time(production_nsm, roots=[stranger.pki.root_certificate])
    assert info.value.reason is Reason.UNTRUSTED_ROOT


def test_attested_time_uses_the_aws_root_by_default(production_nsm: EmulatedNsm) -> None:
    # The emulator's root is not AWS's: without roots= the document must be refused.
    with pytest.raises(VerificationError) as info:
        attested_time(production_nsm)
    assert info.value.reason is Reason.UNTRUSTED_ROOT


def test_short_nonce_is_refused(production_nsm: EmulatedNsm) -> None:
    with pytest.raises(VerificationError, match="shorter than 16 bytes"):
        self_attest(production_nsm, roots=[production_nsm.pki.root_certificate], nonce=b"x" * 15)


class ReplayingNsm:
    """A real emulator behind a relay that answers attestation requests with an old document.

    This is the replay a hostile relay would attempt; everything else is forwarded.
    """

    def __init__(self, inner: EmulatedNsm) -> None:
        self.inner = inner
        self.old = inner.get_attestation(nonce=b"an earlier nonce, replayed......")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def get_attestation(
        self,
        user_data: bytes | None = None,
        nonce: bytes | None = None,
        public_key: bytes | None = None,
    ) -> bytes:
        return self.old


def test_replayed_document_fails_att2_and_time3(
    make_tree: MakeTree, production_nsm: EmulatedNsm
) -> None:
    replaying = ReplayingNsm(production_nsm)
    found = audit(
        make_tree("well_configured"), replaying, roots=[production_nsm.pki.root_certificate]
    )
    assert found["ATT-2"].status is Status.FAIL
    assert "nonce_mismatch" in found["ATT-2"].evidence
    assert found["TIME-3"].status is Status.WARN
    assert "attested time unavailable" in found["TIME-3"].evidence
    with pytest.raises(VerificationError) as info:
        attested_time(replaying, roots=[production_nsm.pki.root_certificate])  # type: ignore[arg-type]
    assert info.value.reason is Reason.NONCE_MISMATCH


def test_untrusted_self_attestation_fails_att2(
    make_tree: MakeTree, production_nsm: EmulatedNsm
) -> None:
    stranger = ephemeral_nsm()
    found = audit(
        make_tree("well_configured"), production_nsm, roots=[stranger.pki.root_certificate]
    )
    assert found["ATT-2"].status is Status.FAIL
    assert found["ATT-2"].evidence.startswith("self-attestation failed: ")
    assert "untrusted_root" in found["ATT-2"].evidence


# --- a broken NSM: a real character device that is not an NSM -----------------------------


def test_a_char_device_that_is_not_an_nsm(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    with DeviceNsm("/dev/null") as broken:
        with pytest.raises(NsmError):
            broken.describe_nsm()
        found = audit(tree, broken)
    assert found["NSM-2"].status is Status.FAIL
    assert "DescribeNSM failed: " in found["NSM-2"].evidence
    assert found["ATT-2"].status is Status.FAIL
    assert found["ATT-7"].status is Status.WARN
    assert found["ATT-7"].evidence.startswith("DescribePCR: DescribePCR(16): ")


# --- CLI ----------------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nitroguard", "audit", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )


def test_cli_ephemeral_and_debug(make_tree: MakeTree) -> None:
    root = str(make_tree("well_configured").root)
    out = cli("--root", root, "--nsm", "ephemeral", "--json", "--only", "NSM,ATT")
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert {f["id"]: f["status"] for f in doc["findings"]} == {
        "NSM-1": "pass",
        "NSM-2": "pass",
        "NSM-3": "pass",
        "ATT-2": "pass",
        "ATT-7": "pass",
    }
    out = cli("--root", root, "--nsm", "ephemeral-debug", "--json", "--only", "ATT-2")
    assert out.returncode == 1
    assert json.loads(out.stdout)["findings"][0]["evidence"].endswith("(all zero: debug mode)")


def test_cli_device_that_is_not_an_nsm(make_tree: MakeTree) -> None:
    root = str(make_tree("well_configured").root)
    out = cli("--root", root, "--nsm", "device:/dev/null", "--json", "--only", "NSM-2,ATT-2")
    assert out.returncode == 1
    statuses = {f["id"]: f["status"] for f in json.loads(out.stdout)["findings"]}
    assert statuses == {"NSM-2": "fail", "ATT-2": "fail"}


def test_cli_served_emulator_with_pinned_root(make_tree: MakeTree, tmp_path: Path) -> None:
    nsm = ephemeral_nsm(pcrs=BOOT_PCRS)
    root_pem = tmp_path / "root.pem"
    root_pem.write_bytes(nsm.pki.root_pem)
    server = NsmServer(nsm, tmp_path / "nsm.sock")
    server.start()
    try:
        root = str(make_tree("well_configured").root)
        spec = f"emulator:{tmp_path / 'nsm.sock'}"
        out = cli(
            "--root", root, "--nsm", spec, "--nsm-root", str(root_pem), "--json", "--only", "ATT"
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert [f["status"] for f in json.loads(out.stdout)["findings"]] == ["pass", "pass"]
        # Without the pin, the default AWS root refuses the emulator's document.
        out = cli("--root", root, "--nsm", spec, "--json", "--only", "ATT-2")
        assert out.returncode == 1
        assert "untrusted_root" in json.loads(out.stdout)["findings"][0]["evidence"]
    finally:
        server.shutdown()
    bad = cli("--root", root, "--nsm", "ephemeral", "--nsm-root", str(tmp_path / "nsm.sock"))
    assert bad.returncode == 2


def test_cli_unopenable_device_is_an_nsm2_failure(make_tree: MakeTree, tmp_path: Path) -> None:
    root = str(make_tree("well_configured").root)
    missing = str(tmp_path / "no-nsm")
    out = cli("--root", root, "--nsm", f"device:{missing}", "--json", "--only", "NSM-2,ATT-2")
    assert out.returncode == 1
    found = {f["id"]: f for f in json.loads(out.stdout)["findings"]}
    assert found["NSM-2"]["status"] == "fail"
    assert f"DescribeNSM failed: cannot open the NSM device {missing}" in found["NSM-2"]["evidence"]
    assert "[nsm_unavailable]" in found["ATT-2"]["evidence"]
