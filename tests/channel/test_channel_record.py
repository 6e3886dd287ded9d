"""Record layer: round trips, rekeying, and every inbound failure is one opaque error."""

from __future__ import annotations

import os

import pytest

from nitroguard.channel import _wire
from nitroguard.channel._record import RecordLimits, RecordReceiver, RecordSender
from nitroguard.channel._wire import InnerType, Suite
from nitroguard.errors import ConfigError, DecryptionError, LocalProtocolError

SECRET = bytes(range(32))


def pair(
    suite: Suite = Suite.AES_256_GCM, limits: RecordLimits | None = None
) -> tuple[RecordSender, RecordReceiver]:
    return RecordSender(suite, SECRET, limits), RecordReceiver(suite, SECRET, limits)


def opaque(receiver: RecordReceiver, frame: bytes) -> None:
    with pytest.raises(DecryptionError, match="record authentication failed") as info:
        receiver.open(frame)
    assert info.value.reason == "decryption_failed"
    assert info.value.details == {}


class TestRoundTrip:
    @pytest.mark.parametrize("suite", list(Suite))
    def test_data_and_close(self, suite: Suite) -> None:
        sender, receiver = pair(suite)
        payload = os.urandom(200_000)
        frames = sender.seal_data(payload)
        assert len(frames) == 4  # 64 KiB records
        got = b"".join(receiver.open(f)[1] for f in frames)
        assert got == payload
        (close,) = sender.seal_close()
        assert receiver.open(close) == (InnerType.CLOSE, b"")
        assert receiver.closed
        receiver.eof()  # clean end: no error

    def test_records_never_exceed_limit(self) -> None:
        sender, _ = pair()
        frames = sender.seal_data(b"x" * (3 * _wire.MAX_PLAINTEXT + 1))
        assert [len(f) for f in frames] == [1 + _wire.MAX_CIPHERTEXT] * 3 + [1 + 1 + 1 + 16]

    def test_directions_use_distinct_keys(self) -> None:
        a = RecordSender(Suite.AES_256_GCM, SECRET)
        b = RecordSender(Suite.AES_256_GCM, bytes(32))
        assert a.seal_data(b"same") != b.seal_data(b"same")


class TestRejections:
    def test_reordered(self) -> None:
        sender, receiver = pair()
        first, second = sender.seal_data(b"a" * 10) + sender.seal_data(b"b" * 10)
        opaque(receiver, second)
        opaque(receiver, first)  # stays failed

    def test_duplicated(self) -> None:
        sender, receiver = pair()
        (frame,) = sender.seal_data(b"hello")
        receiver.open(frame)
        opaque(receiver, frame)

    def test_dropped_record(self) -> None:
        sender, receiver = pair()
        frames = [sender.seal_data(bytes([i]))[0] for i in range(3)]
        receiver.open(frames[0])
        opaque(receiver, frames[2])

    def test_truncated_stream(self) -> None:
        sender, receiver = pair()
        receiver.open(sender.seal_data(b"partial")[0])
        with pytest.raises(DecryptionError, match="record authentication failed"):
            receiver.eof()

    def test_truncated_record(self) -> None:
        sender, receiver = pair()
        (frame,) = sender.seal_data(b"hello world")
        opaque(receiver, frame[:-1])

    @pytest.mark.parametrize("size", [0, 1, 17])
    def test_too_short(self, size: int) -> None:
        _, receiver = pair()
        opaque(receiver, bytes([_wire.MessageType.RECORD]) + bytes(size))

    def test_oversized(self) -> None:
        _, receiver = pair()
        opaque(receiver, bytes([_wire.MessageType.RECORD]) + bytes(_wire.MAX_CIPHERTEXT + 1))

    def test_oversized_plaintext_with_valid_tag(self) -> None:
        # A peer with a larger max_plaintext: authentic but over this receiver's limit.
        big = RecordSender(Suite.AES_256_GCM, SECRET, RecordLimits(max_plaintext=1024))
        receiver = RecordReceiver(Suite.AES_256_GCM, SECRET, RecordLimits(max_plaintext=512))
        opaque(receiver, big.seal_data(b"x" * 1000)[0])

    def test_every_bit_flip(self) -> None:
        sender, _ = pair()
        (frame,) = sender.seal_data(b"attack at dawn")
        for i in range(len(frame)):
            for bit in (0x01, 0x80):
                tampered = bytearray(frame)
                tampered[i] ^= bit
                _, receiver = pair()
                opaque(receiver, bytes(tampered))

    def test_wrong_message_type(self) -> None:
        sender, receiver = pair()
        (frame,) = sender.seal_data(b"x")
        opaque(receiver, bytes([_wire.MessageType.ALERT]) + frame[1:])
        _, receiver = pair()
        opaque(receiver, b"")

    def test_data_after_close(self) -> None:
        sender, receiver = pair()
        (close,) = sender.seal_close()
        receiver.open(close)
        # An authentic record with the next sequence number, sent after CLOSE.
        twin = RecordSender(Suite.AES_256_GCM, SECRET)
        twin.seal_data(b"z")
        opaque(receiver, twin.seal_data(b"after")[0])

    def test_cross_suite(self) -> None:
        sender = RecordSender(Suite.AES_256_GCM, SECRET)
        receiver = RecordReceiver(Suite.CHACHA20_POLY1305, SECRET)
        opaque(receiver, sender.seal_data(b"x")[0])

    def test_send_after_close(self) -> None:
        sender, _ = pair()
        sender.seal_close()
        with pytest.raises(LocalProtocolError, match="after close"):
            sender.seal_data(b"x")
        with pytest.raises(LocalProtocolError, match="already closed"):
            sender.seal_close()


