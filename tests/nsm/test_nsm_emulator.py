"""EmulatedNsm: the real device's semantics, error table, documents and PKI."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nsm_helpers import T0, Clock, check_document

from nitroguard.errors import ConfigError, NsmError, Reason
from nitroguard.hazmat import cbor, cose
from nitroguard.nsm import DEFAULT_IMAGE_PCRS, EmulatedNsm, EmulatorPki, Nsm, codec, extend
from nitroguard.testing import ephemeral_nsm

H = bytes.fromhex
ZERO = bytes(48)


@pytest.fixture
def nsm(clock: Clock) -> EmulatedNsm:
    return ephemeral_nsm(clock=clock)


def ask(nsm: EmulatedNsm, request: Any) -> Any:
    """Send a raw request (CBOR bytes or an object to encode) and decode the answer loosely."""
    raw = request if isinstance(request, bytes) else cbor2.dumps(request)
    return cbor2.loads(nsm.process(raw))


# ------------------------------------------------------------ real-device vectors


def test_extend_vectors_from_the_real_device(nsm: EmulatedNsm) -> None:
    # ../shared/spec/nsm-protocol.md 2.2, from dorjoy03/nsm-api test_003_extend_pcr.
    assert nsm.describe_pcr(16) == codec.PcrDescription(False, ZERO)
    assert nsm.extend_pcr(16, H("0b00374863ff5c65")) == H(
        "b33da05a0fdb71627c8c68fc4232281fc440edd6f0ac7467fa497bbb907db32d"
        "957b5fd393845fa02c264ad5ea233888"
    )
    assert nsm.extend_pcr(16, H("6566ff00172c4d")) == H(
        "022db9572e340c6fe4ae1ea55fc665226932209b42dd8c42556000e913aea3ff"
        "ec9e55c2cfa7efcc5dc52b0ebf03eb5b"
    )
    assert nsm.extend_pcr(17, b"") == H(
        "8f0d145c0368ad6b70be22e41c400eea91b971d96ba220fec9fae25a58dffdaa"
        "f72dbe8f6783d55128c9df4efaf6f8a7"
    )
    assert nsm.extend_pcr(17, bytes(513)) == H(
        "881f42f6a310bb0d4f37d9d75b038a9010d052f0f01a1aac8a34b38f573ba5e4"
        "dd8f3d5c8fd14e2f641774d1c4b4c96e"
    )
    assert nsm.extend_pcr(17, bytes(4000)) == H(
        "ffbb97ea3c03451254d8059cbec835359939342226cb7b672a4fba3f90c3bd34"
        "3bcbd3a1ab06988ce9cd139ef1709e8e"
    )
    assert nsm.describe_pcr(17).data.hex().startswith("ffbb97ea")


def test_initial_state(clock: Clock) -> None:
    pcr0 = bytes(range(48))
    nsm = ephemeral_nsm(
        clock=clock,
        pcrs={0: pcr0, 8: b"\x08" * 48},
        instance_id="i-0123456789abcdef0",
        parent_role="arn:aws:iam::123456789012:role/app",
    )
    for i in range(32):
        pcr = nsm.describe_pcr(i)
        assert pcr.lock is (i < 16)
    assert nsm.describe_pcr(0).data == pcr0
    assert nsm.describe_pcr(8).data == b"\x08" * 48
    assert nsm.describe_pcr(1).data == DEFAULT_IMAGE_PCRS[1]  # not given: non-zero default
    assert nsm.describe_pcr(5).data == ZERO
    assert nsm.describe_pcr(3).data == extend(ZERO, b"arn:aws:iam::123456789012:role/app")
    assert nsm.describe_pcr(4).data == extend(ZERO, b"i-0123456789abcdef0")
    assert all(nsm.describe_pcr(i).data == ZERO for i in range(16, 32))
    # Without a role PCR3 stays zero (attestation.md 1.4).
    assert ephemeral_nsm(clock=clock).describe_pcr(3).data == ZERO


def test_default_image_pcrs_are_nonzero_and_distinct(clock: Clock) -> None:
    # Zero PCR0/1/2 mean debug mode; a production emulator without an image must not
    # look like one (nsm-check asserts PCR0/1/2/4 non-zero).
    nsm = ephemeral_nsm(clock=clock)
    values = [nsm.describe_pcr(i).data for i in (0, 1, 2, 4)]
    assert ZERO not in values
    assert len(set(values)) == 4
    digest = hashlib.sha384(b"nitroguard emulator: no image, PCR0").digest()
    assert values[0] == extend(ZERO, digest)


def test_describe_nsm_shape(nsm: EmulatedNsm, clock: Clock) -> None:
    d = nsm.describe_nsm()
    assert d.version == (1, 0, 0)
    assert d.version_string == "1.0.0"
    assert d.max_pcrs == 32
    assert d.digest == "SHA384"
    assert d.locked_pcrs == tuple(range(16))
    match = re.fullmatch(r"i-[0-9a-f]{17}-enc([0-9a-f]{12})[0-9a-f]{4}", d.module_id)
    assert match, d.module_id
    # As on AWS, the first 12 hex digits after "enc" are the launch time in ms.
    assert int(match.group(1), 16) == int(T0.timestamp() * 1000)
    nsm.lock_pcrs(20)
    assert nsm.describe_nsm().locked_pcrs == tuple(range(20))
    nsm.lock_pcr(25)
    assert nsm.describe_nsm().locked_pcrs == (*range(20), 25)


def test_lock_semantics(nsm: EmulatedNsm) -> None:
    nsm.extend_pcr(16, b"app")
    value = nsm.describe_pcr(16).data
    nsm.lock_pcr(16)
    assert nsm.describe_pcr(16) == codec.PcrDescription(True, value)
    with pytest.raises(NsmError, match="ReadOnlyIndex") as info:
        nsm.extend_pcr(16, b"more")
    assert info.value.reason is Reason.READ_ONLY_INDEX
    assert nsm.describe_pcr(16).data == value  # unchanged
    with pytest.raises(NsmError, match="ReadOnlyIndex") as info:
        nsm.lock_pcr(16)
    assert info.value.reason is Reason.READ_ONLY_INDEX
    # LockPCRs is idempotent, range 0 is a no-op, 32 locks everything.
    nsm.lock_pcrs(20)
    nsm.lock_pcrs(20)
    nsm.lock_pcrs(0)
    nsm.lock_pcrs(32)
    assert nsm.describe_nsm().locked_pcrs == tuple(range(32))
    with pytest.raises(NsmError, match="ReadOnlyIndex"):
        nsm.extend_pcr(31, b"x")


# ------------------------------------------------------------------ error table

TEXT_INDEX = {"DescribePCR": {"index": "0"}}

ERROR_TABLE: list[tuple[str, Any, str]] = [
    # InvalidOperation: ../shared/spec/nsm-protocol.md 2.1 (dorjoy03 TestVariousErrorResponse)
    ("invalid cbor", H("ffffffff"), "InvalidOperation"),
    ("empty request", b"", "InvalidOperation"),
    ("unknown command", "UnknownCommand", "InvalidOperation"),
    ("unknown map command", {"UnknownCommand": {"index": 0}}, "InvalidOperation"),
    (
        "two top-level keys",
        {"DescribePCR": {"index": 0}, "GetRandom": None},
        "InvalidOperation",
    ),
    ("struct variant as text", "DescribePCR", "InvalidOperation"),
    ("missing index", {"DescribePCR": {}}, "InvalidOperation"),
    ("misspelt index", {"DescribePCR": {"inde": 0}}, "InvalidOperation"),
    ("misspelt range", {"LockPCRs": {"rang": 5}}, "InvalidOperation"),
    ("misspelt data", {"ExtendPCR": {"index": 16, "dat": b"x"}}, "InvalidOperation"),
    ("index as text", TEXT_INDEX, "InvalidOperation"),
    ("index null", {"DescribePCR": {"index": None}}, "InvalidOperation"),
    ("index bytes", {"DescribePCR": {"index": b"\x00"}}, "InvalidOperation"),
    ("index bool", {"LockPCR": {"index": True}}, "InvalidOperation"),
    ("index float", H("a16b4465736372696265504352a165696e646578f93c00"), "InvalidOperation"),
    ("extend data null", {"ExtendPCR": {"index": 16, "data": None}}, "InvalidOperation"),
    ("extend data int", {"ExtendPCR": {"index": 16, "data": 5}}, "InvalidOperation"),
    ("attestation not a map", {"Attestation": [None, None, None]}, "InvalidOperation"),
    ("attestation nonce int", {"Attestation": {"nonce": 52}}, "InvalidOperation"),
    ("index 2**32", {"DescribePCR": {"index": 4294967296}}, "InvalidOperation"),
    ("index 65536", {"LockPCR": {"index": 65536}}, "InvalidOperation"),
    ("index -1", {"DescribePCR": {"index": -1}}, "InvalidOperation"),
    ("range -1", {"LockPCRs": {"range": -1}}, "InvalidOperation"),
    ("body not a map", {"DescribePCR": 0}, "InvalidOperation"),
    ("unit with content", {"GetRandom": {"x": 1}}, "InvalidOperation"),
    ("indefinite envelope", H("bf6b44657363726962654e534df6ff"), "InvalidOperation"),
    ("duplicate field", H("a1674c6f636b504352a265696e6465781065696e64657811"), "InvalidOperation"),
    ("trailing bytes", H("6947657452616e646f6d00"), "InvalidOperation"),
    # InvalidIndex
    ("describe 50", {"DescribePCR": {"index": 50}}, "InvalidIndex"),
    ("describe 32", {"DescribePCR": {"index": 32}}, "InvalidIndex"),
    ("lock 50", {"LockPCR": {"index": 50}}, "InvalidIndex"),
    ("lockpcrs 50", {"LockPCRs": {"range": 50}}, "InvalidIndex"),
    ("lockpcrs 33", {"LockPCRs": {"range": 33}}, "InvalidIndex"),
    ("extend 32", {"ExtendPCR": {"index": 32, "data": b"x"}}, "InvalidIndex"),
    # serde u16 accepts 256..65535, so the device sees an index, not a type error.
    ("describe 300", {"DescribePCR": {"index": 300}}, "InvalidIndex"),
    ("lock 65535", {"LockPCR": {"index": 65535}}, "InvalidIndex"),
    # ReadOnlyIndex
    ("lock boot pcr", {"LockPCR": {"index": 0}}, "ReadOnlyIndex"),
    ("extend boot pcr", {"ExtendPCR": {"index": 0, "data": b"x"}}, "ReadOnlyIndex"),
    ("extend pcr 15", {"ExtendPCR": {"index": 15, "data": b""}}, "ReadOnlyIndex"),
    # InputTooLarge
    ("4097 bytes", {"ExtendPCR": {"index": 16, "data": bytes(4070)}}, "InputTooLarge"),
]


@pytest.mark.parametrize(
    ("name", "request_", "error"), ERROR_TABLE, ids=[e[0] for e in ERROR_TABLE]
)
def test_error_table(nsm: EmulatedNsm, name: str, request_: Any, error: str) -> None:
    raw = request_ if isinstance(request_, bytes) else cbor2.dumps(request_)
    answer = nsm.process(raw)
    assert answer == codec.encode_error(codec.ErrorCode(error))
    # The client turns it into the matching reason.
    decoded = codec.decode_response(answer, "DescribePCR")
    assert isinstance(decoded, codec.ErrorCode)
    assert (
        codec.error_for(decoded, "x").reason.value
        == re.sub(r"(?<!^)([A-Z])", r"_\1", error).lower()
    )


def test_lock_twice_is_read_only(nsm: EmulatedNsm) -> None:
    assert ask(nsm, {"LockPCR": {"index": 16}}) == "LockPCR"
    assert ask(nsm, {"LockPCR": {"index": 16}}) == {"Error": "ReadOnlyIndex"}


def test_largest_extend_that_fits(nsm: EmulatedNsm) -> None:
    # spec 1.5: 4069 bytes of data is the largest ExtendPCR that fits in 4096.
    assert len(codec.encode_request(codec.ExtendPcr(16, bytes(4069)))) == 4096
    assert nsm.extend_pcr(16, bytes(4069)) == extend(ZERO, bytes(4069))
    with pytest.raises(NsmError, match="4097 bytes") as info:
        nsm.extend_pcr(16, bytes(4070))
    assert info.value.reason is Reason.INPUT_TOO_LARGE


# ------------------------------------------------------------------ leniencies


def test_device_leniencies(nsm: EmulatedNsm) -> None:
    # Unknown inner keys are ignored; text is accepted for byte fields (spec 2.1).
    assert ask(nsm, {"DescribePCR": {"index": 16, "extra": [1, 2]}}) == {
        "DescribePCR": {"lock": False, "data": ZERO}
    }
    got = ask(nsm, {"ExtendPCR": {"index": 16, "data": "abc", "x": None}})
    assert got == {"ExtendPCR": {"data": extend(ZERO, b"abc")}}
    assert ask(nsm, {"LockPCRs": {"range": 17, "zzz": 1}}) == "LockPCRs"
    # serde_cbor's map form of a unit variant.
    random = ask(nsm, {"GetRandom": None})
    assert len(random["GetRandom"]["random"]) == 256
    assert ask(nsm, {"DescribeNSM": None})["DescribeNSM"]["max_pcrs"] == 32


def test_attestation_text_and_missing_fields(nsm: EmulatedNsm) -> None:
    answer = ask(nsm, {"Attestation": {"user_data": "héllo", "extra": 1}})
    doc = answer["Attestation"]["document"]
    payload = check_document(doc, nsm.pki.root_certificate, T0)
    assert payload["user_data"] == "héllo".encode()
    assert payload["nonce"] is None
    assert payload["public_key"] is None


def test_attestation_request_sizes(nsm: EmulatedNsm) -> None:
    # {"Attestation":{"nonce":<4073 B>}} is exactly 4096 bytes and accepted (spec 1.5).
    raw = cbor2.dumps({"Attestation": {"nonce": bytes(4073)}})
    assert len(raw) == 4096
    doc = cbor2.loads(nsm.process(raw))["Attestation"]["document"]
    assert check_document(doc, nsm.pki.root_certificate, T0)["nonce"] == bytes(4073)
    # Through the API all three keys are sent, so 4050 bytes is the most that fits.
    doc = nsm.get_attestation(public_key=bytes(4050))
    assert check_document(doc, nsm.pki.root_certificate, T0)["public_key"] == bytes(4050)
    assert len(doc) <= codec.MAX_RESPONSE_SIZE


def test_oversized_attestation_is_refused_before_any_io(clock: Clock) -> None:
    calls: list[bytes] = []

    class Counting(EmulatedNsm):
        def _transact(self, request: bytes) -> bytes:
            calls.append(request)
            return super()._transact(request)

    nsm = Counting(EmulatorPki.ephemeral(clock=clock), clock=clock)
    with pytest.raises(NsmError, match="over the NSM limit of 4096") as info:
        nsm.get_attestation(nonce=bytes(4051))
    assert info.value.reason is Reason.INPUT_TOO_LARGE
    assert calls == []


# -------------------------------------------------------------------- documents


def test_attestation_document_like_aws(nsm: EmulatedNsm, clock: Clock) -> None:
    nsm.extend_pcr(16, b"app-key-hash")
    nsm.lock_pcr(16)
    nsm.extend_pcr(17, b"not locked")
    doc = nsm.get_attestation(user_data=b"ud", nonce=b"n" * 32, public_key=b"")
    payload = check_document(doc, nsm.pki.root_certificate, clock())
    assert payload["module_id"] == nsm.describe_nsm().module_id
    assert payload["timestamp"] == int(T0.timestamp() * 1000)
    # pcrs = every locked PCR, and only those.
    assert list(payload["pcrs"]) == [*range(16), 16]
    assert payload["pcrs"][16] == nsm.describe_pcr(16).data
    assert payload["user_data"] == b"ud"
    assert payload["nonce"] == b"n" * 32
    # Empty is an empty byte string, not null (spec 2.5).
    assert payload["public_key"] == b""
    # The fast payload assembly is byte-for-byte the generic indefinite-map encoding.
    msg = cose.decode_sign1(doc, max_size=16384)
    assert cbor.dumps_indefinite_map(payload.items()) == msg.payload
    # ...and so is the inlined COSE_Sign1 encoding.
    assert doc == cose.encode_sign1(msg.protected, {}, msg.payload, msg.signature)
    nulls = check_document(nsm.get_attestation(), nsm.pki.root_certificate, clock())
    assert (nulls["public_key"], nulls["user_data"], nulls["nonce"]) == (None, None, None)


def test_timestamps_are_milliseconds(nsm: EmulatedNsm, clock: Clock) -> None:
    clock.advance(milliseconds=1234)
    payload = check_document(nsm.get_attestation(), nsm.pki.root_certificate, clock())
    assert payload["timestamp"] == int(T0.timestamp() * 1000) + 1234


def test_debug_mode_zeroes_pcr_0_1_2_8(clock: Clock) -> None:
    given = {i: bytes([i + 1]) * 48 for i in range(16)}
    nsm = ephemeral_nsm(clock=clock, debug_mode=True, pcrs=given)
    payload = check_document(nsm.get_attestation(), nsm.pki.root_certificate, clock())
    for i in range(16):
        expected = ZERO if i in (0, 1, 2, 8) else given[i]
        assert payload["pcrs"][i] == expected
        assert nsm.describe_pcr(i).data == expected


def test_leaf_rotates_like_aws(nsm: EmulatedNsm, clock: Clock) -> None:
    def chain() -> tuple[x509.Certificate, list[bytes]]:
        payload = check_document(nsm.get_attestation(), nsm.pki.root_certificate, clock())
        return x509.load_der_x509_certificate(payload["certificate"]), payload["cabundle"]

    leaf1, bundle1 = chain()
    assert leaf1.not_valid_after_utc - leaf1.not_valid_before_utc <= dt.timedelta(hours=3)
    clock.advance(hours=2)
    leaf2, _ = chain()
    assert leaf2 == leaf1  # still 59 minutes left
    clock.advance(minutes=35)
    leaf3, bundle3 = chain()
    assert leaf3 != leaf1  # under 30 minutes left: rotated
    assert bundle3 == bundle1  # same CAs
    clock.advance(hours=25)
    _, bundle4 = chain()
    assert bundle4[:3] == bundle1[:3]
    assert bundle4[3] != bundle1[3]  # the 24 h instance CA rotated
    clock.advance(days=30)
    _, bundle5 = chain()
    assert bundle5[0] == bundle1[0]  # the root never rotates
    assert bundle5[1] != bundle1[1]


def test_certificate_lifetimes_and_names(nsm: EmulatedNsm, clock: Clock) -> None:
    payload = check_document(nsm.get_attestation(), nsm.pki.root_certificate, clock())
    certs = [x509.load_der_x509_certificate(c) for c in payload["cabundle"]]
    certs.append(x509.load_der_x509_certificate(payload["certificate"]))
    lifetimes = [c.not_valid_after_utc - c.not_valid_before_utc for c in certs]
    assert lifetimes[0] >= dt.timedelta(days=30 * 365)
    assert dt.timedelta(days=19) < lifetimes[1] < dt.timedelta(days=21)
    assert dt.timedelta(days=5) < lifetimes[2] < dt.timedelta(days=7)
    assert dt.timedelta(hours=23) < lifetimes[3] <= dt.timedelta(hours=24, minutes=1)
    assert dt.timedelta(hours=2, minutes=59) < lifetimes[4] <= dt.timedelta(hours=3, minutes=1)
    for cert in certs:
        text = cert.subject.rfc4514_string()
        assert "nitroguard" in text
        assert "NOT AWS" in text
        assert "aws.nitro-enclaves" not in text
        assert "Amazon" not in text
        org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        assert org == "nitroguard emulator (NOT AWS)"
    cn = certs[4].subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == f"{payload['module_id']}.nitroguard-emu.not-aws"


def test_clock_outside_root_validity_is_internal_error(clock: Clock) -> None:
    nsm = ephemeral_nsm(clock=clock)
    clock.advance(days=-2)
    with pytest.raises(NsmError, match="InternalError") as info:
        nsm.get_attestation()
    assert info.value.reason is Reason.INTERNAL_ERROR


# ----------------------------------------------------------------------- random


def test_get_random(clock: Clock) -> None:
    counter = iter(range(1_000_000))

    def rng(n: int) -> bytes:
        return bytes(next(counter) % 256 for _ in range(n))

    nsm = ephemeral_nsm(clock=clock, rng=rng)
    raw = cbor2.loads(nsm.process(codec.encode_request(codec.GetRandom())))
    assert len(raw["GetRandom"]["random"]) == 256
    assert nsm.get_random(0) == b""
    assert len(nsm.get_random(1)) == 1
    assert len(nsm.get_random(256)) == 256
    big = nsm.get_random(1000)
    assert len(big) == 1000
    assert len(set(big)) > 200
    for bad in (-1, (1 << 20) + 1, True, 1.5):
        with pytest.raises(NsmError, match="n must be an integer") as info:
            nsm.get_random(bad)  # type: ignore[arg-type]
        assert info.value.reason is Reason.INVALID_ARGUMENT


class _ShortRandomNsm(Nsm):
    """A device answering GetRandom with `size` bytes (a short or broken RNG reply)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.calls = 0

    def _transact(self, request: bytes) -> bytes:
        self.calls += 1
        return cbor2.dumps({"GetRandom": {"random": bytes([self.calls]) * self.size}})


