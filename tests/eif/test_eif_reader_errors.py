"""Every malformed-input class gets its own precise reason."""

from __future__ import annotations

import base64
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from eif_helpers import META, basic_sections, craft, make_cert, section

from nitroguard.eif import read_eif, static_checks
from nitroguard.eif._format import crc32_combine
from nitroguard.eif._signature import encode_signature_section, sign_pcr0
from nitroguard.errors import EifError, Error, Reason
from nitroguard.hazmat import cbor


def _reason(data: bytes, **kwargs: bool) -> Reason:
    with pytest.raises(EifError) as info:
        read_eif(data, **kwargs)
    assert info.value.message
    return info.value.reason


def test_well_formed_crafted_image_reads() -> None:
    image = read_eif(craft(basic_sections()))
    assert image.crc_ok
    assert image.layout_issues == ()
    assert [s.type.name for s in image.sections] == [
        "KERNEL",
        "CMDLINE",
        "METADATA",
        "RAMDISK",
        "RAMDISK",
    ]


@pytest.mark.parametrize("length", [0, 1, 100, 547])
def test_shorter_than_header(length: int) -> None:
    assert _reason(craft(basic_sections())[:length]) is Reason.TRUNCATED_FILE


def test_truncated_inside_a_section() -> None:
    data = craft(basic_sections())
    with pytest.raises(EifError, match="past the end of the file") as info:
        read_eif(data[:-10])
    assert info.value.reason is Reason.TRUNCATED_FILE


def test_bad_magic() -> None:
    with pytest.raises(EifError, match="bad magic") as info:
        read_eif(craft(basic_sections(), magic=b"EIF."))
    assert info.value.reason is Reason.BAD_MAGIC


@pytest.mark.parametrize("version", [0, 1, 5, 0xFFFF])
def test_unsupported_version(version: int) -> None:
    assert _reason(craft(basic_sections(), version=version)) is Reason.UNSUPPORTED_VERSION


def test_too_many_sections() -> None:
    with pytest.raises(EifError, match="33 sections") as info:
        read_eif(craft(basic_sections(), num_sections=33))
    assert info.value.reason is Reason.TOO_MANY_SECTIONS


def test_zero_sections() -> None:
    assert _reason(craft(basic_sections(), num_sections=0)) is Reason.MISSING_SECTION


@pytest.mark.parametrize("size", [1 << 40, (1 << 64) - 1, (1 << 64) - 12])
def test_huge_sizes(size: int) -> None:
    secs = basic_sections()
    sizes = [len(d) for _, d in secs]
    sizes[3] = size
    assert _reason(craft(secs, sizes=sizes)) is Reason.SECTION_OUT_OF_BOUNDS


def test_huge_offset() -> None:
    secs = basic_sections()
    image = craft(secs)
    offsets = [read_eif(image).sections[i].offset for i in range(len(secs))]
    offsets[1] = (1 << 64) - 20
    assert _reason(craft(secs, offsets=offsets)) is Reason.SECTION_OUT_OF_BOUNDS


def test_offset_inside_header() -> None:
    secs = basic_sections()
    offsets = [s.offset for s in read_eif(craft(secs)).sections]
    offsets[0] = 100
    with pytest.raises(EifError, match="overlaps the 548-byte header") as info:
        read_eif(craft(secs, offsets=offsets))
    assert info.value.reason is Reason.OVERLAPPING_SECTIONS


def test_overlapping_sections() -> None:
    secs = basic_sections()
    offsets = [s.offset for s in read_eif(craft(secs)).sections]
    offsets[4] = offsets[3]  # two table entries share one section
    with pytest.raises(EifError, match="overlap") as info:
        read_eif(craft(secs, offsets=offsets))
    assert info.value.reason is Reason.OVERLAPPING_SECTIONS


def test_section_header_size_disagrees_with_table() -> None:
    secs = basic_sections()
    sizes = [len(d) for _, d in secs]
    sizes[3] -= 1
    with pytest.raises(EifError, match="header says 50 bytes, the table says 49") as info:
        read_eif(craft(secs, sizes=sizes))
    assert info.value.reason is Reason.SECTION_SIZE_MISMATCH


