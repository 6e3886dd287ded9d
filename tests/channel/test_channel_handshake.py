"""Handshake: success, tampering with every byte, replay, key swap, binding, versions."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from channel_helpers import check_for, emulated, handshake, pump, record_handshake, seeded_rng
from cryptography.hazmat.primitives.asymmetric import ed25519

from nitroguard.channel import (
    CHANNEL_USER_DATA,
    ClientConnection,
    CloseReceived,
    ConnectionState,
    DataReceived,
    HandshakeComplete,
    ServerConnection,
    ServerIdentity,
    Suite,
    _keys,
    _wire,
)
from nitroguard.channel._verify import DocumentCheck
from nitroguard.errors import (
    ChannelError,
    ConfigError,
    DecryptionError,
    Error,
    LocalProtocolError,
    RemoteProtocolError,
    VerificationError,
)
from nitroguard.nsm import EmulatedNsm


@pytest.fixture(scope="module")
def nsm() -> EmulatedNsm:
    return emulated()


@pytest.fixture(scope="module")
def check(nsm: EmulatedNsm) -> DocumentCheck:
    """The relying party's check (real Verifier, emulator root, expected PCRs); warm."""
    return check_for(nsm)


@pytest.fixture(scope="module")
def identity(nsm: EmulatedNsm) -> ServerIdentity:
    ident = ServerIdentity.generate()
    ident.refresh(nsm)
    return ident


def make(
    check: DocumentCheck, identity: ServerIdentity, seed: int = 1, **kw: object
) -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection(check, rng=seeded_rng(seed), **kw)  # type: ignore[arg-type]
    server = ServerConnection(identity, rng=seeded_rng(seed + 1000))
    return client, server


class TestSuccess:
    def test_round_trip_and_close(self, check: DocumentCheck, identity: ServerIdentity) -> None:
        client, server = make(check, identity)
        client.start()
        assert pump(client, server) == []
        (done,) = pump(server, client)
        assert isinstance(done, HandshakeComplete)
        assert done.server_public_key == identity.public_key
        assert done.document.user_data == CHANNEL_USER_DATA
        (sdone,) = pump(client, server)
        assert isinstance(sdone, HandshakeComplete)
        assert sdone.channel_binding == done.channel_binding
        assert sdone.transcript_hash == done.transcript_hash
        assert done.suite == Suite.AES_256_GCM
        client.send_data(b"ping")
        assert pump(client, server) == [DataReceived(b"ping")]
        server.send_data(b"pong")
        assert pump(server, client) == [DataReceived(b"pong")]
        client.close()
        assert pump(client, server) == [CloseReceived()]
        server.close()
        assert pump(server, client) == [CloseReceived()]
        assert client.state is server.state is ConnectionState.CLOSED
        client.receive_eof()
        server.receive_eof()

    def test_suite_preference_is_the_clients(
        self, check: DocumentCheck, identity: ServerIdentity
    ) -> None:
        client, server = make(check, identity, suites=[Suite.CHACHA20_POLY1305])
        handshake(client, server)
        assert client.handshake is not None
        assert client.handshake.suite == Suite.CHACHA20_POLY1305
        client.send_data(b"x")
        assert pump(client, server) == [DataReceived(b"x")]

    def test_sessions_are_independent(self, check: DocumentCheck, identity: ServerIdentity) -> None:
        a = make(check, identity, seed=1)
        b = make(check, identity, seed=2)
        handshake(*a)
        handshake(*b)
        assert a[0].handshake
        assert b[0].handshake
        assert a[0].handshake.channel_binding != b[0].handshake.channel_binding
        a[0].send_data(b"for a")
        with pytest.raises(DecryptionError, match="record authentication failed"):
            pump(a[0], b[1])


def _flip(data: bytes, i: int) -> bytes:
    out = bytearray(data)
    out[i] ^= 0x01
    return bytes(out)


