"""Emulator documents against the real attestation verifier (library and CLI).

Issue 3: they verify only when the emulator root is passed explicitly, fail with
`untrusted_root` against the default (AWS Root-G1) roots, and debug-mode documents
are rejected by the default policy.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from nsm_helpers import Clock

from nitroguard.attestation import Verifier, policy
from nitroguard.errors import PolicyError, Reason, VerificationError
from nitroguard.nsm import DeviceNsm, EmulatedNsm, NsmServer, SocketNsm
from nitroguard.testing import emulator_ioctl, ephemeral_nsm

PCR0 = bytes(range(48))


@pytest.fixture
def nsm(clock: Clock) -> EmulatedNsm:
    return ephemeral_nsm(clock=clock, pcrs={0: PCR0})


def test_emulator_document_verifies_with_the_emulator_root(nsm: EmulatedNsm, clock: Clock) -> None:
    nsm.extend_pcr(16, b"app")
    nsm.lock_pcr(16)
    nonce = b"n" * 32
    doc = nsm.get_attestation(nonce=nonce, public_key=b"pk", user_data=b"ud")
    verified = Verifier(roots=[nsm.pki.root_certificate]).verify(
        doc,
        policy.AllOf([policy.PCRs({0: PCR0, 16: nsm.describe_pcr(16).data}), policy.Nonce(nonce)]),
        at=clock(),
    )
    assert verified.module_id == nsm.describe_nsm().module_id
    assert verified.nonce == nonce
    assert verified.public_key == b"pk"
    assert verified.user_data == b"ud"
    assert sorted(verified.pcrs) == list(range(17))
    assert not verified.is_debug
    assert verified.cabundle[0] == nsm.pki.root_certificate


def test_default_roots_reject_emulator_documents(nsm: EmulatedNsm, clock: Clock) -> None:
    doc = nsm.get_attestation()
    with pytest.raises(VerificationError, match="trust root") as info:
        Verifier().verify(doc, at=clock())
    assert info.value.reason is Reason.UNTRUSTED_ROOT
    # Another emulator's root is not this one's either.
    other = ephemeral_nsm(clock=clock)
    with pytest.raises(VerificationError, match="trust root") as info:
        Verifier(roots=[other.pki.root_certificate]).verify(doc, at=clock())
    assert info.value.reason is Reason.UNTRUSTED_ROOT


def test_debug_mode_is_rejected_by_default(clock: Clock) -> None:
    debug = ephemeral_nsm(clock=clock, debug_mode=True, pcrs={0: PCR0})
    doc = debug.get_attestation()
    verifier = Verifier(roots=[debug.pki.root_certificate])
    with pytest.raises(PolicyError, match="debug mode") as info:
        verifier.verify(doc, at=clock())
    assert info.value.reason is Reason.DEBUG_MODE
    assert verifier.verify(doc, at=clock(), allow_debug=True).is_debug


def test_leaf_window_is_enforced(nsm: EmulatedNsm, clock: Clock) -> None:
    doc = nsm.get_attestation()
    verifier = Verifier(roots=[nsm.pki.root_certificate])
    verifier.verify(doc, at=clock() + dt.timedelta(hours=2, minutes=58))
    with pytest.raises(VerificationError) as info:
        verifier.verify(doc, at=clock() + dt.timedelta(hours=3))
    assert info.value.reason is Reason.EXPIRED_CERTIFICATE
    # After rotation the emulator signs with a new leaf that verifies at the new time.
    clock.advance(hours=5)
    verifier.verify(nsm.get_attestation(), at=clock())


def test_documents_through_device_and_socket_verify(
    nsm: EmulatedNsm, clock: Clock, tmp_path: Path
) -> None:
    verifier = Verifier(roots=[nsm.pki.root_certificate])
    with DeviceNsm("/dev/null", ioctl=emulator_ioctl(nsm)) as device:
        verifier.verify(device.get_attestation(nonce=bytes(4050)), at=clock())
    with NsmServer(nsm, tmp_path / "s.sock"), SocketNsm(tmp_path / "s.sock") as client:
        for i in range(5):
            got = verifier.verify(client.get_attestation(user_data=bytes([i])), at=clock())
            assert got.user_data == bytes([i])


def _attest_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nitroguard", "attest", "verify", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_attest_verify_needs_the_emulator_root(tmp_path: Path) -> None:
    # Real time: the CLI subprocess verifies at "now" unless --at is given.
    nsm = ephemeral_nsm(pcrs={0: PCR0})
    root = tmp_path / "root.pem"
    root.write_bytes(nsm.pki.root_pem)
    doc = tmp_path / "doc.cbor"
    doc.write_bytes(nsm.get_attestation(nonce=b"\x01" * 32))

    ok = _attest_verify(str(doc), "--root", str(root), "--nonce", "01" * 32)
    assert ok.returncode == 0, ok.stderr
    untrusted = _attest_verify(str(doc))
    assert untrusted.returncode == 1
    assert "untrusted_root" in untrusted.stderr + untrusted.stdout

    debug = ephemeral_nsm(debug_mode=True)
    debug_root = tmp_path / "debug-root.pem"
    debug_root.write_bytes(debug.pki.root_pem)
    debug_doc = tmp_path / "debug.cbor"
    debug_doc.write_bytes(debug.get_attestation())
    rejected = _attest_verify(str(debug_doc), "--root", str(debug_root))
    assert rejected.returncode == 1
    assert "debug_mode" in rejected.stderr + rejected.stdout
    allowed = _attest_verify(str(debug_doc), "--root", str(debug_root), "--allow-debug")
    assert allowed.returncode == 0, allowed.stderr
