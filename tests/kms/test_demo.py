"""The KMS section of `nitroguard demo`: every expectation holds, each for its own reason."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nitroguard._commands._demo.kms import run_kms_story
from nitroguard.nsm import EmulatorPki


def test_kms_story_holds(tmp_path: Path) -> None:
    steps = asyncio.run(run_kms_story(EmulatorPki.ephemeral(), tmp_path))
    assert [s.passed for s in steps] == [True] * 5, [s.observed for s in steps]
    observed = [s.observed for s in steps]
    assert "matches" in observed[0]
    assert observed[1].startswith("IncorrectKeyException")
    assert observed[2].startswith("AccessDeniedException")
    assert observed[3].startswith("AccessDeniedException")
    assert observed[4] == "SSLError [kms_request_failed]; impostor received 0 requests"
