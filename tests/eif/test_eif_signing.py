"""Signed builds with test-time certificates: verify, tamper, expire, mismatch."""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from eif_helpers import make_cert

from nitroguard.eif import (
    Signer,
    build_eif,
    check_signature,
    read_eif,
    verify_signature,
)
from nitroguard.eif._signature import encode_signature_section, sign_pcr0
from nitroguard.errors import ConfigError, EifError, Reason
from nitroguard.hazmat import cose

KERNEL = b"\x7fkernel" * 1000
RAMDISKS = [b"bootstrap" * 300, b"customer" * 700]


def _build(tmp_path: Path, signer: Signer | None, name: str = "img.eif") -> Path:
    out = tmp_path / name
    build_eif(
        out,
        kernel=KERNEL,
        cmdline="console=ttyS0 random.trust_cpu=off random.trust_bootloader=off",
        ramdisks=RAMDISKS,
        signer=signer,
    )
    return out


def _fix_crc(data: bytearray) -> None:
    crc = zlib.crc32(bytes(data[:544]) + bytes(data[548:]))
    data[544:548] = struct.pack(">I", crc)


@pytest.mark.parametrize(
    ("curve", "alg"),
    [(ec.SECP256R1(), cose.ES256), (ec.SECP384R1(), cose.ES384), (ec.SECP521R1(), cose.ES512)],
)
def test_signed_build_verifies(tmp_path: Path, curve: ec.EllipticCurve, alg: int) -> None:
    pem, key = make_cert(curve)
    out = _build(tmp_path, Signer(pem, key))
    image = read_eif(out)
    assert image.is_signed
    assert image.signature is not None
    assert image.signature.algorithm == alg
    assert image.sections[-1].type.name == "SIGNATURE"
    report = verify_signature(image)
    assert report.ok
    assert report.payload_matches
    assert image.measurements.pcr8 is not None
    # Signing does not change PCR0/1/2.
    unsigned = read_eif(_build(tmp_path, None, "plain.eif"))
    assert unsigned.measurements.pcr0 == image.measurements.pcr0
    assert unsigned.measurements.pcr1 == image.measurements.pcr1
    assert unsigned.measurements.pcr2 == image.measurements.pcr2
    assert unsigned.measurements.pcr8 is None


def test_signed_build_is_deterministic(tmp_path: Path) -> None:
    signer = Signer(*make_cert())
    a = _build(tmp_path, signer, "a.eif").read_bytes()
    b = _build(tmp_path, signer, "b.eif").read_bytes()
    assert a == b


def test_tampered_ramdisk_fails_signature(tmp_path: Path) -> None:
    out = _build(tmp_path, Signer(*make_cert()))
    data = bytearray(out.read_bytes())
    image = read_eif(bytes(data))
    last_ramdisk = [s for s in image.sections if s.type.name == "RAMDISK"][-1]
    data[last_ramdisk.data_offset + 3] ^= 0xFF
    _fix_crc(data)  # an attacker recomputes the CRC; only the signature can catch this
    tampered = read_eif(bytes(data))
    assert tampered.measurements.pcr0 != image.measurements.pcr0
    report = check_signature(tampered)
    assert not report.ok
    assert not report.signature_valid
    assert not report.payload_matches
    assert report.reason is Reason.BAD_SIGNATURE
    with pytest.raises(EifError, match="does not verify") as info:
        verify_signature(tampered)
    assert info.value.reason is Reason.BAD_SIGNATURE


def test_valid_signature_over_another_pcr0_is_rejected(tmp_path: Path) -> None:
    """A genuine signature for a different image must not pass (reconstruct, don't parse)."""
    pem, key = make_cert()
    plain = read_eif(_build(tmp_path, None))
    other_pcr0 = bytes(range(48))
    sig = encode_signature_section(pem, sign_pcr0(key, other_pcr0))
    data = bytearray(_build(tmp_path, None, "p.eif").read_bytes())
    # Append a signature section, as `nitro-cli sign-eif` does, and fix the header.
    n = plain.header.num_sections
    offset = len(data)
    data += struct.pack(">HHQ", 4, 0, len(sig)) + sig
    struct.pack_into(">H", data, 26, n + 1)
    struct.pack_into(">Q", data, 28 + 8 * n, offset)
    struct.pack_into(">Q", data, 284 + 8 * n, len(sig))
    _fix_crc(data)
    image = read_eif(bytes(data))
    # The embedded COSE verifies over its own payload...
    assert image.signature is not None
    pub = image.signature.certificate.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    cose.verify_signature(
        pub,
        image.signature.algorithm,
        image.signature.cose.protected,
        image.signature.cose.payload,
        image.signature.cose.signature,
    )
    # ...but not over the payload rebuilt from this image's PCR0.
    report = check_signature(image)
    assert not report.ok
    assert not report.payload_matches
    assert report.reason is Reason.BAD_SIGNATURE