@pytest.mark.parametrize("stype", [0, 6, 0xFFFF])
def test_unknown_section_type(stype: int) -> None:
    secs = basic_sections()
    secs[3] = (stype, secs[3][1])
    assert _reason(craft(secs)) is Reason.UNKNOWN_SECTION_TYPE


def test_bad_crc_raises_and_can_be_reported() -> None:
    data = craft(basic_sections(), crc=0x12345678)
    with pytest.raises(EifError, match="CRC-32 mismatch") as info:
        read_eif(data)
    assert info.value.reason is Reason.BAD_CRC
    image = read_eif(data, check_crc=False)
    assert not image.crc_ok
    assert image.header.crc32 == 0x12345678


def test_flipped_data_byte_breaks_crc() -> None:
    data = bytearray(craft(basic_sections()))
    data[700] ^= 0x01
    assert _reason(bytes(data)) is Reason.BAD_CRC


@pytest.mark.parametrize(
    ("secs", "reason", "match"),
    [
        ([(2, b"x"), (5, META), (3, b"r")], Reason.MISSING_SECTION, "no kernel"),
        ([(1, b"k"), (5, META), (3, b"r")], Reason.MISSING_SECTION, "no cmdline"),
        ([(1, b"k"), (2, b"c"), (3, b"r")], Reason.MISSING_SECTION, "without a metadata"),
        ([(1, b"k"), (1, b"k"), (2, b"c"), (5, META)], Reason.DUPLICATE_SECTION, "2 kernel"),
        ([(1, b"k"), (2, b"c"), (2, b"c"), (5, META)], Reason.DUPLICATE_SECTION, "2 cmdline"),
        ([(1, b"k"), (2, b"c"), (5, META), (5, META)], Reason.DUPLICATE_SECTION, "2 metadata"),
        ([(3, b"r"), (1, b"k"), (2, b"c"), (5, META)], Reason.BAD_SECTION, "before the kernel"),
    ],
)
def test_composition(secs: list[tuple[int, bytes]], reason: Reason, match: str) -> None:
    with pytest.raises(EifError, match=match) as info:
        read_eif(craft(secs))
    assert info.value.reason is reason


def test_version_3_needs_no_metadata() -> None:
    image = read_eif(craft([(1, b"k"), (2, b"c"), (3, b"r")], version=3))
    assert image.metadata is None


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply|not valid JSON"),
    ],
)
def test_bad_metadata(meta: bytes, match: str) -> None:
    secs = basic_sections()
    secs[2] = (5, meta)
    with pytest.raises(EifError, match=match) as info:
        read_eif(craft(secs))
    assert info.value.reason is Reason.BAD_METADATA


def test_oversized_metadata_rejected_before_reading() -> None:
    secs = basic_sections()
    # A 2 MiB metadata section that the file really holds (so not a truncation).
    secs[2] = (5, b" " * (2 * 1024 * 1024))
    with pytest.raises(EifError, match="exceeds") as info:
        read_eif(craft(secs))
    assert info.value.reason is Reason.BAD_METADATA


def _signed_sections(sig_data: bytes) -> list[tuple[int, bytes]]:
    return [*basic_sections(), (4, sig_data)]


def _cose(pcr0: bytes = bytes(48)) -> tuple[bytes, bytes]:
    pem, key = make_cert()
    return pem, sign_pcr0(key, pcr0)