class TestRekey:
    def test_record_limit_triggers_key_update(self) -> None:
        limits = RecordLimits(max_records=4)
        sender, receiver = pair(limits=limits)
        frames = []
        for i in range(10):
            frames.extend(sender.seal_data(bytes([i])))
        assert len(frames) == 13  # 10 data + 3 key updates
        assert sender.generation == 3
        data = [c for kind, c in map(receiver.open, frames) if kind is InnerType.DATA]
        assert data == [bytes([i]) for i in range(10)]
        assert receiver.generation == 3

    def test_byte_limit_triggers_key_update(self) -> None:
        limits = RecordLimits(max_bytes=100, max_plaintext=64)
        sender, receiver = pair(limits=limits)
        frames = sender.seal_data(b"y" * 300)
        assert sender.generation >= 3
        assert b"".join(receiver.open(f)[1] for f in frames) == b"y" * 300

    def test_receiver_enforces_record_limit(self) -> None:
        # A sender ignoring the limit (bigger configured limit) is cut off.
        lax = RecordSender(Suite.AES_256_GCM, SECRET, RecordLimits(max_records=100))
        receiver = RecordReceiver(Suite.AES_256_GCM, SECRET, RecordLimits(max_records=4))
        frames = [lax.seal_data(b"x")[0] for _ in range(5)]
        for f in frames[:4]:
            receiver.open(f)
        opaque(receiver, frames[4])

    def test_receiver_enforces_byte_limit(self) -> None:
        lax = RecordSender(Suite.AES_256_GCM, SECRET, RecordLimits(max_bytes=1000))
        receiver = RecordReceiver(Suite.AES_256_GCM, SECRET, RecordLimits(max_bytes=10))
        receiver.open(lax.seal_data(b"x" * 10)[0])
        opaque(receiver, lax.seal_data(b"x")[0])

    def test_old_key_rejected_after_update(self) -> None:
        sender, receiver = pair()
        receiver.open(sender.seal_key_update())
        # seq 0 again, but on the old key: must not be accepted after the update.
        opaque(receiver, RecordSender(Suite.AES_256_GCM, SECRET).seal_data(b"old")[0])

    def test_close_at_limit(self) -> None:
        limits = RecordLimits(max_records=2)
        sender, receiver = pair(limits=limits)
        frames = sender.seal_data(b"a") + sender.seal_close()
        assert [receiver.open(f)[0] for f in frames] == [
            InnerType.DATA,
            InnerType.KEY_UPDATE,
            InnerType.CLOSE,
        ]

    def test_invalid_limits(self) -> None:
        with pytest.raises(ConfigError, match="max_records"):
            RecordLimits(max_records=1)
        with pytest.raises(ConfigError, match="max_plaintext"):
            RecordLimits(max_plaintext=_wire.MAX_PLAINTEXT + 1)