def _attempt(
    client: ClientConnection,
    server: ServerConnection,
    ch: Callable[[bytes], bytes] = lambda b: b,
    sh: Callable[[bytes], bytes] = lambda b: b,
    cf: Callable[[bytes], bytes] = lambda b: b,
) -> bool:
    """True only if BOTH sides complete and exchange data; False on a nitroguard error."""
    try:
        client.start()
        pump(client, server, ch)
        pump(server, client, sh)
        pump(client, server, cf)
        client.send_data(b"secret")
        if pump(client, server) != [DataReceived(b"secret")]:
            return False
        server.send_data(b"reply")
        return pump(server, client) == [DataReceived(b"reply")]
    except Error:
        return False


class TestTampering:
    """Every single-byte change of any handshake message makes the handshake fail."""

    def test_reference_run_succeeds(self, check: DocumentCheck, identity: ServerIdentity) -> None:
        assert _attempt(*make(check, identity))

    def test_every_byte_of_client_hello(
        self, check: DocumentCheck, identity: ServerIdentity
    ) -> None:
        client, server = make(check, identity)
        t = record_handshake(client, server)
        for i in range(len(t.client_hello)):
            assert not _attempt(*make(check, identity), ch=lambda b, i=i: _flip(b, i)), i

    def test_every_byte_of_server_hello(
        self, check: DocumentCheck, identity: ServerIdentity
    ) -> None:
        client, server = make(check, identity)
        t = record_handshake(client, server)
        for i in range(len(t.server_hello)):
            # Same seeds, so the ClientHello (and the server's reply) are identical.
            assert not _attempt(*make(check, identity), sh=lambda b, i=i: _flip(b, i)), i

    def test_every_byte_of_client_finished(
        self, check: DocumentCheck, identity: ServerIdentity
    ) -> None:
        client, server = make(check, identity)
        t = record_handshake(client, server)
        for i in range(len(t.client_finished)):
            assert not _attempt(*make(check, identity), cf=lambda b, i=i: _flip(b, i)), i

    @pytest.mark.parametrize("which", ["ch", "sh", "cf"])
    def test_truncation_and_extension(
        self, check: DocumentCheck, identity: ServerIdentity, which: str
    ) -> None:
        for change in (lambda b: b[:-1], lambda b: b + b"\x00", lambda b: b[:1]):
            assert not _attempt(*make(check, identity), **{which: change})


class TestReplay:
    def test_recorded_server_hello_rejected_by_new_client(
        self, check: DocumentCheck, identity: ServerIdentity
    ) -> None:
        old = record_handshake(*make(check, identity, seed=1))
        client, _ = make(check, identity, seed=2)
        client.start()
        with pytest.raises(ChannelError, match="did not sign this handshake") as info:
            client.receive_frame(old.server_hello)
        assert info.value.reason == "handshake_failed"
        assert client.state is ConnectionState.ERROR

    def test_recorded_client_messages_rejected_by_server(
        self, check: DocumentCheck, identity: ServerIdentity
    ) -> None:
        old = record_handshake(*make(check, identity, seed=1))
        server = ServerConnection(identity, rng=seeded_rng(77))
        server.receive_frame(old.client_hello)  # a fresh ServerHello: fresh keys
        with pytest.raises(ChannelError, match="ClientFinished does not match"):
            server.receive_frame(old.client_finished)

    def test_replayed_records_on_new_session(
        self, check: DocumentCheck, identity: ServerIdentity
    ) -> None:
        c1, s1 = make(check, identity, seed=1)
        handshake(c1, s1)
        c1.send_data(b"transfer 100")
        (record,) = c1.data_to_send()
        c2, s2 = make(check, identity, seed=5)
        handshake(c2, s2)
        with pytest.raises(DecryptionError, match="record authentication failed"):
            s2.receive_frame(record)


