"""`nitroguard eif` through real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eif_helpers import basic_sections, craft, key_pem, make_cert, run, run_json

GOOD_CMDLINE = (
    "console=ttyS0 random.trust_cpu=off random.trust_bootloader=off clocksource=kvm-clock"
)


@pytest.mark.vectors
def test_describe_signed_vector_json(eif_vectors_dir: Path) -> None:
    expected = json.loads((eif_vectors_dir / "expected.json").read_text())
    name = "v4-signed-es384-2ramdisks.eif"
    code, doc = run_json("describe", eif_vectors_dir / name, "--at", "2027-01-01T00:00:00Z")
    assert doc["EifVersion"] == 4
    pcrs = {k: v for k, v in doc["Measurements"].items() if k.startswith("PCR")}
    assert pcrs == expected[name]["measurements"]
    assert doc["IsSigned"] is True
    assert doc["CheckCRC"] is True
    assert doc["SignatureCheck"] is True
    cert = doc["SigningCertificate"]
    assert cert["Algorithm"] == "ecdsa-with-SHA256"  # the certificate's own signature
    assert cert["IssuerName"] == "O=test only,CN=EIF test vector ES384"
    assert cert["Signature"].startswith("30:")
    assert doc["Signature"]["Algorithm"] == "ES384"  # the COSE signature over PCR0
    assert doc["Metadata"]["BuildTool"] == "eif-test-vectors"
    assert doc["ImageName"] == "eif-test-vector"
    ids = {f["id"]: f["status"] for f in doc["Findings"]}
    assert ids["RNG-2"] == "fail"  # random.trust_cpu=on in the vector's cmdline
    assert code == 1
    # Accepting the known findings makes the image sound.
    code, doc = run_json(
        "describe",
        eif_vectors_dir / name,
        "--at",
        "2027-01-01T00:00:00Z",
        "--allow",
        "RNG-2",
        "--allow",
        "rng-3",
        "--allow",
        "NSM-1",
    )
    assert code == 0
    assert doc["Sound"] is True


@pytest.mark.vectors
def test_describe_expired_certificate_fails(eif_vectors_dir: Path) -> None:
    code, doc = run_json(
        "describe",
        eif_vectors_dir / "v4-signed-es384-2ramdisks.eif",
        "--at",
        "2200-01-01T00:00:00Z",
        "--allow",
        "RNG-2",
        "--allow",
        "RNG-3",
        "--allow",
        "NSM-1",
    )
    assert code == 1
    assert doc["SignatureCheck"] is False
    assert doc["Signature"]["Reason"] == "expired_certificate"
    assert doc["Signature"]["SignatureValid"] is True


@pytest.mark.vectors
def test_describe_human_and_pcr(eif_vectors_dir: Path) -> None:
    path = eif_vectors_dir / "v1-unsigned-2ramdisks.eif"
    out = run("describe", path)
    assert out.returncode == 1
    assert "PCR0  4c755fbd" in out.stdout
    assert "CRC-32     ok" in out.stdout
    assert "FAIL  RNG-2" in out.stdout
    assert "Result: FAILED" in out.stdout
    out = run("pcr", path)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["PCR0", "PCR1", "PCR2"]
    code, doc = run_json("pcr", path)
    assert code == 0
    assert set(doc) == {"PCR0", "PCR1", "PCR2"}


@pytest.mark.vectors
def test_build_cli_reproduces_vector(eif_vectors_dir: Path, tmp_path: Path) -> None:
    expected = json.loads((eif_vectors_dir / "expected.json").read_text())
    inputs = eif_vectors_dir / "inputs"
    cmdline = tmp_path / "cmdline"
    # A blob file ending in a newline, as nitro-cli's: trimmed, like nitro-cli does.
    cmdline.write_text(expected["_common"]["cmdline_section_text"] + "\n")
    meta = tmp_path / "meta.json"
    meta.write_text(expected["_common"]["metadata_section_text"])
    out = tmp_path / "out.eif"
    res = run(
        "build",
        "--kernel",
        inputs / "kernel.bin",
        "--cmdline",
        f"@{cmdline}",
        "--ramdisk",
        inputs / "ramdisk0.bin",
        "--ramdisk",
        inputs / "ramdisk1.bin",
        "--metadata",
        f"@{meta}",
        "-o",
        out,
    )
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == (eif_vectors_dir / "v1-unsigned-2ramdisks.eif").read_bytes()
    assert "PCR0 4c755fbd" in res.stdout


def test_build_signed_then_describe_sound(tmp_path: Path) -> None:
    pem, key = make_cert()
    (tmp_path / "cert.pem").write_bytes(pem)
    (tmp_path / "key.pem").write_bytes(key_pem(key))
    (tmp_path / "kernel").write_bytes(b"k" * 5000)
    (tmp_path / "r0").write_bytes(b"r" * 3000)
    out = tmp_path / "signed.eif"
    res = run(
        "build",
        "--kernel",
        tmp_path / "kernel",
        "--cmdline",
        GOOD_CMDLINE,
        "--ramdisk",
        tmp_path / "r0",
        "--sign-cert",
        tmp_path / "cert.pem",
        "--sign-key",
        tmp_path / "key.pem",
        "-o",
        out,
        "--json",
    )
    assert res.returncode == 0, res.stderr
    built = json.loads(res.stdout)
    assert "PCR8" in built["Measurements"]
    # Metadata carries no wall-clock time by default.
    code, doc = run_json("describe", out, "--allow", "RNG-3", "--allow", "NSM-1")
    assert doc["Metadata"]["BuildTime"] == "1970-01-01T00:00:00+00:00"
    assert doc["SignatureCheck"] is True
    assert doc["Measurements"]["PCR8"] == built["Measurements"]["PCR8"]
    assert code == 0, doc
    # Same inputs, same bytes.
    again = tmp_path / "again.eif"
    res = run(
        "build",
        "--kernel",
        tmp_path / "kernel",
        "--cmdline",
        GOOD_CMDLINE,
        "--ramdisk",
        tmp_path / "r0",
        "--sign-cert",
        tmp_path / "cert.pem",
        "--sign-key",
        tmp_path / "key.pem",
        "-o",
        again,
    )
    assert res.returncode == 0
    assert again.read_bytes() == out.read_bytes()


def test_build_failure_leaves_no_output(tmp_path: Path) -> None:
    (tmp_path / "kernel").write_bytes(b"k")
    out = tmp_path / "out.eif"
    out.write_bytes(b"previous")
    res = run(
        "build",
        "--kernel",
        tmp_path / "kernel",
        "--cmdline",
        "x",
        "--ramdisk",
        tmp_path / "missing",
        "-o",
        out,
    )
    assert res.returncode == 2
    assert "missing" in res.stderr
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kernel", "out.eif"]


def test_build_rejects_bad_metadata_and_half_signer(tmp_path: Path) -> None:
    (tmp_path / "k").write_bytes(b"k")
    base = ["build", "--kernel", tmp_path / "k", "--cmdline", "x", "--ramdisk", tmp_path / "k"]
    res = run(*base, "--metadata", "{nope", "-o", tmp_path / "o.eif")
    assert res.returncode == 2
    assert "metadata" in res.stderr
    res = run(*base, "--sign-cert", tmp_path / "k", "-o", tmp_path / "o.eif")
    assert res.returncode == 2
    assert "--sign-key" in res.stderr
    assert not (tmp_path / "o.eif").exists()


def test_describe_bad_crc_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.eif"
    path.write_bytes(craft(basic_sections(), crc=1))
    code, doc = run_json("describe", path, "--allow", "RNG-2")
    assert code == 1
    assert doc["CheckCRC"] is False
    out = run("pcr", path)
    assert out.returncode == 1
    assert "bad_crc" in out.stderr


def test_malformed_and_unreadable(tmp_path: Path) -> None:
    bad = tmp_path / "bad.eif"
    bad.write_bytes(b".eif" + b"\x00" * 10)
    out = run("describe", bad)
    assert out.returncode == 1
    assert "truncated_file" in out.stderr
    code, doc = run_json("describe", bad)
    assert code == 1
    assert doc["error"]["reason"] == "truncated_file"
    out = run("describe", tmp_path / "nope.eif")
    assert out.returncode == 2
    assert "unreadable_input" in out.stderr
    out = run("describe")
    assert out.returncode == 2


@pytest.mark.vectors
def test_sign_cli_on_vector_matches_v4_layout(eif_vectors_dir: Path, tmp_path: Path) -> None:
    """Signing v1 gives v4's table (v4 is v1 signed at build time), with our signer."""
    pem, key = make_cert()
    (tmp_path / "cert.pem").write_bytes(pem)
    (tmp_path / "key.pem").write_bytes(key_pem(key))
    out = tmp_path / "v1-signed.eif"
    res = run(
        "sign",
        eif_vectors_dir / "v1-unsigned-2ramdisks.eif",
        "--sign-cert",
        tmp_path / "cert.pem",
        "--sign-key",
        tmp_path / "key.pem",
        "-o",
        out,
    )
    assert res.returncode == 0, res.stderr
    code, doc = run_json(
        "describe", out, "--allow", "RNG-2", "--allow", "RNG-3", "--allow", "NSM-1"
    )
    code4, doc4 = run_json(
        "describe",
        eif_vectors_dir / "v4-signed-es384-2ramdisks.eif",
        "--at",
        "2027-01-01T00:00:00Z",
    )
    assert code == 0, doc
    assert code4 == 1  # RNG-2 etc. not allowed here
    assert [s["Offset"] for s in doc["Sections"]] == [s["Offset"] for s in doc4["Sections"]]
    assert doc["Measurements"]["PCR0"] == doc4["Measurements"]["PCR0"]
    assert doc["SignatureCheck"] is True
    # Signing again is refused.
    res = run(
        "sign",
        out,
        "--sign-cert",
        tmp_path / "cert.pem",
        "--sign-key",
        tmp_path / "key.pem",
        "-o",
        tmp_path / "twice.eif",
    )
    assert res.returncode == 2
    assert "already signed" in res.stderr
