"""Issue 10: the enclave knows who is calling, and its limits hold across connections.

Each attack test here fails on the code before issue 10 (anonymous vault, per-connection
attest budget only, no item limit, no global buffer budget, bare channel label).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import logging
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from channel_helpers import GOOD_PCRS, aio, check_for, emulated, handshake
from hypothesis import given, settings
from hypothesis import strategies as st

from nitroguard._commands._demo.vault import build_vault
from nitroguard.app import (
    ANYONE,
    AUTHENTICATED,
    AppConfig,
    AppError,
    AsyncAppClient,
    CallContext,
    ClientKey,
    EnclaveApp,
    Mode,
    TrustedKeys,
)
from nitroguard.app._limits import LogLimiter
from nitroguard.app._protocol import decode_request, decode_response, encode_request
from nitroguard.attestation import policy
from nitroguard.channel import (
    ClientConnection,
    KeyAlgorithm,
    ServerConnection,
    ServerIdentity,
    channel_user_data,
)
from nitroguard.channel._aio import connect
from nitroguard.channel._auth import (
    ClientAuth,
    decode_client_auth,
    encode_client_auth,
    public_key_line,
)
from nitroguard.channel._messages import BufferBudget, MessageBuffer
from nitroguard.channel._verify import DocumentCheck, pinned_image_pcrs
from nitroguard.channel._wire import AlertCode, encode_alert
from nitroguard.errors import (
    ChannelError,
    ConfigError,
    DecodeError,
    DecryptionError,
    Error,
    PolicyError,
    RemoteProtocolError,
)
from nitroguard.hazmat import cbor

ALICE = ClientKey.generate()
BOB = ClientKey.generate(KeyAlgorithm.ECDSA_P384_SHA384)
USERS = TrustedKeys({"alice": ALICE.public_key, "bob": BOB.public_key})


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def dev_config(tmp_path: Path, **kw: Any) -> AppConfig:
    (tmp_path / "random").touch()
    return AppConfig(
        mode=Mode.DEVELOPMENT,
        listen="tcp://127.0.0.1:0",
        random_device=str(tmp_path / "random"),
        **kw,
    )


async def client_for(running: Any, nsm: Any, service: str = "vault") -> AsyncAppClient:
    check = check_for(nsm, service=service)
    return AsyncAppClient(await connect(running.address, check=check), check)


# --- 1. client authentication ------------------------------------------------------------


class TestParentAsClient:
    @aio
    async def test_anonymous_caller_is_refused_everything_but_attest(self, tmp_path: Path) -> None:
        nsm = emulated()
        running = await build_vault(trusted_keys=USERS).start(dev_config(tmp_path), nsm=nsm)
        try:
            alice = await client_for(running, nsm)
            await alice.authenticate(ALICE)
            await alice.call("put", key="db-password", value=b"hunter2")
            await alice.aclose()
            # The parent runs the real client: the handshake passes (genuine enclave).
            parent = await client_for(running, nsm)
            for op, args in (("get", {"key": "db-password"}), ("keys", {})):
                with pytest.raises(AppError, match="requires an authenticated caller") as info:
                    await parent.call(op, **args)
                assert info.value.reason == "unauthenticated"
            # attest stays open to anonymous callers.
            assert (await parent.attest()).public_key == running.identity.public_key
            await parent.aclose()
        finally:
            await running.close()

    @aio
    async def test_parent_with_its_own_key_is_untrusted(self, tmp_path: Path) -> None:
        nsm = emulated()
        running = await build_vault(trusted_keys=USERS).start(dev_config(tmp_path), nsm=nsm)
        try:
            parent = await client_for(running, nsm)
            with pytest.raises(AppError, match="not trusted") as info:
                await parent.authenticate(ClientKey.generate())
            assert info.value.reason == "untrusted_client"
            # One attempt per connection: the enclave closed it after the refusal.
            assert await parent.channel.recv_message() is None
            await parent.aclose()
        finally:
            await running.close()

    @aio
    async def test_namespaces_are_per_principal(self, tmp_path: Path) -> None:
        nsm = emulated()
        running = await build_vault(trusted_keys=USERS).start(dev_config(tmp_path), nsm=nsm)
        try:
            alice = await client_for(running, nsm)
            assert await alice.authenticate(ALICE) == "alice"
            await alice.call("put", key="k", value=b"alice's")
            bob = await client_for(running, nsm)
            assert await bob.authenticate(BOB) == "bob"  # ECDSA P-384
            assert await bob.call("get", key="k") is None
            assert await bob.call("keys") == []
            await bob.call("put", key="k", value=b"bob's")
            assert await alice.call("get", key="k") == b"alice's"
            with pytest.raises(AppError, match="already authenticated"):
                await bob.authenticate(BOB)
            await alice.aclose()
            await bob.channel.abort()
        finally:
            await running.close()


class TestReplay:
    @aio
    async def test_auth_from_another_session_is_bad_binding(self, tmp_path: Path) -> None:
        nsm = emulated()
        running = await build_vault(trusted_keys=USERS).start(dev_config(tmp_path), nsm=nsm)
        try:
            alice = await client_for(running, nsm)
            recorded = ALICE.auth_message(alice.channel.handshake.channel_binding)
            assert await alice.authenticate_with("key", recorded) == "alice"
            parent = await client_for(running, nsm)
            with pytest.raises(AppError, match="another session") as info:
                await parent.authenticate_with("key", recorded)
            assert info.value.reason == "bad_binding"
            # Claiming the new binding with the old signature fails the signature.
            auth = decode_client_auth(recorded)
            parent2 = await client_for(running, nsm)
            forged = encode_client_auth(
                ClientAuth(
                    auth.alg,
                    parent2.channel.handshake.channel_binding,
                    auth.public_key,
                    auth.signature,
                )
            )
            with pytest.raises(AppError, match="signature is invalid") as info:
                await parent2.authenticate_with("key", forged)
            assert info.value.reason == "bad_signature"
            await alice.aclose()
            await parent.aclose()
            await parent2.aclose()
        finally:
            await running.close()

    def test_sans_io_verify(self) -> None:
        binding = hashlib.sha256(b"session").digest()
        message = BOB.auth_message(binding)
        assert USERS.verify(message, binding) == "bob"
        with pytest.raises(ChannelError) as info:
            USERS.verify(message, hashlib.sha256(b"other").digest())
        assert info.value.reason == "bad_binding"
        wrong_alg = decode_client_auth(message)
        swapped = encode_client_auth(
            ClientAuth(KeyAlgorithm.ED25519, binding, wrong_alg.public_key, wrong_alg.signature)
        )
        with pytest.raises(ChannelError, match="algorithm") as info:
            USERS.verify(swapped, binding)
        assert info.value.reason == "bad_signature"

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=200))
    def test_decoder_raises_only_our_errors(self, data: bytes) -> None:
        try:
            decode_client_auth(b"NGCA\x01" + data)
            decode_client_auth(data)
        except RemoteProtocolError:
            pass

    def test_every_truncation_is_refused(self) -> None:
        message = ALICE.auth_message(b"\x01" * 32)
        assert decode_client_auth(message).public_key == ALICE.public_key
        for cut in range(len(message)):
            with pytest.raises(RemoteProtocolError):
                decode_client_auth(message[:cut])
        with pytest.raises(RemoteProtocolError, match="trailing"):
            decode_client_auth(message + b"\x00")
        for bad in (b"XGCA" + message[4:], message[:4] + b"\x02" + message[5:]):
            with pytest.raises(RemoteProtocolError):
                decode_client_auth(bad)


class TestAuthorization:
    @aio
    async def test_allow_lists_hook_and_strikes(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        secret = b"shared with the token issuer"
        app = EnclaveApp("signer", trusted_keys=USERS)

        @app.operation("whoami", allow=AUTHENTICATED)
        async def whoami(args: dict[str, Any], ctx: CallContext) -> Any:
            assert ctx.principal is not None
            assert len(ctx.channel_binding) == 32
            return [ctx.principal.name, ctx.principal.scheme, ctx.operation]

        @app.operation("admin", allow={"alice"})
        async def admin(args: dict[str, Any], ctx: CallContext) -> str:
            return "ok"

        @app.operation("bob-only", allow=lambda p: p.name == "bob")
        async def bob_only(args: dict[str, Any], ctx: CallContext) -> str:
            return "ok"

        @app.operation("forgotten")
        async def forgotten(args: dict[str, Any], ctx: CallContext) -> str:
            return "never"

        @app.operation("status", allow=ANYONE)
        async def status(args: dict[str, Any], ctx: CallContext) -> Any:
            return ctx.principal

        @app.authenticator("token")
        async def token(scheme: str, credential: bytes, ctx: CallContext) -> str:
            # A channel-bound token: HMAC(secret, binding), so a copy is useless elsewhere.
            name, _, mac = credential.partition(b":")
            good = hmac.new(secret, name + ctx.channel_binding, "sha256").digest()
            if not hmac.compare_digest(mac, good):
                raise ChannelError("bad token", ChannelError.default_reason)
            return name.decode()

        @app.authenticator("buggy")
        async def buggy(scheme: str, credential: bytes, ctx: CallContext) -> str:
            raise ValueError("choked on a hostile credential")

        nsm = emulated()
        caplog.set_level(logging.INFO)
        running = await app.start(dev_config(tmp_path, max_strikes=3), nsm=nsm)
        try:
            anon = await client_for(running, nsm, "signer")
            assert await anon.call("status") is None
            alice = await client_for(running, nsm, "signer")
            await alice.authenticate(ALICE)
            assert await alice.call("whoami") == ["alice", "key", "whoami"]
            assert await alice.call("admin") == "ok"
            with pytest.raises(AppError) as info:
                await alice.call("bob-only")
            assert info.value.reason == "not_authorized"
            with pytest.raises(AppError) as info:
                await alice.call("forgotten")  # no allow=: nobody (deny by default)
            assert info.value.reason == "not_authorized"
            with pytest.raises(AppError):
                await alice.call("forgotten")  # third strike: answered, then closed
            assert await alice.channel.recv_message() is None
            await alice.aclose()

            carol = await client_for(running, nsm, "signer")
            binding = carol.channel.handshake.channel_binding
            mac = hmac.new(secret, b"carol" + binding, "sha256").digest()
            # Hook principals are scoped by scheme: "token:carol", never a key's name.
            assert await carol.authenticate_with("token", b"carol:" + mac) == "token:carol"
            assert await carol.call("whoami") == ["token:carol", "token", "whoami"]
            with pytest.raises(AppError) as info:
                await carol.call("admin")
            assert info.value.reason == "not_authorized"
            await carol.aclose()

            replay = await client_for(running, nsm, "signer")
            with pytest.raises(AppError, match="bad token"):
                await replay.authenticate_with("token", b"carol:" + mac)
            await replay.aclose()
            unknown = await client_for(running, nsm, "signer")
            with pytest.raises(AppError, match="unknown authentication scheme"):
                await unknown.authenticate_with("kerberos", b"x")
            await unknown.aclose()

            # A hook that accepts self-chosen names cannot make anyone "alice" (the
            # trusted key's principal): the name it returns is token-scoped.
            impostor = await client_for(running, nsm, "signer")
            binding = impostor.channel.handshake.channel_binding
            mac = hmac.new(secret, b"alice" + binding, "sha256").digest()
            assert await impostor.authenticate_with("token", b"alice:" + mac) == "token:alice"
            with pytest.raises(AppError) as info:
                await impostor.call("admin")  # allow={"alice"}
            assert info.value.reason == "not_authorized"
            await impostor.aclose()
            for bad_name in (b"a b", b"", b"x" * 129):
                odd = await client_for(running, nsm, "signer")
                binding = odd.channel.handshake.channel_binding
                mac = hmac.new(secret, bad_name + binding, "sha256").digest()
                with pytest.raises(AppError) as info:
                    await odd.authenticate_with("token", bad_name + b":" + mac)
                assert info.value.reason == "unauthenticated"
                await odd.aclose()
            # A hook's own bug refuses the caller; no traceback per connection in the log.
            for _ in range(3):
                choke = await client_for(running, nsm, "signer")
                with pytest.raises(AppError) as info:
                    await choke.authenticate_with("buggy", b"\xff")
                assert info.value.reason == "unauthenticated"
                await choke.aclose()
            assert "Traceback" not in caplog.text
            assert "handler raised" not in caplog.text
            await anon.aclose()
        finally:
            await running.close()
        assert "operation 'forgotten' has no allow=" in caplog.text
        assert "operation 'status' is open to anonymous callers" in caplog.text
        assert "connection closed after 3 refusals" in caplog.text

    def test_registration_errors(self) -> None:
        app = EnclaveApp("x")
        with pytest.raises(ConfigError, match="allow="):
            app.operation("op", allow="everyone")
        with pytest.raises(ConfigError, match="built in"):
            app.authenticator("key")
        for scheme in ("", "Token", "a:b", "x" * 33):
            with pytest.raises(ConfigError, match="a-z0-9_-"):
                app.authenticator(scheme)
        with pytest.raises(ConfigError, match="service name"):
            EnclaveApp("")


class TestTrustedKeys:
    def test_file_round_trip(self, tmp_path: Path) -> None:
        path = tmp_path / "clients"
        path.write_text(
            "# baked into the image (PCR2)\n"
            + public_key_line("alice", ALICE)
            + "\n\n"
            + public_key_line("bob", BOB)
            + "  # P-384\n"
        )
        keys = TrustedKeys.from_file(path)
        assert list(keys) == ["alice", "bob"]
        assert len(keys) == 2
        assert dict(keys.items())["alice"] == ALICE.public_key
        pem = ClientKey.from_pem(ALICE.private_pem())
        assert pem.public_key == ALICE.public_key
        # The other accepted forms: PEM text and a `cryptography` key object.
        from cryptography.hazmat.primitives import serialization

        bob_key = serialization.load_der_public_key(BOB.public_key)
        bob_pem = bob_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        for form in (bob_pem, bob_key):
            again = TrustedKeys({"bob": form})  # type: ignore[dict-item]
            assert again.verify(BOB.auth_message(b"\x07" * 32), b"\x07" * 32) == "bob"

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("alice", "expected 'name base64-key'"),
            ("alice !!!", "not a public key"),
            (
                f"a {base64.b64encode(ALICE.public_key).decode()}\n"
                f"a {base64.b64encode(BOB.public_key).decode()}",
                "listed twice",
            ),
            (
                f"a {base64.b64encode(ALICE.public_key).decode()}\n"
                f"b {base64.b64encode(ALICE.public_key).decode()}",
                "another principal",
            ),
            (f"bad/name {base64.b64encode(ALICE.public_key).decode()}", "bad principal name"),
        ],
    )
    def test_bad_files(self, text: str, message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            TrustedKeys.parse(text)

    def test_other_key_types_are_refused(self, tmp_path: Path) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        with pytest.raises(ConfigError, match="P-384"):
            ClientKey(ec.generate_private_key(ec.SECP256R1()))
        with pytest.raises(ConfigError, match="cannot load"):
            ClientKey.from_pem(b"not pem")
        with pytest.raises(ConfigError, match="cannot read"):
            TrustedKeys.from_file(tmp_path / "missing")

    @aio
    async def test_keys_from_measured_config_file(self, tmp_path: Path) -> None:
        path = tmp_path / "clients"
        path.write_text(public_key_line("alice", ALICE) + "\n")
        nsm = emulated()
        config = dev_config(tmp_path, client_keys=str(path))
        assert AppConfig.from_env({"NITROGUARD_CLIENT_KEYS": str(path)}).client_keys == str(path)
        running = await build_vault().start(config, nsm=nsm)
        try:
            alice = await client_for(running, nsm)
            assert await alice.authenticate(ALICE) == "alice"
            await alice.aclose()
            nobody = await client_for(running, nsm)
            with pytest.raises(AppError) as info:
                await nobody.authenticate(BOB)
            assert info.value.reason == "untrusted_client"
            await nobody.aclose()
        finally:
            await running.close()


# --- 2. runtime limits across connections -----------------------------------------------


class TestAttestAmplification:
    @aio
    async def test_reconnecting_does_not_buy_more_nsm_calls(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        clock = FakeClock()  # frozen: no bucket refills during the test
        nsm = emulated()
        app = build_vault(trusted_keys=USERS)
        app._clock = clock
        config = dev_config(tmp_path, attest_burst=5, attest_app_burst=8, max_strikes=100)
        running = await app.start(config, nsm=nsm)
        granted = refused = 0
        reasons: set[str] = set()
        try:
            for _ in range(6):  # 6 anonymous connections x 5 per-connection tokens = 30
                client = await client_for(running, nsm)
                for _ in range(5):
                    try:
                        await client.call("attest", nonce=b"n" * 32)
                        granted += 1
                    except AppError as exc:
                        reasons.add(exc.reason.value)
                        refused += 1
                await client.aclose()
            assert reasons == {"rate_limited"}
            assert (granted, refused) == (8, 22)  # the app-wide burst, whatever the reconnects
            clock.now += 60.0  # a minute later the app-wide rate (120/min) refills the burst
            client = await client_for(running, nsm)
            await client.attest()
            await client.aclose()
        finally:
            await running.close()
        # 22 refusals, logged once per interval (the clock is frozen): not once each.
        assert caplog.text.count("app-wide attest rate") == 1

    @aio
    async def test_repeat_offender_is_closed(self, tmp_path: Path) -> None:
        clock = FakeClock()
        nsm = emulated()
        app = build_vault()
        app._clock = clock
        running = await app.start(dev_config(tmp_path, attest_burst=1, max_strikes=2), nsm=nsm)
        try:
            client = await client_for(running, nsm)
            await client.attest()
            with pytest.raises(AppError):
                await client.attest()
            with pytest.raises(AppError):
                await client.attest()  # second strike: answered, then the connection ends
            assert await client.channel.recv_message() is None
            await client.aclose()
        finally:
            await running.close()

    def test_log_limiter(self, caplog: pytest.LogCaptureFixture) -> None:
        clock = FakeClock()
        limiter = LogLimiter(10.0, clock)
        assert limiter.limited("k", "refused %s", "x")
        assert not any(limiter.limited("k", "refused %s", "x") for _ in range(50))
        assert limiter.limited("other", "other")
        clock.now += 10.0
        assert limiter.limited("k", "refused %s", "x")
        assert "50 similar suppressed" in caplog.text


def nested_bomb(size: int) -> bytes:
    """A request-shaped map whose args hold `size` bytes of empty arrays."""
    n = size - 23
    head = b"\xa2bop" + b"cput" + b"dargs" + b"\xa1evalue" + b"\x99" + struct.pack(">H", n)
    return head + b"\x80" * n


class TestCborBomb:
    def test_bomb_stops_early(self) -> None:
        bomb = nested_bomb(64 * 1024)
        assert len(bomb) <= 64 * 1024
        cbor.validate(bomb, max_size=len(bomb))  # strict-valid: only the count stops it
        started = time.perf_counter()
        with pytest.raises(RemoteProtocolError) as info:
            decode_request(bomb, max_size=64 * 1024)
        assert info.value.reason == "too_many_items"
        # No timing assertion here (bench/app_limits.py measures); the walk stopped at
        # the limit instead of building 65,000 lists.
        assert time.perf_counter() - started < 5.0

    def test_size_refused_before_decoding(self) -> None:
        with pytest.raises(RemoteProtocolError) as info:
            decode_request(b"\xff" * 70_000, max_size=64 * 1024)
        assert info.value.reason == "too_large"  # not malformed_cbor: never decoded

    def test_benign_request_passes(self) -> None:
        message = encode_request("put", {"key": "k", "value": b"v" * 60_000})
        assert decode_request(message, max_size=64 * 1024)[0] == "put"

    @settings(max_examples=200, deadline=None)
    @given(st.recursive(st.none() | st.integers() | st.text(max_size=4), st.lists, max_leaves=30))
    def test_walks_agree_on_the_count(self, value: Any) -> None:
        data = cbor.dumps(value)
        results = []
        for limit in (1, 5, 20, 100):
            walker = cbor._Walker(data, 64, frozenset(), False, limit)
            reference = cbor._Walker(data, 64, frozenset(), False, limit)
            outcomes = []
            for run in (walker.walk, lambda r=reference: r.item(0, 0)):
                try:
                    outcomes.append(run())
                except DecodeError as exc:
                    outcomes.append(exc.reason)
            assert outcomes[0] == outcomes[1]
            results.append(outcomes[0])

    def test_map_pairs_count(self) -> None:
        data = cbor.dumps({i: i for i in range(20)})
        with pytest.raises(DecodeError) as info:
            cbor.loads(data, max_size=1000, max_items=10)
        assert info.value.reason == "too_many_items"
        assert cbor.loads(data, max_size=1000, max_items=41) == {i: i for i in range(20)}
        with pytest.raises(DecodeError):
            cbor.loads(data, max_size=1000, max_items=0)

    @aio
    async def test_bomb_over_the_channel(self, tmp_path: Path) -> None:
        nsm = emulated()
        running = await build_vault(trusted_keys=USERS).start(dev_config(tmp_path), nsm=nsm)
        try:
            client = await client_for(running, nsm)
            await client.channel.send_message(nested_bomb(64 * 1024))
            for strike in range(3):  # max_strikes: the third bomb ends the connection
                if strike:
                    await client.channel.send_message(nested_bomb(64 * 1024))
                reply = await client.channel.recv_message()
                assert reply is not None
                with pytest.raises(AppError) as info:
                    decode_response(reply, max_size=1 << 20)
                assert info.value.reason == "too_many_items"
            assert await client.channel.recv_message() is None
            await client.aclose()
        finally:
            await running.close()


class TestMemoryParking:
    def test_budget_evicts_the_largest(self) -> None:
        budget = BufferBudget(1000)
        a, b, c = (MessageBuffer(10_000, budget) for _ in range(3))
        a.feed(struct.pack(">I", 5000) + b"a" * 500)
        b.feed(struct.pack(">I", 5000) + b"b" * 300)
        assert budget.used == 808
        c.feed(struct.pack(">I", 5000) + b"c" * 300)  # a (largest) is evicted for it
        assert budget.used == 304 + 304
        assert budget.evictions == 1
        with pytest.raises(RemoteProtocolError) as info:
            a.feed(b"more")
        assert info.value.reason == "memory_budget"
        with pytest.raises(RemoteProtocolError):
            b.feed(b"x" * 900)  # the feeder is the largest: refused
        assert budget.used == 304
        c.release()
        assert budget.used == 0
        with pytest.raises(ConfigError):
            BufferBudget(0)

    def test_complete_messages_leave_the_budget(self) -> None:
        budget = BufferBudget(100)
        buf = MessageBuffer(50, budget)
        for _ in range(10):
            buf.feed(struct.pack(">I", 40) + b"m" * 40)
            assert buf.next_message() == b"m" * 40
        assert budget.used == 0

    @aio
    async def test_parked_connections_past_the_global_budget(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        nsm = emulated()
        config = dev_config(tmp_path, buffer_budget=150_000, memory_budget=1024)
        caplog.set_level(logging.INFO)
        running = await build_vault().start(config, nsm=nsm)
        try:
            parked = []
            for _ in range(4):  # each parks 60 KB of a 64 KB request, anonymously
                client = await client_for(running, nsm)
                await client.channel.send(struct.pack(">I", 64_000) + b"p" * 60_000)
                parked.append(client)
            await asyncio.sleep(0.3)
            budget = running.buffer_budget
            assert budget is not None
            assert budget.used <= 150_000
            assert budget.evictions >= 2
            # An evicted connection fails as soon as it sends again (dropped, no CLOSE).
            await parked[0].channel.send(b"q" * 4000)
            with pytest.raises(DecryptionError):
                await parked[0].channel.recv_message()
            for client in parked:
                await client.channel.abort()
        finally:
            await running.close()
        assert "limit enforced: buffer_budget" in caplog.text
        assert "worst-case parked memory" in caplog.text
        assert "exceeds memory_budget=1024" in caplog.text


# --- 3. smaller fixes -------------------------------------------------------------------


class TestServiceBinding:
    @aio
    async def test_cross_app_document_with_the_same_image_policy(self, tmp_path: Path) -> None:
        """Two apps built from the same image policy: the vault client refuses the other."""
        nsm = emulated()
        other = EnclaveApp("signer")
        running = await other.start(dev_config(tmp_path), nsm=nsm)
        try:
            check = check_for(nsm, service="vault")  # same PCRs, same root
            with pytest.raises(ChannelError, match="names service") as info:
                await connect(running.address, check=check)
            assert info.value.reason == "service_mismatch"
            bare = check_for(nsm)  # a client that names no service accepts no app
            with pytest.raises(ChannelError) as info:
                await connect(running.address, check=bare)
            assert info.value.reason == "service_mismatch"
            good = await connect(running.address, check=check_for(nsm, service="signer"))
            assert good.handshake.document.user_data == channel_user_data("signer")
            await good.aclose()
        finally:
            await running.close()

    def test_user_data_format(self) -> None:
        assert channel_user_data(None) == b"nitroguard/channel/v1"
        assert channel_user_data("vault") == b"nitroguard/channel/v1:vault"
        for bad in ("", "x" * 129, "a\nb"):
            with pytest.raises(ConfigError):
                channel_user_data(bad)

    def test_policy_without_image_pcrs_warns(self, caplog: pytest.LogCaptureFixture) -> None:
        nsm = emulated()
        root = [nsm.pki.root_certificate]
        DocumentCheck(policy.PCRs({8: b"\x08" * 48}), roots=root, service="vault")
        assert "pins none of PCR0, PCR1, PCR2" in caplog.text
        caplog.clear()
        DocumentCheck(policy.PCRs(GOOD_PCRS), roots=root, service="vault")
        assert "pins none" not in caplog.text
        roll_out = policy.AnyOf([policy.PCRs({0: b"\x01" * 48}), policy.PCRs({8: b"\x08" * 48})])
        assert pinned_image_pcrs(roll_out) == frozenset()
        both = policy.AllOf([policy.PCRs({2: b"\x02" * 48}), policy.NotDebug()])
        assert pinned_image_pcrs(both) == {2}


class TestUniformAlert:
    def test_every_client_abort_sends_the_same_alert(self) -> None:
        nsm = emulated()
        identity = ServerIdentity.generate(service="vault")
        identity.refresh(nsm)
        causes = {
            "policy": check_for(nsm, pcrs={0: b"\x99" * 48}, service="vault"),
            "service": check_for(nsm, service="other"),
        }
        alerts = {}
        for cause, check in causes.items():
            client, server = ClientConnection(check), ServerConnection(identity)
            with pytest.raises(Error):
                handshake(client, server)
            alerts[cause] = client.data_to_send()
        # Signature failure: a ServerHello signed by another key for this document.
        client = ClientConnection(check_for(nsm, service="vault"))
        client.start()
        server = ServerConnection(identity)
        (hello,) = client.data_to_send()
        server.receive_frame(hello)
        (sh,) = server.data_to_send()
        with pytest.raises(ChannelError):
            client.receive_frame(sh[:-1] + bytes([sh[-1] ^ 1]))
        alerts["signature"] = client.data_to_send()
        assert {tuple(a) for a in alerts.values()} == {(encode_alert(AlertCode.HANDSHAKE_FAILED),)}


class TestAttestClock:
    @aio
    async def test_attest_checks_freshness_at_the_checks_clock(self, tmp_path: Path) -> None:
        nsm = emulated()
        now = [dt.datetime.now(dt.UTC)]
        running = await build_vault().start(dev_config(tmp_path), nsm=nsm)
        try:
            check = check_for(nsm, service="vault", clock=lambda: now[0])
            client = AsyncAppClient(await connect(running.address, check=check), check)
            await client.attest()
            now[0] += dt.timedelta(hours=1)  # the check's clock, not the system's
            with pytest.raises(PolicyError) as info:
                await client.attest()
            assert info.value.reason == "stale_document"
            await client.aclose()
        finally:
            await running.close()
