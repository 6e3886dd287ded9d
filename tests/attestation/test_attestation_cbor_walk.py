"""The iterative CBOR walk (hot path) agrees exactly with the recursive reference walk.

`_Walker.walk` replaced `_Walker.item` in `nitroguard.hazmat.cbor.validate` for speed
(bench/attestation.py); both stay, and this differential test proves they accept the
same inputs and reject the rest with the same reason and message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nitroguard.errors import DecodeError
from nitroguard.hazmat import cbor


def outcome(data: bytes, method: str, **options: Any) -> tuple[str, object]:
    walker = cbor._Walker(
        data,
        options.get("max_depth", 16),
        frozenset(options.get("tags", ())),
        options.get("allow_floats", False),
    )
    try:
        end = walker.walk() if method == "walk" else walker.item(0, 0)
    except DecodeError as exc:
        return exc.reason.value, exc.message
    return "ok", end


def same(data: bytes, **options: Any) -> None:
    assert outcome(data, "walk", **options) == outcome(data, "item", **options), data.hex()


_items = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.binary(max_size=8)
    | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.integers(-3, 3) | st.text(max_size=2), children, max_size=4)
    ),
    max_leaves=12,
)

_heads = st.sampled_from(
    [
        b"\xbf",
        b"\x9f",
        b"\xff",
        b"\xd2",
        b"\xa1",
        b"\x81",
        b"\x5f",
        b"\xf7",
        b"\xf9\x00\x00",
        b"\x18\x01",
        b"\x1c",
        b"\xa2\x01\x01\x01",
        b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",
    ]
)


@settings(max_examples=1500, deadline=None)
@given(
    item=_items,
    cuts=st.lists(st.tuples(st.integers(0, 200), _heads), max_size=3),
    depth=st.integers(1, 5),
    tags=st.sampled_from([(), (18,)]),
    floats=st.booleans(),
)
def test_walks_agree_on_mutated_cbor(
    item: object, cuts: list[tuple[int, bytes]], depth: int, tags: tuple[int, ...], floats: bool
) -> None:
    data = bytearray(cbor.dumps(item))
    for at, head in cuts:
        data[at:at] = head
    same(bytes(data), max_depth=depth, tags=tags, allow_floats=floats)
    same(b"\xd2" + bytes(data), max_depth=depth, tags=tags)


@settings(max_examples=1500, deadline=None)
@given(data=st.binary(max_size=64), tags=st.sampled_from([(), (18,)]))
def test_walks_agree_on_random_bytes(data: bytes, tags: tuple[int, ...]) -> None:
    same(data, tags=tags)


@pytest.mark.parametrize(
    "hexdata",
    [
        "bf6161016161 02ff",
        "bf616101ff",
        "bf6161ff",
        "bf01",
        "9f0102",
        "9fff",
        "a0",
        "80",
        "a16170a201000100",
        "a18001",
        "d2d280",
        "81d200",
        "d29f80ff",
        "bfbf",
        "a1bf",
        # `_simple_pairs` fast path: duplicates, non-minimal and short lengths, mixes.
        "a2014100014100",
        "a26161f66161f5",
        "a101580501020304 05",
        "a10159000100",
        "a1014501 02",
        "a3 01f4 02f5 03f6",
        "a1 780161 00",
        "a2 00 81 00 00 00",
        "a2 00 00 20 00",
        "a2 01 40 01",
        "a1 01 58",
        "a1 01 59 01",
        "a1 6161",
        "bf 01 41 00 01 41 00 ff",
        "a2 01 58 18" + "00" * 24 + " 02 59 0100" + "00" * 256,
        "a2 01 58 18" + "00" * 24 + " 01 59 0100" + "00" * 256,
    ],
)
def test_walks_agree_on_edge_cases(hexdata: str) -> None:
    data = bytes.fromhex(hexdata.replace(" ", ""))
    same(data)
    same(data, tags=(18,))
    same(data, max_depth=1)


@pytest.mark.vectors
def test_walks_agree_on_real_payloads(attestation_vectors_dir: Path) -> None:
    for path in sorted(attestation_vectors_dir.rglob("*.cbor")):
        data = path.read_bytes()
        same(data, tags=(18,))
        try:
            outer = cbor.loads(data, max_size=1 << 16, top_level_tags=(18,))
        except DecodeError:
            continue
        if isinstance(outer, list) and isinstance(outer[2], bytes):
            same(outer[2])