def test_certificate_validity_window(tmp_path: Path) -> None:
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    image = read_eif(_build(tmp_path, Signer(*make_cert(not_before=start, days=10))))
    ok = verify_signature(image, at=start + dt.timedelta(days=1))
    assert ok.certificate_valid
    with pytest.raises(EifError, match="not valid before") as info:
        verify_signature(image, at=start - dt.timedelta(seconds=1))
    assert info.value.reason is Reason.NOT_YET_VALID_CERTIFICATE
    with pytest.raises(EifError, match="expired") as info:
        verify_signature(image, at=start + dt.timedelta(days=11))
    assert info.value.reason is Reason.EXPIRED_CERTIFICATE
    late = check_signature(image, at=start + dt.timedelta(days=11))
    assert late.signature_valid
    assert not late.certificate_valid
    assert late.to_dict()["Reason"] == "expired_certificate"


def test_unsigned_image_has_no_signature(tmp_path: Path) -> None:
    image = read_eif(_build(tmp_path, None))
    with pytest.raises(EifError, match="not signed") as info:
        verify_signature(image)
    assert info.value.reason is Reason.NOT_SIGNED


def test_signer_rejects_mismatched_key() -> None:
    pem, _ = make_cert()
    _, other = make_cert()
    with pytest.raises(ConfigError, match="does not match"):
        Signer(pem, other)


def test_signer_rejects_unsupported_curve() -> None:
    pem, key = make_cert(ec.SECP256K1())
    with pytest.raises(EifError, match="P-256, P-384 and P-521") as info:
        Signer(pem, key)
    assert info.value.reason is Reason.UNSUPPORTED_ALGORITHM


def test_signature_section_encoding_matches_nitro_cli() -> None:
    """Byte fields are arrays of integers: ``81 a2 73 "signing_certificate" 99 ...``."""
    pem, key = make_cert()
    sig = encode_signature_section(pem, sign_pcr0(key, bytes(48)))
    assert sig.startswith(b"\x81\xa2\x73signing_certificate\x99")
    assert b"\x69signature" in sig


def test_sign_eif_appends_like_nitro_cli(tmp_path: Path) -> None:
    from nitroguard.eif import sign_eif

    plain = _build(tmp_path, None)
    before = read_eif(plain)
    signed_path = tmp_path / "signed.eif"
    result = sign_eif(plain, signed_path, signer=Signer(*make_cert(ec.SECP256R1())))
    signed = read_eif(signed_path)
    assert verify_signature(signed).ok
    assert signed.measurements == result.measurements
    assert signed.measurements.pcr0 == before.measurements.pcr0
    n = before.header.num_sections
    assert signed.header.num_sections == n + 1
    assert signed.sections[-1].offset == before.file_size
    # Everything after the header is the unsigned image, unchanged.
    assert signed_path.read_bytes()[548 : before.file_size] == plain.read_bytes()[548:]
    # In place works too.
    sign_eif(plain, plain, signer=Signer(*make_cert()))
    assert read_eif(plain).is_signed


def test_sign_eif_refuses_signed_or_ambiguous(tmp_path: Path) -> None:
    from eif_helpers import basic_sections, craft

    from nitroguard.eif import sign_eif

    signed = _build(tmp_path, Signer(*make_cert()))
    with pytest.raises(ConfigError, match="already signed"):
        sign_eif(signed, tmp_path / "x.eif", signer=Signer(*make_cert()))
    gap = tmp_path / "gap.eif"
    gap.write_bytes(craft(basic_sections(), gap=16))
    with pytest.raises(ConfigError, match="ambiguous"):
        sign_eif(gap, tmp_path / "y.eif", signer=Signer(*make_cert()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gap.eif", "img.eif"]
