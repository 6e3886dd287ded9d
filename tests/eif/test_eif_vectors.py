"""The shared EIF vectors: PCRs, CRC, layout and signature, and byte-exact rebuilds."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from eif_helpers import make_cert

from nitroguard.eif import (
    Signer,
    build_eif,
    measure,
    pcr_of_bytes,
    pcr_payload,
    read_eif,
    static_checks,
    verify_signature,
)
from nitroguard.eif._measure import extend_from_zero

pytestmark = pytest.mark.vectors

NAMES = ["v1-unsigned-2ramdisks.eif", "v2-unsigned-1ramdisk.eif", "v4-signed-es384-2ramdisks.eif"]
# The vector certificate's notBefore is 2026-11-27T09:38:01Z; judge a fixed time after it.
AT = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def expected(eif_vectors_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((eif_vectors_dir / "expected.json").read_text())
    return data


@pytest.mark.parametrize("name", NAMES)
def test_vector_matches_expected(
    eif_vectors_dir: Path, expected: dict[str, Any], name: str
) -> None:
    exp = expected[name]
    path = eif_vectors_dir / name
    raw = path.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == exp["file_sha256"]
    image = read_eif(path)
    assert image.measurements.as_hex() == exp["measurements"]
    assert image.crc_ok is exp["crc_check"]
    assert f"{image.header.crc32:#010x}" == exp["eif_crc32"]
    assert image.version == exp["eif_version"]
    assert image.header.flags == exp["flags"]
    assert image.header.default_mem == exp["default_mem"]
    assert image.header.default_cpus == exp["default_cpus"]
    assert image.header.num_sections == exp["num_sections"]
    assert image.file_size == exp["file_size"]
    assert [s.offset for s in image.sections] == exp["section_offsets"]
    assert [s.size for s in image.sections] == exp["section_sizes"]
    assert [int(s.type) for s in image.sections] == exp["section_types_in_file_order"]
    assert image.is_signed is exp["is_signed"]
    assert image.layout_issues == ()
    assert image.cmdline.decode() == expected["_common"]["cmdline_section_text"]
    assert image.metadata_raw == expected["_common"]["metadata_section_text"].encode()
    # The same answer from bytes and from an open file object.
    assert measure(raw) == image.measurements
    with path.open("rb") as fh:
        assert read_eif(fh, chunk_size=4096).measurements == image.measurements


def test_single_ramdisk_pcr2_is_empty_value(
    eif_vectors_dir: Path, expected: dict[str, Any]
) -> None:
    image = read_eif(eif_vectors_dir / "v2-unsigned-1ramdisk.eif")
    empty = expected["_common"]["empty_register_value"]
    assert image.measurements.pcr2.hex() == empty
    assert extend_from_zero(hashlib.sha384(b"").digest()).hex() == empty
    assert image.measurements.pcr0 == image.measurements.pcr1


def test_signed_vector(eif_vectors_dir: Path, expected: dict[str, Any]) -> None:
    exp = expected["v4-signed-es384-2ramdisks.eif"]
    image = read_eif(eif_vectors_dir / "v4-signed-es384-2ramdisks.eif")
    assert image.signature is not None
    assert image.signature.algorithm == exp["cose_alg"]
    assert image.signature.cose.protected.hex() == exp["cose_protected_header_hex"]
    assert image.signature.cose.payload.hex() == exp["cose_payload_hex"]
    assert pcr_payload(image.measurements.pcr0).hex() == exp["cose_payload_hex"]
    report = verify_signature(image, at=AT)
    assert report.ok is exp["signature_check"]
    assert report.signature_valid
    assert report.payload_matches
    assert report.certificate_valid
    # PCR8 from the input certificate, computed independently of the section.
    pem = (eif_vectors_dir / "inputs" / "cert384.pem").read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert pcr_of_bytes(der).hex() == expected["_common"]["pcr8_from_inputs_cert384"]
    assert image.signature.certificate_pem == pem


def test_vector_findings(eif_vectors_dir: Path) -> None:
    image = read_eif(eif_vectors_dir / "v1-unsigned-2ramdisks.eif")
    by_id = {f.id: f for f in static_checks(image)}
    # The AWS default cmdline contains random.trust_cpu=on: RNG-2 must fail.
    assert by_id["RNG-2"].status == "fail"
    assert "random.trust_cpu=on" in by_id["RNG-2"].evidence
    assert by_id["CPU-1"].status == "pass"
    assert by_id["RNG-3"].status == "fail"  # metadata says 0.0.0
    assert "NOT attested" in by_id["RNG-3"].evidence
    assert by_id["EIF-LAYOUT"].status == "pass"


@pytest.mark.parametrize(
    ("name", "ramdisks"),
    [
        ("v1-unsigned-2ramdisks.eif", ["ramdisk0.bin", "ramdisk1.bin"]),
        ("v2-unsigned-1ramdisk.eif", ["ramdisk0.bin"]),
    ],
)
def test_rebuild_unsigned_vectors_byte_for_byte(
    eif_vectors_dir: Path,
    expected: dict[str, Any],
    tmp_path: Path,
    name: str,
    ramdisks: list[str],
) -> None:
    inputs = eif_vectors_dir / "inputs"
    out = tmp_path / "rebuilt.eif"
    result = build_eif(
        out,
        kernel=inputs / "kernel.bin",
        cmdline=expected["_common"]["cmdline_section_text"],
        ramdisks=[inputs / r for r in ramdisks],
        metadata=expected["_common"]["metadata_section_text"].encode(),
    )
    assert out.read_bytes() == (eif_vectors_dir / name).read_bytes()
    assert result.measurements.as_hex() == expected[name]["measurements"]
    assert f"{result.crc32:#010x}" == expected[name]["eif_crc32"]


def test_signed_rebuild_matches_vector_pcrs(
    eif_vectors_dir: Path, expected: dict[str, Any], tmp_path: Path
) -> None:
    """Signing does not change PCR0/1/2 (spec 3.3 item 4): v1 + a signature == v4's PCRs."""
    inputs = eif_vectors_dir / "inputs"
    out = tmp_path / "signed.eif"
    build_eif(
        out,
        kernel=inputs / "kernel.bin",
        cmdline=expected["_common"]["cmdline_section_text"],
        ramdisks=[inputs / "ramdisk0.bin", inputs / "ramdisk1.bin"],
        metadata=expected["_common"]["metadata_section_text"].encode(),
        signer=Signer(*make_cert()),
    )
    image = read_eif(out)
    v4 = expected["v4-signed-es384-2ramdisks.eif"]["measurements"]
    assert image.measurements.pcr0.hex() == v4["PCR0"]
    assert image.measurements.pcr2.hex() == v4["PCR2"]
    # The unsigned prefix is exactly v1's section bytes.
    v1 = (eif_vectors_dir / "v1-unsigned-2ramdisks.eif").read_bytes()
    assert out.read_bytes()[548:11931] == v1[548:]
    assert verify_signature(image).ok