class TestActiveAttacker:
    def test_key_swap_by_relay(self, check: DocumentCheck, identity: ServerIdentity) -> None:
        """A parent replacing the server's X25519 share with its own is detected."""
        mitm = bytes(range(1, 33))

        def swap(sh: bytes) -> bytes:
            hello = _wire.decode_server_hello(sh)
            start = 1 + 2 + 2 + 32
            assert sh[start : start + 32] == hello.share
            return sh[:start] + mitm + sh[start + 32 :]

        client, server = make(check, identity)
        client.start()
        pump(client, server)
        with pytest.raises(ChannelError, match="did not sign this handshake"):
            pump(server, client, swap)

    def test_parent_signs_with_own_key(
        self, check: DocumentCheck, identity: ServerIdentity
    ) -> None:
        """The parent re-signs the transcript with a key it owns: binding fails."""
        rogue = ServerIdentity.generate()
        rogue.document = identity.document  # it can only relay the enclave's document
        client, _server = make(check, identity)
        rogue_server = ServerConnection(rogue)
        client.start()
        pump(client, rogue_server)
        with pytest.raises(ChannelError, match="did not sign"):
            pump(rogue_server, client)

    def test_suite_downgrade_detected(self, check: DocumentCheck, identity: ServerIdentity) -> None:
        """Stripping AES-256-GCM from the offer (forcing ChaCha) breaks the signature."""

        def strip(ch: bytes) -> bytes:
            hello = _wire.decode_client_hello(ch)
            return _wire.encode_client_hello(
                _wire.ClientHello(
                    hello.versions, (Suite.CHACHA20_POLY1305,), hello.random, hello.share
                )
            )

        client, server = make(check, identity)
        client.start()
        pump(client, server, strip)
        with pytest.raises(ChannelError, match="did not sign"):
            pump(server, client)

    def test_version_not_offered(self, check: DocumentCheck, identity: ServerIdentity) -> None:
        client, server = make(check, identity)
        client.start()
        pump(client, server)
        (sh,) = server.data_to_send()
        forged = sh[:1] + b"\x00\x02" + sh[3:]
        with pytest.raises(ChannelError, match="version 2, not offered") as info:
            client.receive_frame(forged)
        assert info.value.reason == "version_mismatch"

    def test_unknown_version_only(self, identity: ServerIdentity) -> None:
        hello = _wire.ClientHello((7, 8), (Suite.AES_256_GCM,), bytes(32), bytes(range(32)))
        server = ServerConnection(identity)
        with pytest.raises(ChannelError, match="no common version") as info:
            server.receive_frame(_wire.encode_client_hello(hello))
        assert info.value.reason == "version_mismatch"
        assert server.data_to_send() == [_wire.encode_alert(_wire.AlertCode.VERSION_MISMATCH)]

    def test_alert_reported_to_client(self, check: DocumentCheck, identity: ServerIdentity) -> None:
        client, _ = make(check, identity)
        client.start()
        with pytest.raises(ChannelError, match="version_mismatch") as info:
            client.receive_frame(_wire.encode_alert(_wire.AlertCode.VERSION_MISMATCH))
        assert info.value.reason == "version_mismatch"

    def test_unknown_suite_only(self, identity: ServerIdentity) -> None:
        hello = _wire.ClientHello((1,), (0x7777,), bytes(32), bytes(range(32)))
        server = ServerConnection(identity)
        with pytest.raises(ChannelError, match="no common suite"):
            server.receive_frame(_wire.encode_client_hello(hello))

    def test_low_order_share(self, identity: ServerIdentity) -> None:
        hello = _wire.ClientHello((1,), (Suite.AES_256_GCM,), bytes(32), bytes(32))
        server = ServerConnection(identity)
        with pytest.raises(ChannelError, match="low-order point"):
            server.receive_frame(_wire.encode_client_hello(hello))

    def test_data_before_finished(self, identity: ServerIdentity) -> None:
        client = ClientConnection(lambda doc: pytest.fail("not reached"))
        client.start()
        server = ServerConnection(identity)
        pump(client, server)
        with pytest.raises(RemoteProtocolError, match="expected ClientFinished"):
            server.receive_frame(b"\x17" + bytes(40))


