"""Fuzz the reader: only nitroguard errors escape, no hang, no large allocation.

Bounded for CI; ``bench/fuzz_eif.py`` runs the long campaign.
"""

from __future__ import annotations

import base64
import struct
import tracemalloc
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from eif_helpers import basic_sections, craft, make_cert
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nitroguard.eif import read_eif, static_checks
from nitroguard.eif._signature import encode_signature_section, sign_pcr0
from nitroguard.errors import Error

_PEM, _KEY = make_cert()
SEEDS = [
    craft(basic_sections(1)),
    craft(basic_sections(3)),
    craft(
        [
            *basic_sections(2),
            (4, encode_signature_section(_PEM, sign_pcr0(_KEY, bytes(48)))),
        ]
    ),
]


def _exercise(data: bytes) -> None:
    try:
        image = read_eif(data, check_crc=False, chunk_size=4096)
    except Error as exc:
        message = exc.message
    else:
        message = ""
    if message:
        return
    static_checks(image)
    if image.signature is not None:
        image.check_signature(image.signature.not_after)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["byte", "u64", "u16", "cut", "insert"]))
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "u64" and pos + 8 <= len(data):
            struct.pack_into(
                ">Q",
                data,
                pos,
                draw(
                    st.sampled_from(
                        [0, 1, 548, 1 << 63, (1 << 64) - 1, draw(st.integers(0, (1 << 64) - 1))]
                    )
                ),
            )
        elif kind == "u16" and pos + 2 <= len(data):
            struct.pack_into(">H", data, pos, draw(st.integers(0, 0xFFFF)))
        elif kind == "cut":
            del data[pos:]
            if not data:
                break
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(max_size=40))
    return bytes(data)


# Header fields that steer the parser: the table and num_sections.
@st.composite
def header_fuzz(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    struct.pack_into(">H", data, 26, draw(st.integers(0, 40)))
    for i in draw(st.lists(st.integers(0, 31), max_size=6)):
        struct.pack_into(">Q", data, 28 + 8 * i, draw(st.integers(0, (1 << 64) - 1)))
        struct.pack_into(">Q", data, 284 + 8 * i, draw(st.integers(0, (1 << 64) - 1)))
    return bytes(data)


@settings(max_examples=300, deadline=10_000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_mutations(data: bytes) -> None:
    _exercise(data)


@settings(max_examples=200, deadline=10_000)
@given(header_fuzz())
def test_fuzz_header_table(data: bytes) -> None:
    _exercise(data)


@settings(max_examples=200, deadline=10_000)
@given(st.binary(max_size=2000))
def test_fuzz_random_bytes(data: bytes) -> None:
    _exercise(b".eif" + data)


_DER = x509.load_pem_x509_certificate(_PEM).public_bytes(serialization.Encoding.DER)
_COSE = sign_pcr0(_KEY, bytes(48))


@st.composite
def cert_mutated(draw: st.DrawFn) -> bytes:
    """An image whose signing certificate DER has a few bytes changed."""
    der = bytearray(_DER)
    for _ in range(draw(st.integers(1, 4))):
        der[draw(st.integers(0, len(der) - 1))] = draw(st.integers(0, 255))
    pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(bytes(der))
    pem += b"-----END CERTIFICATE-----\n"
    return craft([*basic_sections(2), (4, encode_signature_section(pem, _COSE))])


@settings(max_examples=300, deadline=10_000)
@given(cert_mutated())
def test_fuzz_signing_certificate(data: bytes) -> None:
    _exercise(data)


@pytest.mark.parametrize("size", [1 << 62, (1 << 64) - 13, 1 << 34])
def test_declared_huge_sizes_allocate_nothing(size: int) -> None:
    """Lying sizes must be rejected before any allocation in proportion to them."""
    secs = basic_sections()
    sizes = [len(d) for _, d in secs]
    data = craft(secs, sizes=[*sizes[:3], size, sizes[4]])
    tracemalloc.start()
    try:
        with pytest.raises(Error, match="section 3"):
            read_eif(data)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


def test_large_image_reads_with_bounded_memory(tmp_path: Path) -> None:
    """A 24 MiB image is measured with RING x 512 KiB buffers: allocations stay small."""
    from nitroguard.eif import build_eif
    from nitroguard.eif._measure import RING

    path = tmp_path / "big.eif"
    ramdisk = tmp_path / "r1"
    with ramdisk.open("wb") as fh:
        for i in range(24):
            fh.write(bytes([i]) * (1024 * 1024))
    build_eif(path, kernel=b"k" * 1000, cmdline="c", ramdisks=[b"r0", ramdisk])
    chunk = 512 * 1024
    tracemalloc.start()
    try:
        image = read_eif(path, chunk_size=chunk)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert image.crc_ok
    assert peak < RING * chunk + 1024 * 1024
