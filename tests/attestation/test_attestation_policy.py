"""Policies: each one on its own, the combinators, and through the verifier."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from nitroguard.attestation import Verifier, policy
from nitroguard.errors import ConfigError, PolicyError, Reason
from nitroguard.testing import AwsLikePki, default_pcrs

AT = dt.datetime(2026, 4, 2, 9, 0, tzinfo=dt.UTC)
AT_MS = round(AT.timestamp() * 1000)
NONCE = bytes(range(32))


@pytest.fixture(scope="module")
def pki() -> AwsLikePki:
    return AwsLikePki.build(AT)


@pytest.fixture(scope="module")
def verifier(pki: AwsLikePki) -> Verifier:
    return Verifier(roots=[pki.root.cert])


@pytest.fixture(scope="module")
def doc(pki: AwsLikePki) -> bytes:
    return pki.document(nonce=NONCE, user_data=b"user", public_key=b"\x04" + b"k" * 96)


def _reason(verifier: Verifier, data: bytes, pol: policy.Policy, **kwargs: object) -> Reason:
    with pytest.raises(PolicyError) as info:
        verifier.verify(data, pol, at=kwargs.pop("at", AT), **kwargs)  # type: ignore[arg-type]
    assert info.value.details["step"] == "policy"
    return info.value.reason


class TestPCRs:
    def test_match(self, verifier: Verifier, doc: bytes) -> None:
        pcrs = default_pcrs()
        verifier.verify(doc, policy.PCRs({0: pcrs[0], 1: pcrs[1], 2: pcrs[2], 4: pcrs[4]}), at=AT)

    def test_mismatch_and_missing(self, verifier: Verifier, doc: bytes) -> None:
        assert _reason(verifier, doc, policy.PCRs({0: b"\x99" * 48})) is Reason.PCR_MISMATCH
        # PCR16 is required but the document has only 0..15 (checklist ATT-7).
        assert _reason(verifier, doc, policy.PCRs({16: b"\x01" * 48})) is Reason.PCR_MISSING

    @pytest.mark.parametrize(
        "expected",
        [{}, {32: bytes(48)}, {-1: bytes(48)}, {0: bytes(32)}, {0: "00" * 48}, {True: bytes(48)}],
    )
    def test_refuses_bad_configuration(self, expected: dict[object, object]) -> None:
        with pytest.raises(ConfigError, match=r"PCR|at least one"):
            policy.PCRs(expected)  # type: ignore[arg-type]

    def test_repr(self) -> None:
        assert "0: 000000" in repr(policy.PCRs({0: bytes(48)}))


class TestNotDebug:
    def test_each_zero_pcr_is_debug(self, pki: AwsLikePki, verifier: Verifier) -> None:
        for index in (0, 1, 2):
            pcrs = default_pcrs()
            pcrs[index] = bytes(48)
            data = pki.document(pcrs=pcrs)
            assert _reason(verifier, data, policy.NotDebug()) is Reason.DEBUG_MODE
            # The verifier applies NotDebug by default, even with another policy...
            assert _reason(verifier, data, policy.UserData(b"")) is Reason.DEBUG_MODE
            # ... and allow_debug lifts only the default, not an explicit NotDebug.
            assert verifier.verify(data, at=AT, allow_debug=True).is_debug
            assert _reason(verifier, data, policy.NotDebug(), allow_debug=True) is Reason.DEBUG_MODE

    def test_missing_pcr0(self, pki: AwsLikePki, verifier: Verifier) -> None:
        pcrs = default_pcrs()
        del pcrs[0]
        data = pki.document(pcrs=pcrs)
        assert _reason(verifier, data, policy.NotDebug()) is Reason.PCR_MISSING
        verifier.verify(data, at=AT, allow_debug=True)

    def test_production(self, verifier: Verifier, doc: bytes) -> None:
        assert not verifier.verify(doc, policy.NotDebug(), at=AT).is_debug


class TestNonce:
    def test_match(self, verifier: Verifier, doc: bytes) -> None:
        verifier.verify(doc, policy.Nonce(NONCE), at=AT)
        verifier.verify(doc, policy.Nonce(bytearray(NONCE)), at=AT)

    def test_mismatch(self, pki: AwsLikePki, verifier: Verifier, doc: bytes) -> None:
        assert _reason(verifier, doc, policy.Nonce(NONCE[::-1])) is Reason.NONCE_MISMATCH
        assert _reason(verifier, doc, policy.Nonce(NONCE + b"x")) is Reason.NONCE_MISMATCH
        assert _reason(verifier, doc, policy.Nonce(NONCE[:16])) is Reason.NONCE_MISMATCH
        no_nonce = pki.document()
        with pytest.raises(PolicyError, match="no nonce"):
            verifier.verify(no_nonce, policy.Nonce(NONCE), at=AT)

    @pytest.mark.parametrize("short", [b"", b"x" * 15])
    def test_refuses_short_nonce(self, short: bytes) -> None:
        with pytest.raises(ConfigError, match="at least 16"):
            policy.Nonce(short)

    def test_refuses_text(self) -> None:
        with pytest.raises(ConfigError, match="must be bytes"):
            policy.Nonce("a" * 32)  # type: ignore[arg-type]


class TestMaxAge:
    def test_fresh(self, verifier: Verifier, doc: bytes) -> None:
        verifier.verify(doc, policy.MaxAge(300), at=AT)
        verifier.verify(doc, policy.MaxAge(300), at=AT + dt.timedelta(seconds=300))

    def test_stale(self, verifier: Verifier, doc: bytes) -> None:
        later = AT + dt.timedelta(seconds=300, milliseconds=1)
        assert _reason(verifier, doc, policy.MaxAge(300), at=later) is Reason.STALE_DOCUMENT

    def test_future(self, verifier: Verifier, doc: bytes) -> None:
        early = AT - dt.timedelta(seconds=31)
        assert _reason(verifier, doc, policy.MaxAge(300), at=early) is Reason.FUTURE_DOCUMENT
        verifier.verify(doc, policy.MaxAge(300), at=AT - dt.timedelta(seconds=30))
        strict = policy.MaxAge(300, skew=0)
        assert (
            _reason(verifier, doc, strict, at=AT - dt.timedelta(milliseconds=1))
            is Reason.FUTURE_DOCUMENT
        )

    @pytest.mark.parametrize(("seconds", "skew"), [(0, 1), (-5, 1), (10, -1), (float("nan"), 1)])
    def test_refuses_bad_configuration(self, seconds: float, skew: float) -> None:
        with pytest.raises(ConfigError, match=r"max age|skew"):
            policy.MaxAge(seconds, skew=skew)

    def test_repr(self) -> None:
        assert repr(policy.MaxAge(60, skew=5)) == "MaxAge(60, skew=5)"


class TestBindings:
    def test_user_data(self, verifier: Verifier, doc: bytes, pki: AwsLikePki) -> None:
        verifier.verify(doc, policy.UserData(b"user"), at=AT)
        assert _reason(verifier, doc, policy.UserData(b"User")) is Reason.USER_DATA_MISMATCH
        empty = pki.document()
        assert _reason(verifier, empty, policy.UserData(b"")) is Reason.USER_DATA_MISMATCH

    def test_public_key(self, verifier: Verifier, doc: bytes) -> None:
        verifier.verify(doc, policy.PublicKey(b"\x04" + b"k" * 96), at=AT)
        assert _reason(verifier, doc, policy.PublicKey(b"\x04")) is Reason.PUBLIC_KEY_MISMATCH

    def test_module_id(self, verifier: Verifier, doc: bytes) -> None:
        verifier.verify(doc, policy.ModuleId("i-0123456789abcdef0-enc0123456789abcdef"), at=AT)
        assert _reason(verifier, doc, policy.ModuleId("i-other")) is Reason.MODULE_ID_MISMATCH
        with pytest.raises(ConfigError, match="non-empty"):
            policy.ModuleId("")

    def test_bindings_refuse_non_bytes(self) -> None:
        with pytest.raises(ConfigError, match="must be bytes"):
            policy.UserData("x")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="must be bytes"):
            policy.PublicKey(None)  # type: ignore[arg-type]


class TestCombinators:
    def test_all_of(self, verifier: Verifier, doc: bytes) -> None:
        good = policy.AllOf([policy.Nonce(NONCE), policy.UserData(b"user"), policy.MaxAge(60)])
        verifier.verify(doc, good, at=AT)
        bad = policy.AllOf([policy.Nonce(NONCE), policy.UserData(b"nope")])
        assert _reason(verifier, doc, bad) is Reason.USER_DATA_MISMATCH

    def test_any_of(self, verifier: Verifier, doc: bytes) -> None:
        rollout = policy.AnyOf(
            [policy.PCRs({0: b"\x01" * 48}), policy.PCRs({0: default_pcrs()[0]})]
        )
        verifier.verify(doc, rollout, at=AT)
        none = policy.AnyOf([policy.PCRs({0: b"\x01" * 48}), policy.Nonce(b"n" * 16)])
        with pytest.raises(PolicyError, match="0 of 2 policies") as info:
            verifier.verify(doc, none, at=AT)
        assert info.value.reason is Reason.POLICY_FAILED
        assert info.value.details["reasons"] == ["pcr_mismatch", "nonce_mismatch"]

    @pytest.mark.parametrize("combinator", [policy.AllOf, policy.AnyOf])
    def test_refuse_empty(self, combinator: type[policy.AllOf] | type[policy.AnyOf]) -> None:
        with pytest.raises(ConfigError, match="at least one policy"):
            combinator([])
        with pytest.raises(ConfigError, match="is not a policy"):
            combinator(["PCRs"])  # type: ignore[list-item]

    def test_reprs(self) -> None:
        text = repr(policy.AllOf([policy.NotDebug(), policy.AnyOf([policy.UnsafeNoOp()])]))
        assert text == "AllOf([NotDebug(), AnyOf([UnsafeNoOp()])])"
        assert repr(policy.Nonce(NONCE)) == "Nonce(32 bytes)"
        assert repr(policy.UserData(b"ab")) == "UserData(2 bytes)"
        assert repr(policy.PublicKey(b"ab")) == "PublicKey(2 bytes)"
        assert repr(policy.ModuleId("m")) == "ModuleId('m')"


class TestUnsafeNoOp:
    def test_warns_every_time(
        self, verifier: Verifier, doc: bytes, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="nitroguard.attestation.policy")
        for _ in range(3):
            with pytest.warns(policy.UnsafePolicyWarning, match="without checking"):
                verifier.verify(doc, policy.UnsafeNoOp(), at=AT)
        assert sum("UnsafeNoOp" in r.getMessage() for r in caplog.records) == 3

    def test_does_not_lift_debug(self, pki: AwsLikePki, verifier: Verifier) -> None:
        pcrs = default_pcrs()
        pcrs[0] = bytes(48)
        data = pki.document(pcrs=pcrs)
        assert _reason(verifier, data, policy.UnsafeNoOp()) is Reason.DEBUG_MODE


class TestProtocol:
    def test_custom_policy(self, verifier: Verifier, doc: bytes) -> None:
        seen: list[dt.datetime] = []

        class AtTime:
            def verify(self, doc: policy.AttestedFields, *, at: dt.datetime) -> None:
                seen.append(at)
                if doc.timestamp % 2:
                    raise PolicyError("odd", Reason.POLICY_FAILED, step="policy")

        assert isinstance(AtTime(), policy.Policy)
        verifier.verify(doc, policy.AllOf([AtTime()]), at=AT)
        assert seen == [AT]
