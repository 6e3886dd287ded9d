"""PCR formulas against a naive reference, across orders, chunk sizes and the parallel path."""

from __future__ import annotations

import hashlib
import zlib

from eif_helpers import META, craft
from hypothesis import given, settings
from hypothesis import strategies as st

from nitroguard.eif import read_eif
from nitroguard.eif._format import crc32_combine

ZERO = bytes(48)


def _extend(content: bytes) -> bytes:
    return hashlib.sha384(ZERO + hashlib.sha384(content).digest()).digest()


def _reference(sections: list[tuple[int, bytes]]) -> tuple[bytes, bytes, bytes]:
    """Spec 3.2 literally: join the measured data, hash once, extend once."""
    pcr0, pcr1, pcr2 = b"", b"", b""
    ramdisks = 0
    for stype, data in sections:
        if stype in (1, 2):
            pcr0 += data
            pcr1 += data
        elif stype == 3:
            pcr0 += data
            if ramdisks == 0:
                pcr1 += data
            else:
                pcr2 += data
            ramdisks += 1
    return _extend(pcr0), _extend(pcr1), _extend(pcr2)


def _check(sections: list[tuple[int, bytes]], chunk_size: int = 4096) -> None:
    image = read_eif(craft(sections), chunk_size=chunk_size)
    m = image.measurements
    assert (m.pcr0, m.pcr1, m.pcr2) == _reference(sections)


@settings(max_examples=60, deadline=None)
@given(
    kernel=st.binary(max_size=9000),
    cmdline=st.binary(max_size=300).filter(lambda b: b"\0" not in b),
    ramdisks=st.lists(st.binary(max_size=9000), min_size=1, max_size=5),
    cmdline_last=st.booleans(),
)
def test_pcrs_match_reference(
    kernel: bytes, cmdline: bytes, ramdisks: list[bytes], cmdline_last: bool
) -> None:
    # The hypervisor only requires ramdisks after the kernel; the cmdline may come last,
    # which forces the PCR0/PCR1 fork to carry on feeding two states.
    secs: list[tuple[int, bytes]] = [(1, kernel), (5, META)]
    secs += [(3, r) for r in ramdisks]
    if cmdline_last:
        secs.append((2, cmdline))
    else:
        secs.insert(1, (2, cmdline))
    _check(secs)


def test_large_sections_use_the_parallel_path() -> None:
    big = [bytes([i]) * (700 * 1024 + i) for i in range(3)]
    secs = [(1, b"k" * 300_000), (2, b"c"), (5, META), (3, big[0]), (3, big[1]), (3, big[2])]
    _check(secs, chunk_size=256 * 1024)
    # The cmdline after a later ramdisk: PCR0 and PCR1 fed separately after the fork.
    secs = [(1, b"k" * 10), (5, META), (3, big[0]), (3, big[1]), (2, b"c" * 60_000)]
    _check(secs, chunk_size=1024 * 1024)


def test_full_chunks_split_their_crc_across_threads() -> None:
    """Chunks of exactly chunk_size take the split-CRC path; read_eif checks the CRC."""
    chunk = 512 * 1024
    big = bytes(range(256)) * (4 * chunk // 256)
    secs = [(1, big + b"k"), (2, b"c"), (5, META), (3, big[: 3 * chunk + 7]), (3, big)]
    _check(secs, chunk_size=chunk)
    assert read_eif(craft(secs), chunk_size=chunk).crc_ok


def test_section_boundaries_are_not_measured() -> None:
    """Spec 3.3 item 1: moving bytes across a measured boundary keeps PCR0 (not PCR1)."""
    a = read_eif(craft([(1, b"KKKK"), (2, b"c"), (5, META), (3, b"R0"), (3, b"R1")]))
    b = read_eif(craft([(1, b"KKKK"), (2, b"c"), (5, META), (3, b"R0R"), (3, b"1")]))
    assert a.measurements.pcr0 == b.measurements.pcr0
    assert a.measurements.pcr1 != b.measurements.pcr1


def test_metadata_is_not_measured() -> None:
    a = read_eif(craft([(1, b"k"), (2, b"c"), (5, META), (3, b"r")]))
    b = read_eif(craft([(1, b"k"), (2, b"c"), (5, b'{"other":1}'), (3, b"r")]))
    assert a.measurements == b.measurements
    assert a.crc_computed != b.crc_computed


@settings(max_examples=50, deadline=None)
@given(a=st.binary(max_size=2000), b=st.binary(max_size=2000))
def test_crc32_combine(a: bytes, b: bytes) -> None:
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
