"""The sans-IO frame codec: unit tests and hypothesis fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nitroguard.errors import ConfigError, Error, LocalProtocolError, Reason, RemoteProtocolError
from nitroguard.framing import (
    HEADER_SIZE,
    MAX_FRAME_SIZE,
    NEED_DATA,
    ConnectionClosed,
    Frame,
    FrameDecoder,
    encode_frame,
)


def drain(dec: FrameDecoder) -> list[object]:
    out: list[object] = []
    while True:
        ev = dec.next_event()
        if ev is NEED_DATA:
            return out
        out.append(ev)
        if isinstance(ev, ConnectionClosed):
            return out


def test_defaults() -> None:
    assert MAX_FRAME_SIZE == 1 << 20
    assert FrameDecoder().max_frame_size == MAX_FRAME_SIZE
    assert repr(NEED_DATA) == "NEED_DATA"
    assert type(NEED_DATA)() is NEED_DATA


def test_roundtrip_single_and_empty_frames() -> None:
    dec = FrameDecoder()
    dec.receive_data(encode_frame(b"hello") + encode_frame(b""))
    assert drain(dec) == [Frame(b"hello"), Frame(b"")]
    dec.receive_data(b"")
    assert dec.next_event() == ConnectionClosed()
    assert dec.next_event() == ConnectionClosed()  # repeatable, like h11


def test_byte_at_a_time() -> None:
    data = encode_frame(b"abc") + encode_frame(b"defgh")
    dec = FrameDecoder()
    events: list[object] = []
    for i in range(len(data)):
        dec.receive_data(data[i : i + 1])
        events += drain(dec)
    assert events == [Frame(b"abc"), Frame(b"defgh")]
    assert not dec.in_frame


def test_in_frame_and_bytes_wanted() -> None:
    dec = FrameDecoder()
    assert not dec.in_frame
    assert dec.bytes_wanted() == HEADER_SIZE
    dec.receive_data(b"\x00\x00")
    assert dec.in_frame
    assert dec.bytes_wanted() == 2
    dec.receive_data(b"\x00\x05ab")
    assert dec.next_event() is NEED_DATA
    assert dec.bytes_wanted() == 3
    assert dec.buffered == 6


def test_oversize_rejected_before_payload_is_buffered() -> None:
    dec = FrameDecoder(max_frame_size=100)
    with pytest.raises(RemoteProtocolError, match="101-byte frame") as info:
        dec.receive_data(struct.pack(">I", 101))
    assert info.value.reason is Reason.FRAME_TOO_LARGE
    assert dec.buffered == 0  # the buffer was dropped, nothing kept
    with pytest.raises(RemoteProtocolError, match="maximum is 100"):
        dec.next_event()  # sticky error state


def test_four_gib_prefix() -> None:
    dec = FrameDecoder()
    with pytest.raises(RemoteProtocolError, match="4294967295-byte frame") as info:
        dec.receive_data(b"\xff\xff\xff\xff" + b"x" * 10)
    assert info.value.reason is Reason.FRAME_TOO_LARGE
    assert info.value.details["size"] == 0xFFFF_FFFF


def test_oversize_after_a_good_frame_does_not_hide_it() -> None:
    dec = FrameDecoder(max_frame_size=8)
    dec.receive_data(encode_frame(b"ok") + struct.pack(">I", 9))
    assert dec.next_event() == Frame(b"ok")
    with pytest.raises(RemoteProtocolError, match="9-byte frame"):
        dec.next_event()


@pytest.mark.parametrize("cut", [1, 3, 4, 6])
def test_eof_inside_frame_is_truncated(cut: int) -> None:
    dec = FrameDecoder()
    dec.receive_data(encode_frame(b"abcd")[:cut])
    dec.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="inside a frame") as info:
        dec.next_event()
    assert info.value.reason is Reason.TRUNCATED
    assert info.value.details["received"] == cut
    with pytest.raises(RemoteProtocolError, match="inside a frame"):
        dec.next_event()


def test_data_after_eof_is_a_local_error() -> None:
    dec = FrameDecoder()
    dec.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="after EOF") as info:
        dec.receive_data(b"x")
    assert info.value.reason is Reason.INVALID_ARGUMENT
    assert dec.eof


def test_bounded_buffer() -> None:
    dec = FrameDecoder(max_frame_size=16, max_buffer_size=64)
    dec.receive_data(encode_frame(b"a" * 16) * 3)  # 60 bytes
    with pytest.raises(LocalProtocolError, match="exceed 64 bytes") as info:
        dec.receive_data(b"12345")
    assert info.value.reason is Reason.BUFFER_OVERFLOW
    assert len(drain(dec)) == 3  # draining makes room again
    dec.receive_data(encode_frame(b"b" * 16))
    assert drain(dec) == [Frame(b"b" * 16)]


def test_compaction_keeps_partial_frames() -> None:
    dec = FrameDecoder(max_frame_size=1000)
    stream = b"".join(encode_frame(bytes([i]) * i) for i in range(1, 40))
    events: list[object] = []
    for i in range(0, len(stream), 7):
        dec.receive_data(stream[i : i + 7])
        events += drain(dec)
    assert events == [Frame(bytes([i]) * i) for i in range(1, 40)]


@pytest.mark.parametrize("bad", [0, -1, 1 << 32, True, 1.5])
def test_bad_limits(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_frame_size"):
        FrameDecoder(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_frame_size"):
        encode_frame(b"", max_frame_size=bad)  # type: ignore[arg-type]


def test_bad_buffer_limit() -> None:
    with pytest.raises(ConfigError, match="max_buffer_size"):
        FrameDecoder(16, max_buffer_size=4)


def test_encode_rejects_oversize() -> None:
    assert encode_frame(b"xy") == b"\x00\x00\x00\x02xy"
    with pytest.raises(LocalProtocolError, match="exceeds the maximum of 3") as info:
        encode_frame(b"abcd", max_frame_size=3)
    assert info.value.reason is Reason.FRAME_TOO_LARGE


# --------------------------------------------------------------------------- fuzz


@settings(max_examples=400, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=1, max_value=50), max_size=40),
)
def test_fuzz_roundtrip_any_chunking(payloads: list[bytes], cuts: list[int]) -> None:
    data = b"".join(encode_frame(p, max_frame_size=300) for p in payloads)
    dec = FrameDecoder(max_frame_size=300)
    events: list[object] = []
    pos = 0
    for cut in [*cuts, len(data)]:
        if pos >= len(data):
            break
        dec.receive_data(data[pos : pos + cut])
        pos += cut
        events += drain(dec)
    dec.receive_data(b"")
    events += drain(dec)
    assert events == [*(Frame(p) for p in payloads), ConnectionClosed()]


@settings(max_examples=600, deadline=None)
@given(
    chunks=st.lists(st.binary(min_size=1, max_size=64), max_size=20),  # b"" would mean EOF
    limit=st.integers(min_value=1, max_value=64),
    eof=st.booleans(),
)
def test_fuzz_arbitrary_bytes_only_nitroguard_errors(
    chunks: list[bytes], limit: int, eof: bool
) -> None:
    """Invariant: only nitroguard errors escape, and memory stays bounded."""
    dec = FrameDecoder(max_frame_size=limit)
    reason = None
    try:
        for chunk in chunks:
            dec.receive_data(chunk)
            for ev in drain(dec):
                assert isinstance(ev, Frame | ConnectionClosed)
                if isinstance(ev, Frame):
                    assert len(ev.payload) <= limit
            assert dec.buffered <= HEADER_SIZE + limit + 64
        if eof:
            dec.receive_data(b"")
            drain(dec)
    except Error as exc:
        reason = exc.reason
    assert reason in {None, Reason.FRAME_TOO_LARGE, Reason.TRUNCATED}