def test_get_random_loops_over_short_replies() -> None:
    nsm = _ShortRandomNsm(10)
    assert nsm.get_random(25) == b"\x01" * 10 + b"\x02" * 10 + b"\x03" * 5
    assert nsm.calls == 3


@pytest.mark.parametrize("size", [0, 257, 4000])
def test_get_random_checks_each_reply_length(size: int) -> None:
    with pytest.raises(NsmError, match="implausible length") as info:
        _ShortRandomNsm(size).get_random(10)
    assert info.value.reason is Reason.INVALID_RESPONSE


# ------------------------------------------------------------------ construction


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pcrs": {16: ZERO}}, "boot PCR index"),
        ({"pcrs": {-1: ZERO}}, "boot PCR index"),
        ({"pcrs": {0: bytes(32)}}, "must be 48 bytes"),
        ({"pcrs": {0: "00" * 48}}, "must be 48 bytes"),
        ({"instance_id": "i-XYZ"}, "instance id"),
        ({"instance_id": "i-0123456789abcdef01"}, "instance id"),
    ],
)
def test_bad_construction(clock: Clock, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ephemeral_nsm(clock=clock, **kwargs)


# ---------------------------------------------------------------- persistence


def test_pki_persists_its_root(tmp_path: Path, clock: Clock) -> None:
    state = tmp_path / "state"
    first = EmulatorPki(state, clock=clock)
    assert stat.S_IMODE((state / "root.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    second = EmulatorPki(state)
    assert second.root_certificate == first.root_certificate
    assert second.root_pem == first.root_pem
    assert x509.load_pem_x509_certificate(first.root_pem) == first.root_certificate
    assert len(first.root_fingerprint) == 64
    # A document signed by an emulator on the reloaded PKI chains to the first root.
    nsm = EmulatedNsm(second, clock=clock)
    check_document(nsm.get_attestation(), first.root_certificate, clock())
    assert EmulatorPki.ephemeral().root_certificate != first.root_certificate


def test_default_state_dir_is_xdg(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    nsm = EmulatedNsm(clock=clock)
    saved = (tmp_path / "nitroguard" / "emulator" / "root.pem").read_bytes()
    assert saved == nsm.pki.root_pem


def test_pki_refuses_a_readable_key(tmp_path: Path) -> None:
    EmulatorPki(tmp_path)
    os.chmod(tmp_path / "root.key", 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        EmulatorPki(tmp_path)


def test_pki_refuses_mismatched_or_broken_state(tmp_path: Path) -> None:
    EmulatorPki(tmp_path)
    other = ec.generate_private_key(ec.SECP384R1())
    (tmp_path / "root.key").write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="does not match"):
        EmulatorPki(tmp_path)
    (tmp_path / "root.pem").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="unreadable emulator root"):
        EmulatorPki(tmp_path)
    (tmp_path / "root.pem").unlink()
    with pytest.raises(ConfigError, match="unreadable emulator root"):
        EmulatorPki(tmp_path)


# ----------------------------------------------------------------------- fuzzing

_REQUEST_NAMES = st.sampled_from(
    ["DescribePCR", "ExtendPCR", "LockPCR", "LockPCRs", "DescribeNSM", "Attestation", "GetRandom"]
)
_FIELDS = st.sampled_from(["index", "range", "data", "user_data", "nonce", "public_key", "x"])
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.binary(max_size=64),
    st.text(max_size=16),
    st.lists(st.integers(0, 40), max_size=3),
)
_REQUESTS = st.one_of(
    st.binary(max_size=200),
    _REQUEST_NAMES.map(cbor2.dumps),
    st.builds(
        lambda name, body: cbor2.dumps({name: body}),
        _REQUEST_NAMES,
        st.one_of(_VALUES, st.dictionaries(_FIELDS, _VALUES, max_size=4)),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_REQUESTS, min_size=1, max_size=6))
def test_fuzz_process_always_answers(requests: list[bytes]) -> None:
    nsm = ephemeral_nsm(pki=_FUZZ_PKI)
    for raw in requests:
        answer = nsm.process(raw)
        parsed = codec.parse_request(raw)
        expected = "GetRandom" if isinstance(parsed, codec.ErrorCode) else parsed.name
        decoded = codec.decode_response(answer, expected)  # always a valid NSM answer
        if isinstance(parsed, codec.ErrorCode):
            assert decoded is parsed
    # The invariants survive any request sequence.
    description = nsm.describe_nsm()
    assert set(range(16)) <= set(description.locked_pcrs)
    assert all(len(nsm.describe_pcr(i).data) == 48 for i in range(32))


_FUZZ_PKI = EmulatorPki.ephemeral()
