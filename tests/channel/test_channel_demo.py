"""`nitroguard demo` in CI: a real subprocess, and proof that its checks can fail."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from channel_helpers import aio

from nitroguard._commands._demo.story import Step, _Story, run_story
from nitroguard.nsm import EmulatorPki

EXPECTED_STEPS = [
    "start the emulated enclave",
    "start the parent proxy",
    "client handshake through the proxy",
    "vault requests",
    "nonce-fresh attestation inside the channel",
    "attack: the parent calls the vault as a client",
    "attack: replayed client authentication",
    "attack: proxy swaps the handshake key",
    "the parent records a session",
    "attack: replayed handshake",
    "attack: replayed old document",
    "attack: debug-mode enclave",
    "attack: redirect to another enclave image",
]
# The KMS section (issue 11, nitroguard._commands._demo.kms) runs after the channel story.
KMS_STEPS = [
    "vault fetches its master key from KMS",
    "attack: parent swaps in a ciphertext under another key",
    "attack: an enclave with other PCRs asks KMS for the master key",
    "attack: a debug-mode enclave asks KMS for the master key",
    "attack: the parent answers in KMS's place (to forge an envelope)",
]


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    return subprocess.run(
        [sys.executable, "-m", "nitroguard", "demo", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
        cwd=tmp_path,  # no ../shared from here: the vector step is skipped
    )


def test_demo_json_passes(tmp_path: Path) -> None:
    proc = _run(tmp_path, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["passed"] is True
    assert [s["name"] for s in report["steps"]] == EXPECTED_STEPS + KMS_STEPS
    for step in report["steps"]:
        assert set(step) == {"name", "expected", "observed", "passed"}
        assert step["passed"] is True
    observed = {s["name"]: s["observed"] for s in report["steps"]}
    assert "[handshake_failed]" in observed["attack: proxy swaps the handshake key"]
    assert "[unauthenticated]" in observed["attack: the parent calls the vault as a client"]
    assert "[bad_binding]" in observed["attack: replayed client authentication"]
    assert "[stale_document]" in observed["attack: replayed old document"]
    assert "[debug_mode]" in observed["attack: debug-mode enclave"]
    assert "[pcr_mismatch]" in observed["attack: redirect to another enclave image"]
    # The dev PKI persisted: a second run pins the same root.
    assert (tmp_path / "state" / "nitroguard" / "emulator" / "root.pem").is_file()


def test_demo_text_story(tmp_path: Path) -> None:
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = len(EXPECTED_STEPS) + len(KMS_STEPS)
    assert f"{steps}/{steps} expectations held" in proc.stdout
    assert "NOT an AWS root" in proc.stdout
    assert "[FAIL]" not in proc.stdout


@aio
async def test_an_attack_that_succeeds_fails_the_demo(tmp_path: Path) -> None:
    """The rejection check is real: pointing it at the honest enclave makes it fail."""
    steps: list[Step] = []
    story = _Story(tmp_path, EmulatorPki.ephemeral(), steps.append)
    async with story.enclave() as honest:
        await story.expect_rejection("fake attack", "rejected", honest.address, "debug_mode")
    (step,) = steps
    assert step.passed is False
    assert step.observed.startswith("ACCEPTED")


@aio
async def test_wrong_rejection_reason_fails_the_step(tmp_path: Path) -> None:
    steps: list[Step] = []
    story = _Story(tmp_path, EmulatorPki.ephemeral(), steps.append)
    async with story.enclave(debug_mode=True) as debug:
        await story.expect_rejection("debug", "pcr_mismatch", debug.address, "pcr_mismatch")
    assert steps[0].passed is False
    assert "[debug_mode]" in steps[0].observed


@pytest.mark.vectors
@aio
async def test_story_in_process_with_vectors(attestation_vectors_dir: Path) -> None:
    """The same story in-process (ephemeral PKI), including the real-vector step."""
    steps = await run_story(EmulatorPki.ephemeral(), vectors=attestation_vectors_dir)
    assert [s.name for s in steps] == [*EXPECTED_STEPS, "real AWS attestation documents"]
    failed = [s.to_dict() for s in steps if not s.passed]
    assert not failed, failed


@pytest.mark.vectors
def test_vector_report_in_process(
    attestation_vectors_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`nitroguard demo --vectors`' report, in process: every vector as expected."""
    from nitroguard._commands._demo.vectors import find_vectors, print_report, run_vectors

    assert find_vectors(str(attestation_vectors_dir)) == attestation_vectors_dir
    report = run_vectors(attestation_vectors_dir, dt.datetime.now(dt.UTC))
    assert report["ok"] is True
    assert report["held"] == report["total"] > 0
    print_report(report)
    out = capsys.readouterr().out
    assert f"{report['total']}/{report['total']} vectors behaved as expected: OK" in out
    assert "[debug_mode]" in out  # the default policy rejects the debug documents


def test_vector_report_needs_vectors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nitroguard._commands._demo.vectors import find_vectors, run_vectors
    from nitroguard.errors import Error

    monkeypatch.delenv("NITROGUARD_SHARED", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Error, match=r"no vectors\.json found") as info:
        find_vectors(None)
    assert info.value.reason == "unreadable_input"
    (tmp_path / "vectors.json").write_text("not json")
    with pytest.raises(Error, match="cannot read") as info:
        run_vectors(tmp_path, dt.datetime.now(dt.UTC))