@pytest.mark.parametrize(
    ("sig", "match"),
    [
        (b"\xff\x00garbage", "not valid CBOR"),
        (cbor.dumps([]), "exactly one entry, found 0"),
        (cbor.dumps({"a": 1}), "must be a CBOR array"),
        (cbor.dumps([1]), "must be a CBOR map"),
        (cbor.dumps([{"signature": [1]}]), "exactly the keys"),
        (
            cbor.dumps([{"signing_certificate": [1], "signature": [1], "x": 1}]),
            "exactly the keys",
        ),
        (cbor.dumps([{"signing_certificate": [256], "signature": [1]}]), "not a byte value"),
        (cbor.dumps([{"signing_certificate": "text", "signature": [1]}]), "array of bytes"),
        (cbor.dumps([{"signing_certificate": list(b"not pem"), "signature": [1]}]), "PEM"),
        (b"\x81\xa2" + b"\x00" * 3, "not valid CBOR"),
    ],
)
def test_bad_signature_section(sig: bytes, match: str) -> None:
    with pytest.raises(EifError, match=match) as info:
        read_eif(craft(_signed_sections(sig)))
    assert info.value.reason is Reason.BAD_SIGNATURE_SECTION


def test_signature_section_with_two_entries() -> None:
    pem, cose_bytes = _cose()
    one = {"signing_certificate": list(pem), "signature": list(cose_bytes)}
    with pytest.raises(EifError, match="found 2") as info:
        read_eif(craft(_signed_sections(cbor.dumps([one, one]))))
    assert info.value.reason is Reason.BAD_SIGNATURE_SECTION


def test_signature_section_bad_cose() -> None:
    pem, _ = _cose()
    sig = encode_signature_section(pem, cbor.dumps([b"", {}, b""]))
    with pytest.raises(EifError, match="COSE_Sign1") as info:
        read_eif(craft(_signed_sections(sig)))
    assert info.value.reason is Reason.BAD_SIGNATURE_SECTION


def test_signature_section_unsupported_alg() -> None:
    pem, _ = _cose()
    cose_bytes = cbor.dumps([cbor.dumps({1: -8}), {}, b"p", b"s" * 64])
    with pytest.raises(EifError, match="not ES256") as info:
        read_eif(craft(_signed_sections(encode_signature_section(pem, cose_bytes))))
    assert info.value.reason is Reason.UNSUPPORTED_ALGORITHM


def test_signature_fields_as_byte_strings_are_accepted() -> None:
    pem, cose_bytes = _cose()
    sig = cbor.dumps([{"signing_certificate": pem, "signature": cose_bytes}])
    image = read_eif(craft(_signed_sections(sig)))
    assert image.signature is not None
    assert image.signature.certificate_pem == pem


def test_oversized_signature_section() -> None:
    with pytest.raises(EifError, match="exceeds 32768") as info:
        read_eif(craft(_signed_sections(b"\x00" * 40000)))
    assert info.value.reason is Reason.BAD_SIGNATURE_SECTION


def test_oversized_cmdline() -> None:
    secs = basic_sections()
    secs[1] = (2, b"a" * (64 * 1024 + 1))
    with pytest.raises(EifError, match="cmdline section") as info:
        read_eif(craft(secs))
    assert info.value.reason is Reason.BAD_SECTION


def test_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(Error, match="cannot open") as info:
        read_eif(tmp_path / "missing.eif")
    assert info.value.reason is Reason.UNREADABLE_INPUT
    with pytest.raises(Error, match="cannot open") as info:
        read_eif(tmp_path)
    assert info.value.reason is Reason.UNREADABLE_INPUT


def test_tiny_chunk_size_rejected() -> None:
    with pytest.raises(EifError, match="chunk_size") as info:
        read_eif(craft(basic_sections()), chunk_size=10)
    assert info.value.reason is Reason.INVALID_ARGUMENT


# --- where the table and nitro-cli's sequential walk disagree ---------------------------


def _layout(data: bytes) -> tuple[str, ...]:
    image = read_eif(data)
    finding = {f.id: f for f in static_checks(image)}["EIF-LAYOUT"]
    assert (finding.status == "fail") is bool(image.layout_issues)
    return image.layout_issues


def test_gap_before_first_section_is_flagged() -> None:
    issues = _layout(craft(basic_sections(), gap=24))
    assert any("24 byte gap" in i for i in issues)
    assert any("sequential walk" in i for i in issues)


