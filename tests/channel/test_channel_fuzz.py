"""Fuzzing the channel parsers and state machines: only nitroguard errors escape."""

from __future__ import annotations

import contextlib

import pytest
from channel_helpers import check_for, emulated, record_handshake, seeded_rng
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nitroguard.channel import ClientConnection, ServerConnection, ServerIdentity, _wire
from nitroguard.errors import Error

SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

NSM = emulated()
CHECK = check_for(NSM)
IDENTITY = ServerIdentity.generate()
IDENTITY.refresh(NSM)
REFERENCE = record_handshake(ClientConnection(CHECK, rng=seeded_rng(3)), ServerConnection(IDENTITY))


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


mutations = st.tuples(
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6),
    st.one_of(st.none(), st.integers(0, 20000)),
)


@pytest.mark.parametrize(
    "decoder",
    [
        _wire.decode_client_hello,
        _wire.decode_server_hello,
        _wire.decode_client_finished,
        _wire.decode_alert,
        _wire.message_type,
    ],
)
@SETTINGS
@given(data=st.binary(max_size=300))
def test_decoders_raise_only_nitroguard_errors(decoder: object, data: bytes) -> None:
    with contextlib.suppress(Error):
        decoder(data)  # type: ignore[operator]


@SETTINGS
@given(mutation=mutations, prefix=st.sampled_from([b"\x01NGCH", b"\x02", b"\x03", b""]))
def test_server_accepts_nothing_it_should_not(
    mutation: tuple[list[tuple[int, int]], int | None], prefix: bytes
) -> None:
    server = ServerConnection(IDENTITY, rng=seeded_rng(9))
    frame = prefix + _mutate(REFERENCE.client_hello, *mutation)
    try:
        server.receive_frame(frame)
        server.receive_frame(_mutate(REFERENCE.client_finished, *mutation))
    except Error:
        return
    pytest.fail("a mutated/replayed ClientFinished was accepted")


@SETTINGS
@given(mutation=mutations)
def test_client_parses_mutated_server_hello(
    mutation: tuple[list[tuple[int, int]], int | None],
) -> None:
    client = ClientConnection(CHECK, rng=seeded_rng(3))
    client.start()
    mutated = _mutate(REFERENCE.server_hello, *mutation)
    try:
        client.receive_frame(mutated)
    except Error:
        return
    # Only the untouched message may succeed (same seeds reproduce the ClientHello).
    assert mutated == REFERENCE.server_hello


@SETTINGS
@given(data=st.binary(max_size=2000))
def test_client_random_bytes(data: bytes) -> None:
    client = ClientConnection(CHECK, rng=seeded_rng(4))
    client.start()
    with pytest.raises(Error):
        client.receive_frame(data)
