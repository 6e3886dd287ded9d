"""`eif.describe`: the soundness verdict in the library (the CLI only renders it)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from eif_helpers import basic_sections, bzimage, craft, run_json

from nitroguard import eif
from nitroguard.errors import ConfigError, EifError, Error, Reason

SIGNED = "v4-signed-es384-2ramdisks.eif"
AT = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
#: What the vectors' cmdline and kernel fail (see test_eif_cli).
KNOWN = ("RNG-2", "rng-3", "NSM-1")


@pytest.mark.vectors
def test_signed_vector_verdict(eif_vectors_dir: Path) -> None:
    expected = json.loads((eif_vectors_dir / "expected.json").read_text())
    d = eif.describe(eif_vectors_dir / SIGNED, at=AT)
    assert not d.sound
    assert "RNG-2 failed" in d.problems
    assert d.signature is not None
    assert d.signature.ok
    assert d.at == AT
    view = d.to_dict()
    assert {k: v for k, v in view["Measurements"].items() if k.startswith("PCR")} == (
        expected[SIGNED]["measurements"]
    )
    assert view["SigningCertificate"]["IssuerName"] == "O=test only,CN=EIF test vector ES384"
    assert view["Metadata"]["BuildTool"] == "eif-test-vectors"
    assert view["Sound"] is False

    allowed = eif.describe(eif.read_eif(eif_vectors_dir / SIGNED), at=AT, allow=KNOWN)
    assert allowed.sound
    assert allowed.problems == ()
    assert allowed.allowed == frozenset({"RNG-2", "RNG-3", "NSM-1"})
    # Allowed failures are still reported, only no longer decisive.
    assert {f.id for f in allowed.findings if f.status.value == "fail"} >= {"RNG-2"}
    assert allowed.to_dict()["Sound"] is True


@pytest.mark.vectors
def test_expired_certificate_is_a_problem(eif_vectors_dir: Path) -> None:
    at = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)
    d = eif.describe(eif_vectors_dir / SIGNED, at=at, allow=KNOWN)
    assert not d.sound
    assert d.signature is not None
    assert d.signature.reason is Reason.EXPIRED_CERTIFICATE
    assert [p for p in d.problems if p.startswith("signature: ")] != []
    assert d.to_dict()["SignatureCheck"] is False


@pytest.mark.vectors
@pytest.mark.parametrize("name", ["v1-unsigned-2ramdisks.eif", "v2-unsigned-1ramdisk.eif"])
def test_unsigned_vectors(eif_vectors_dir: Path, name: str) -> None:
    expected = json.loads((eif_vectors_dir / "expected.json").read_text())[name]
    d = eif.describe(eif_vectors_dir / name, at=AT, allow=KNOWN)
    assert d.signature is None
    view = d.to_dict()
    assert "SigningCertificate" not in view
    assert "SignatureCheck" not in view
    assert view["IsSigned"] is False
    assert view["CheckCRC"] is expected["crc_check"]
    assert view["FileSize"] == expected["file_size"]
    assert view["Sections"][0]["Offset"] == expected["section_offsets"][0]


@pytest.mark.vectors
def test_same_json_as_the_cli(eif_vectors_dir: Path) -> None:
    path = eif_vectors_dir / SIGNED
    code, doc = run_json("describe", path, "--at", "2027-01-01T00:00:00Z", "--allow", "RNG-2")
    d = eif.describe(path, at=AT, allow=["RNG-2"])
    assert doc == json.loads(json.dumps(d.to_dict()))
    assert code == (0 if d.sound else 1)


def test_crc_mismatch_is_a_problem_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.eif"
    path.write_bytes(craft(basic_sections(), crc=1))
    d = eif.describe(path, at=AT)
    assert "CRC mismatch" in d.problems
    assert d.to_dict()["CheckCRC"] is False
    with pytest.raises(EifError):
        eif.describe(b"not an eif", at=AT)
    with pytest.raises(Error) as info:
        eif.describe(tmp_path / "missing.eif", at=AT)
    assert info.value.reason is Reason.UNREADABLE_INPUT


@pytest.mark.vectors
def test_unknown_allow_id_is_refused(eif_vectors_dir: Path) -> None:
    with pytest.raises(ConfigError, match="RNG-99"):
        eif.describe(eif_vectors_dir / SIGNED, at=AT, allow=["RNG-2", "rng-99"])


def test_metadata_view_flattens_like_nitro_cli() -> None:
    meta = {"BuildMetadata": {"BuildTool": "t"}, "DockerInfo": None, "CustomMetadata": {"k": 1}}
    assert eif.metadata_view(meta) == {"BuildTool": "t", "DockerInfo": None, "k": 1}
    assert eif.metadata_view({"CustomMetadata": [1]})["CustomMetadata"] == [1]
    assert eif.metadata_view("opaque") == "opaque"


def test_metadata_from_kernel(tmp_path: Path) -> None:
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(bzimage("6.1.2 (builder@host) #1 SMP"))
    assert eif.kernel_version(kernel) == "6.1.2 (builder@host) #1 SMP"
    assert eif.kernel_version(b"\0" * 64) is None
    meta = json.loads(eif.metadata_from_kernel(kernel, build_time="2026-01-01T00:00:00Z"))
    assert meta["ImageName"] == "bzImage"
    assert meta["BuildMetadata"]["KernelVersion"] == "6.1.2"
    assert meta["BuildMetadata"]["BuildTime"] == "2026-01-01T00:00:00Z"
    unknown = json.loads(eif.metadata_from_kernel(b"\0" * 64, image_name="app"))
    assert unknown["ImageName"] == "app"
    assert unknown["BuildMetadata"]["KernelVersion"] == "unknown"
    # build_eif writes exactly this when it is given no metadata.
    out = tmp_path / "app.eif"
    eif.build_eif(out, kernel=kernel, cmdline="console=ttyS0", ramdisks=[b"r" * 16])
    assert eif.read_eif(out).metadata == json.loads(eif.metadata_from_kernel(kernel))
    with pytest.raises(Error) as info:
        eif.kernel_version(tmp_path / "missing")
    assert info.value.reason is Reason.UNREADABLE_INPUT