@pytest.mark.parametrize(("extra", "walk"), [(b"\x00" * 5, False), (b"\x00" * 12, True)])
def test_trailing_bytes_are_flagged(extra: bytes, walk: bool) -> None:
    issues = _layout(craft(basic_sections(), trailing=extra))
    assert any(f"{len(extra)} trailing byte(s)" in i for i in issues)
    assert any("sequential walk" in i for i in issues) is walk


def test_table_out_of_file_order_is_flagged_and_measured_in_table_order() -> None:
    secs = basic_sections()
    image = read_eif(craft(secs))
    offsets = [s.offset for s in image.sections]
    sizes = [s.size for s in image.sections]
    # Swap the two ramdisk table entries: the file is unchanged, the table order is not.
    offsets[3], offsets[4] = offsets[4], offsets[3]
    sizes[3], sizes[4] = sizes[4], sizes[3]
    swapped = read_eif(craft(secs, offsets=offsets, sizes=sizes))
    assert any("not in file order" in i for i in swapped.layout_issues)
    # The hypervisor takes the first table entry as "first ramdisk": PCR1 differs.
    assert swapped.measurements.pcr1 != image.measurements.pcr1


def test_nonzero_section_flags_and_reserved_bits_are_flagged() -> None:
    secs = basic_sections()
    body = b"".join(section(t, d, flags=(1 if i == 0 else 0)) for i, (t, d) in enumerate(secs))
    data = craft(secs, raw_sections=body, flags=0x8000)
    issues = _layout(data)
    assert any("flags 0x0001" in i for i in issues)
    assert any("reserved header flag bits" in i for i in issues)


def test_image_without_ramdisk_is_flagged() -> None:
    issues = _layout(craft([(1, b"k"), (2, b"c"), (5, META)]))
    assert any("no ramdisk" in i for i in issues)


def test_crc32_combine_matches_zlib() -> None:
    import zlib

    a, b = b"hello " * 100, b"world" * 77
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b""), 0) == zlib.crc32(a)


def test_header_struct_is_548_bytes() -> None:
    from nitroguard.eif import EifHeader

    header = EifHeader.decode(craft(basic_sections()))
    assert len(header.encode()) == 548
    assert struct.calcsize(">4sHHQQHH32Q32QII") == 548


def _tampered_cert_image(edit: Callable[[bytearray, bytes], None]) -> bytes:
    """An image signed with a certificate whose DER was edited by `edit(der, point)`."""
    pem, key = make_cert()
    der = bytearray(x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER))
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    edit(der, point)
    bad_pem = (
        b"-----BEGIN CERTIFICATE-----\n"
        + base64.encodebytes(bytes(der))
        + b"-----END CERTIFICATE-----\n"
    )
    return craft(_signed_sections(encode_signature_section(bad_pem, sign_pcr0(key, bytes(48)))))


def _off_curve(der: bytearray, point: bytes) -> None:
    der[bytes(der).index(point) + 5] ^= 0x01  # x changed: no longer on the curve


def _bad_version(der: bytearray, point: bytes) -> None:
    der[bytes(der).index(b"\xa0\x03\x02\x01\x02") + 4] = 33  # X.509 version 34


def _negative_serial(der: bytearray, point: bytes) -> None:
    at = bytes(der).index(b"\xa0\x03\x02\x01\x02") + 5  # the serial INTEGER follows
    assert der[at] == 0x02
    der[at + 2] = 0x80  # top bit set: a negative serial number


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        # Regressions found by bench/fuzz_eif.py: each escaped as a non-nitroguard error.
        (_off_curve, "cannot be used"),  # ValueError from the lazy public_key()
        (_bad_version, r"not a PEM X\.509 certificate"),  # InvalidVersion, not a ValueError
        (_negative_serial, "serial"),  # CryptographyDeprecationWarning
    ],
)
def test_malformed_signing_certificate(
    edit: Callable[[bytearray, bytes], None], match: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(EifError, match=match) as info:
            read_eif(_tampered_cert_image(edit))
    assert info.value.reason is Reason.BAD_SIGNATURE_SECTION