class TestBinding:
    def _doc(self, nsm: EmulatedNsm, **fields: bytes | None) -> ServerIdentity:
        ident = ServerIdentity.generate()
        ident.document = nsm.get_attestation(**fields)
        return ident

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"user_data": b"something else"}, "user_data is not the channel label"),
            ({"user_data": CHANNEL_USER_DATA}, "has no public_key"),
            ({"user_data": CHANNEL_USER_DATA, "public_key": b"\x30\x00"}, "not an Ed25519"),
        ],
    )
    def test_document_must_bind_an_ed25519_key(
        self, nsm: EmulatedNsm, check: DocumentCheck, fields: dict[str, bytes], message: str
    ) -> None:
        server = ServerConnection(self._doc(nsm, **fields))
        client = ClientConnection(check)
        client.start()
        pump(client, server)
        with pytest.raises(ChannelError, match=message) as info:
            pump(server, client)
        assert info.value.reason == "key_binding_mismatch"

    def test_document_for_another_key(self, nsm: EmulatedNsm, check: DocumentCheck) -> None:
        """A valid document whose key is not the signer's (e.g. another enclave's)."""
        other = ServerIdentity.generate()
        ident = self._doc(nsm, user_data=CHANNEL_USER_DATA, public_key=other.public_key)
        client, server = ClientConnection(check), ServerConnection(ident)
        client.start()
        pump(client, server)
        with pytest.raises(ChannelError, match="did not sign"):
            pump(server, client)

    def test_verifier_rejection_propagates(self, identity: ServerIdentity) -> None:
        def refuse(doc: bytes) -> object:
            raise VerificationError("policy says no")

        client = ClientConnection(refuse)  # type: ignore[arg-type]
        server = ServerConnection(identity)
        client.start()
        pump(client, server)
        with pytest.raises(VerificationError, match="policy says no"):
            pump(server, client)
        assert client.state is ConnectionState.ERROR
        with pytest.raises(LocalProtocolError, match="already failed"):
            client.receive_frame(b"\x02")

    def test_nonce_endpoint_attests_only_own_key(
        self, nsm: EmulatedNsm, check: DocumentCheck
    ) -> None:
        ident = ServerIdentity.generate()
        doc = check(ident.attest_nonce(nsm, b"n" * 32))
        assert doc.public_key == ident.public_key
        assert doc.user_data == CHANNEL_USER_DATA
        assert doc.nonce == b"n" * 32
        for bad in (b"short", b"x" * 513):
            with pytest.raises(ChannelError, match=r"nonce must be 16\.\.512 bytes"):
                ident.attest_nonce(nsm, bad)

    def test_signature_context(self) -> None:
        key = ed25519.Ed25519PrivateKey.generate()
        ident = ServerIdentity(key)
        th = bytes(32)
        key.public_key().verify(ident.sign(_keys.signed_message(th)), _keys.SIGNATURE_CONTEXT + th)


class TestMisuse:
    def test_state_errors(self, check: DocumentCheck, identity: ServerIdentity) -> None:
        client, server = make(check, identity)
        with pytest.raises(LocalProtocolError, match="not allowed in state idle"):
            client.send_data(b"x")
        with pytest.raises(LocalProtocolError, match="call start"):
            client.receive_frame(b"\x02")
        assert client.state is ConnectionState.ERROR  # misuse poisons the connection too
        client, server = make(check, identity)
        client.start()
        with pytest.raises(LocalProtocolError, match="not allowed"):
            client.start()
        with pytest.raises(LocalProtocolError, match="not allowed"):
            server.close()
        with pytest.raises(ConfigError, match="no attestation document"):
            ServerConnection(ServerIdentity.generate())
        with pytest.raises(ConfigError, match="versions must be"):
            ClientConnection(check, versions=[9])

    def test_eof_during_handshake(self, check: DocumentCheck, identity: ServerIdentity) -> None:
        client, _ = make(check, identity)
        client.start()
        with pytest.raises(RemoteProtocolError, match="during the handshake") as info:
            client.receive_eof()
        assert info.value.reason == "truncated"

    def test_eof_without_close_is_truncation(
        self, check: DocumentCheck, identity: ServerIdentity
    ) -> None:
        client, server = make(check, identity)
        handshake(client, server)
        server.send_data(b"half of the answer")
        pump(server, client)
        with pytest.raises(DecryptionError, match="record authentication failed"):
            client.receive_eof()
