"""Byte mutations of real and generated documents: only nitroguard.errors may escape.

The long campaign (>= 100,000 mutations) is bench/fuzz_attestation.py; this is the
bounded CI version.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nitroguard._commands.attest import document_json
from nitroguard.attestation import AttestationDocument, Verifier
from nitroguard.errors import Error
from nitroguard.testing import AwsLikePki

AT = dt.datetime(2026, 5, 5, 5, 5, tzinfo=dt.UTC)

Mutation = tuple[str, int, bytes]

mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate"]),
        st.integers(min_value=0, max_value=1 << 16),
        st.binary(min_size=1, max_size=9),
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, ops: list[Mutation]) -> bytes:
    """Apply byte-level mutations; positions wrap around the current length."""
    buf = bytearray(data)
    for kind, pos, value in ops:
        if not buf:
            buf = bytearray(value)
            continue
        i = pos % len(buf)
        if kind == "flip":
            buf[i] ^= 1 << (value[0] % 8)
        elif kind == "set":
            buf[i] = value[0]
        elif kind == "insert":
            buf[i:i] = value
        elif kind == "delete":
            del buf[i : i + 1 + value[0] % 8]
        elif kind == "truncate":
            del buf[i:]
        else:
            buf[i:i] = buf[i : i + 1 + value[0] % 64]
    return bytes(buf)


def check(verifier: Verifier, data: bytes, at: dt.datetime) -> str:
    """Run the parser, the verifier and the CLI's renderer; return the outcome."""
    try:
        doc = AttestationDocument.parse(data)
        document_json(doc)
    except Error:
        pass
    try:
        verifier.verify(data, at=at, allow_debug=True)
    except Error as exc:
        return exc.reason.value
    return "accepted"


def test_mutate_is_not_a_no_op() -> None:
    assert mutate(b"abc", [("flip", 1, b"\x00")]) == b"acc"
    assert mutate(b"abc", [("truncate", 1, b"\x00")]) == b"a"
    assert mutate(b"abc", [("insert", 0, b"zz")]) == b"zzabc"


@pytest.mark.vectors
def test_mutated_real_documents(attestation_vectors: list[dict[str, Any]]) -> None:
    real = [
        (
            Path(e["path"]).read_bytes(),
            dt.datetime.fromisoformat(e["verify_at"].replace("Z", "+00:00")),
        )
        for e in attestation_vectors
        if e["expect"] == "accept"
    ]
    verifier = Verifier()
    outcomes: dict[str, int] = {}

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(index=st.integers(min_value=0, max_value=len(real) - 1), ops=mutations)
    def run(index: int, ops: list[Mutation]) -> None:
        data, at = real[index]
        outcome = check(verifier, mutate(data, ops), at)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    run()
    # Mutations must be caught at many different steps, not just one.
    assert len(outcomes) >= 4, outcomes


def test_mutated_generated_documents() -> None:
    pki = AwsLikePki.build(AT)
    docs = [
        pki.document(nonce=b"n" * 32),
        pki.document(indefinite=True, tagged=True, user_data=b"u" * 100),
    ]
    verifier = Verifier(roots=[pki.root.cert])
    for doc in docs:
        assert check(verifier, doc, AT) == "accepted"

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(index=st.integers(min_value=0, max_value=1), ops=mutations)
    def run(index: int, ops: list[Mutation]) -> None:
        check(verifier, mutate(docs[index], ops), AT)

    run()


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes(data: bytes) -> None:
    check(Verifier(cache_size=0), data, AT)
    check(Verifier(cache_size=0), b"\x84" + data, AT)
