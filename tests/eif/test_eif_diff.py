"""`diff_images` / `nitroguard eif diff`: which section drifted, which PCR moved."""

from __future__ import annotations

import json
from pathlib import Path

from eif_helpers import make_cert, run

from nitroguard.eif import Signer, build_eif, default_metadata, diff_images


def _build(
    path: Path,
    ramdisks: list[bytes],
    *,
    cmdline: str = "c",
    build_time: str | None = None,
    signer: Signer | None = None,
) -> Path:
    meta = default_metadata(image_name="x", build_time=build_time) if build_time else None
    build_eif(
        path, kernel=b"k" * 100, cmdline=cmdline, ramdisks=ramdisks, metadata=meta, signer=signer
    )
    return path


def test_identical_rebuild(tmp_path: Path) -> None:
    a = _build(tmp_path / "a.eif", [b"r0", b"r1"])
    b = _build(tmp_path / "b.eif", [b"r0", b"r1"])
    d = diff_images(a, b)
    assert d.identical_bytes
    assert d.same_measurements
    assert d.pcrs_differ == ()
    assert {s.status for s in d.sections} == {"same"}


def test_metadata_only_difference_moves_no_pcr(tmp_path: Path) -> None:
    a = _build(tmp_path / "a.eif", [b"r0"], build_time="1970-01-01T00:00:00+00:00")
    b = _build(tmp_path / "b.eif", [b"r0"], build_time="2026-11-27T10:00:00+00:00")
    d = diff_images(a.read_bytes(), b)
    assert not d.identical_bytes
    assert d.same_measurements
    meta = {s.name: s for s in d.sections}["metadata"]
    assert meta.status == "differs"
    assert meta.detail == "changed keys: BuildMetadata.BuildTime"
    assert meta.measured_in == ()


def test_application_ramdisk_moves_pcr2_only(tmp_path: Path) -> None:
    a = _build(tmp_path / "a.eif", [b"r0", b"app-v1"])
    b = _build(tmp_path / "b.eif", [b"r0", b"app-v2!"])
    d = diff_images(a, b)
    assert d.pcrs_differ == ("PCR0", "PCR2")
    by = {s.name: s for s in d.sections}
    assert by["ramdisk 1"].status == "differs"
    assert by["ramdisk 1"].detail == "6 vs 7 bytes"
    assert by["ramdisk 0"].status == "same"


def test_cmdline_moves_pcr1(tmp_path: Path) -> None:
    a = _build(tmp_path / "a.eif", [b"r0"], cmdline="random.trust_cpu=on")
    b = _build(tmp_path / "b.eif", [b"r0"], cmdline="random.trust_cpu=off")
    d = diff_images(a, b)
    assert set(d.pcrs_differ) == {"PCR0", "PCR1"}
    assert (
        "'random.trust_cpu=on' vs 'random.trust_cpu=off'"
        in {s.name: s for s in d.sections}["cmdline"].detail
    )


def test_cli_diff(tmp_path: Path) -> None:
    a = _build(tmp_path / "a.eif", [b"r0", b"r1"])
    b = _build(tmp_path / "b.eif", [b"r0", b"r1"], signer=Signer(*make_cert()))
    out = run("diff", a, b)
    assert out.returncode == 0, out.stderr
    assert "same PCR0/PCR1/PCR2" in out.stdout
    assert "only in B signature" in out.stdout
    c = _build(tmp_path / "c.eif", [b"r0"])
    out = run("diff", a, c, "--json")
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert doc["PCRsDiffer"] == ["PCR0", "PCR2"]
    assert doc["SameMeasurements"] is False
    out = run("diff", a, tmp_path / "missing.eif")
    assert out.returncode == 2
