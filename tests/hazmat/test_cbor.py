from __future__ import annotations

import contextlib

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nitroguard.errors import DecodeError, Reason
from nitroguard.hazmat import cbor


def loads(data: bytes, **kw: object) -> object:
    return cbor.loads(data, max_size=1 << 16, **kw)  # type: ignore[arg-type]


class TestStrictness:
    def test_round_trip(self) -> None:
        obj = {"a": [1, -2, b"x", None, True], 3: {"b": "c"}}
        assert loads(cbor.dumps(obj)) == obj

    def test_trailing_bytes(self) -> None:
        with pytest.raises(DecodeError, match="trailing") as info:
            loads(cbor.dumps([1]) + b"\x00")
        assert info.value.reason is Reason.TRAILING_BYTES

    @pytest.mark.parametrize(
        "data",
        [
            bytes.fromhex("a2616101616102"),  # {"a": 1, "a": 2}
            bytes.fromhex("a201010102"),  # {1: 1, 1: 2}
            bytes.fromhex("bf6161016161 02ff".replace(" ", "")),  # indefinite
            bytes.fromhex("a16170a201000100"),  # nested {0:0, 0:0}
        ],
    )
    def test_duplicate_keys(self, data: bytes) -> None:
        with pytest.raises(DecodeError) as info:
            loads(data)
        assert info.value.reason is Reason.DUPLICATE_KEY

    def test_non_minimal_integer(self) -> None:
        with pytest.raises(DecodeError, match="non-minimal"):
            loads(bytes.fromhex("1801"))
        with pytest.raises(DecodeError, match="non-minimal"):
            loads(bytes.fromhex("190001"))

    def test_huge_length_does_not_allocate(self) -> None:
        # A byte string claiming 2**64-1 bytes, and an array claiming 2**32 items.
        for data in (bytes.fromhex("5bffffffffffffffff"), bytes.fromhex("9affffffff00")):
            with pytest.raises(DecodeError, match="exceeds the input"):
                loads(data)

    def test_size_limit_checked_first(self) -> None:
        with pytest.raises(DecodeError) as info:
            cbor.loads(b"\x00" * 17, max_size=16)
        assert info.value.reason is Reason.TOO_LARGE

    def test_depth_limit(self) -> None:
        with pytest.raises(DecodeError) as info:
            loads(b"\x81" * 20 + b"\x00")
        assert info.value.reason is Reason.TOO_DEEP

    def test_tags(self) -> None:
        tagged = b"\xd2" + cbor.dumps([1])
        with pytest.raises(DecodeError) as info:
            loads(tagged)
        assert info.value.reason is Reason.UNEXPECTED_TAG
        decoded = loads(tagged, top_level_tags=(18,))
        assert isinstance(decoded, cbor2.CBORTag)
        assert decoded.tag == 18
        assert list(decoded.value) == [1]
        with pytest.raises(DecodeError, match="tag 18"):
            loads(b"\xd2" + tagged, top_level_tags=(18,))
        with pytest.raises(DecodeError, match="tag 18 is not accepted"):
            loads(bytes.fromhex("81d200"), top_level_tags=(18,))

    def test_indefinite_containers_accepted_strings_refused(self) -> None:
        assert loads(cbor.dumps_indefinite_map([("a", 1), ("b", [2])])) == {"a": 1, "b": [2]}
        assert loads(bytes.fromhex("9f0102ff")) == [1, 2]
        with pytest.raises(DecodeError, match="chunked"):
            loads(bytes.fromhex("5f4101ff"))
        with pytest.raises(DecodeError, match="unterminated"):
            loads(bytes.fromhex("9f0102"))

    def test_simple_values_and_floats(self) -> None:
        with pytest.raises(DecodeError, match="simple value"):
            loads(b"\xf7")  # undefined
        with pytest.raises(DecodeError, match="float"):
            loads(cbor.dumps(1.5))
        assert loads(cbor.dumps(1.5), allow_floats=True) == 1.5
        with pytest.raises(DecodeError, match="break"):
            loads(b"\xff")

    def test_map_keys_must_be_scalars(self) -> None:
        with pytest.raises(DecodeError, match="map keys"):
            loads(bytes.fromhex("a18001"))

    def test_invalid_utf8(self) -> None:
        with pytest.raises(DecodeError) as info:
            loads(b"\x61\xff")
        assert info.value.reason is Reason.MALFORMED_CBOR

    def test_rejects_non_bytes(self) -> None:
        with pytest.raises(DecodeError) as info:
            loads("text")  # type: ignore[arg-type]
        assert info.value.reason is Reason.INVALID_ARGUMENT

    def test_empty_and_truncated(self) -> None:
        for data in (b"", b"\x19\x01", b"\x62a", b"\xa1\x01"):
            with pytest.raises(DecodeError):
                loads(data)


_json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=20)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.integers(-100, 100) | st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_json_like)
@settings(max_examples=300)
def test_round_trip_property(obj: object) -> None:
    assert loads(cbor.dumps(obj)) == obj


@given(st.binary(max_size=200))
@settings(max_examples=2000)
def test_fuzz_only_decode_errors_escape(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        loads(data)
