"""Smaller units: DocumentCheck's cache, app message codec, message buffer."""

from __future__ import annotations

import datetime as dt

import pytest
from channel_helpers import check_for, emulated

from nitroguard.app._protocol import (
    AppError,
    decode_request,
    decode_response,
    encode_error,
    encode_request,
    encode_result,
)
from nitroguard.attestation import Verifier, policy
from nitroguard.channel import CHANNEL_USER_DATA, ServerIdentity
from nitroguard.channel._messages import MessageBuffer, encode_message
from nitroguard.channel._verify import DocumentCheck
from nitroguard.errors import (
    ChannelError,
    ConfigError,
    PolicyError,
    Reason,
    RemoteProtocolError,
    VerificationError,
)
from nitroguard.hazmat import cbor


class TestDocumentCheck:
    def _doc(self) -> tuple[DocumentCheck, bytes, list[dt.datetime]]:
        nsm = emulated()
        now = [dt.datetime.now(dt.UTC)]
        check = check_for(nsm, clock=lambda: now[0], max_age=300, cache_size=1)
        ident = ServerIdentity.generate()
        return check, ident.refresh(nsm), now

    def test_cache_hit_rechecks_max_age(self) -> None:
        check, doc, now = self._doc()
        assert check(doc).user_data == CHANNEL_USER_DATA
        assert check(doc).user_data == CHANNEL_USER_DATA
        assert check.hits == 1
        now[0] += dt.timedelta(seconds=400)
        with pytest.raises(PolicyError, match="old") as info:
            check(doc)
        assert info.value.reason == Reason.STALE_DOCUMENT

    def test_cache_hit_rechecks_certificate_validity(self) -> None:
        check, doc, now = self._doc()
        check(doc)
        now[0] += dt.timedelta(days=3)  # leaf (3 h) long expired; MaxAge would fail later
        with pytest.raises(VerificationError, match="not valid now") as info:
            check(doc)
        assert info.value.reason == Reason.EXPIRED_CERTIFICATE

    def test_cache_hit_rechecks_policy_and_eviction(self) -> None:
        nsm = emulated()
        check = check_for(nsm, cache_size=1)
        a = ServerIdentity.generate().refresh(nsm)
        b = ServerIdentity.generate().refresh(nsm)
        check(a)
        check(b)  # evicts a
        check(a)
        assert check.hits == 0
        strict = DocumentCheck(
            policy.PCRs({0: bytes(48)}), verifier=check.verifier, allow_debug=True
        )
        with pytest.raises(PolicyError, match="PCR0"):
            strict(a)

    def test_arguments(self) -> None:
        nsm = emulated()
        root = nsm.pki.root_certificate
        with pytest.raises(ConfigError, match="either roots= or verifier="):
            DocumentCheck(policy.NotDebug(), roots=[root], verifier=Verifier([root]))
        with pytest.raises(ConfigError, match="cache_size"):
            DocumentCheck(policy.NotDebug(), roots=[root], cache_size=-1)

    def test_no_cache(self) -> None:
        nsm = emulated()
        check = check_for(nsm, cache_size=0)
        doc = ServerIdentity.generate().refresh(nsm)
        check(doc)
        check(doc)
        assert check.hits == 0


class TestAppProtocol:
    def test_round_trip(self) -> None:
        op, args = decode_request(encode_request("put", {"k": b"v"}), max_size=1024)
        assert (op, args) == ("put", {"k": b"v"})
        assert decode_response(encode_result([1, "x"]), max_size=1024) == [1, "x"]
        error = ChannelError("nope", Reason.RATE_LIMITED, internal="never sent")
        with pytest.raises(AppError, match="nope") as info:
            decode_response(encode_error(error), max_size=1024)
        assert info.value.reason == Reason.RATE_LIMITED
        assert b"never sent" not in encode_error(error)

    def test_unknown_remote_reason(self) -> None:
        message = cbor.dumps({"ok": False, "error": {"reason": "martian", "message": "?"}})
        with pytest.raises(AppError, match=r"\?") as info:
            decode_response(message, max_size=1024)
        assert info.value.reason == Reason.INTERNAL_ERROR
        assert info.value.details["remote_reason"] == "martian"

    @pytest.mark.parametrize(
        ("obj", "message"),
        [
            ([1, 2], "not a CBOR map"),
            ({"op": 1}, "op must be text"),
            ({"op": "x", "args": []}, "op must be text and args a map"),
            ({"op": "x", "args": {1: 2}}, "argument names must be text"),
            ({"op": "x", "extra": 1}, "unknown keys"),
        ],
    )
    def test_bad_requests(self, obj: object, message: str) -> None:
        with pytest.raises(RemoteProtocolError, match=message):
            decode_request(cbor.dumps(obj), max_size=1024)

    def test_bad_cbor_and_size(self) -> None:
        with pytest.raises(RemoteProtocolError, match="request"):
            decode_request(b"\xff\xff", max_size=1024)
        with pytest.raises(RemoteProtocolError, match="request") as info:
            decode_request(encode_request("x", {"v": b"a" * 2000}), max_size=1024)
        assert info.value.reason == Reason.TOO_LARGE

    @pytest.mark.parametrize(
        "obj", [{"ok": True}, {"ok": False, "error": "x"}, {"ok": "yes", "result": 1}]
    )
    def test_bad_responses(self, obj: object) -> None:
        with pytest.raises(RemoteProtocolError, match="neither a result nor an error"):
            decode_response(cbor.dumps(obj), max_size=1024)


class TestMessageBuffer:
    def test_split_and_joined(self) -> None:
        buf = MessageBuffer(max_message=10)
        data = encode_message(b"abc") + encode_message(b"") + encode_message(b"0123456789")
        for i in range(len(data)):
            buf.feed(data[i : i + 1])
        assert [buf.next_message(), buf.next_message(), buf.next_message()] == [
            b"abc",
            b"",
            b"0123456789",
        ]
        assert buf.next_message() is None
        assert buf.pending == 0

    def test_oversized_length_rejected_before_buffering(self) -> None:
        buf = MessageBuffer(max_message=10)
        buf.feed(b"\xff\xff\xff\xff")
        with pytest.raises(RemoteProtocolError, match="exceeds the 10-byte limit"):
            buf.next_message()
