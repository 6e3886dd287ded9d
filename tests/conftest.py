"""Shared fixtures: the location of the real vectors in ../shared.

The real vectors are read from ../shared (never copied into the repo). Outside CI
a missing ../shared skips those tests with a clear reason; in CI (CI=true) it is
an error, so vector tests can never be silently skipped there.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Protocol

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NITROGUARD_SHARED", REPO.parent / "shared")).resolve()
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _require_shared(sub: str) -> Path:
    path = SHARED / sub
    if not path.exists():
        if IN_CI:
            pytest.fail(f"CI needs the shared vectors at {path}, and they are missing")
        pytest.skip(f"shared vectors not found at {path} (set NITROGUARD_SHARED to run these)")
    return path


@pytest.fixture(scope="session")
def attestation_vectors_dir() -> Path:
    """`../shared/vectors/attestation`, or skip/fail as described above."""
    return _require_shared("vectors/attestation")


@pytest.fixture(scope="session")
def attestation_vectors(attestation_vectors_dir: Path) -> list[dict[str, Any]]:
    """The entries of `vectors.json`, each with an absolute `path` added."""
    entries: list[dict[str, Any]] = json.loads(
        (attestation_vectors_dir / "vectors.json").read_text()
    )
    for entry in entries:
        entry["path"] = attestation_vectors_dir / entry["file"]
    return entries


@pytest.fixture(scope="session")
def eif_vectors_dir() -> Path:
    """`../shared/vectors/eif`, or skip/fail as described above."""
    return _require_shared("vectors/eif")


@pytest.fixture(scope="session")
def kms_vectors_dir() -> Path:
    """`../shared/vectors/kms` (real CiphertextForRecipient replies), or skip/fail."""
    return _require_shared("vectors/kms")


@pytest.fixture(scope="session")
def oci_eif_vectors_dir() -> Path:
    """`../shared/vectors/oci-eif`, or skip/fail as described above."""
    return _require_shared("vectors/oci-eif")


@dataclasses.dataclass(frozen=True)
class CliResult:
    """What one in-process `nitroguard` run produced."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as exactly one JSON value (fails on anything else)."""
        return json.loads(self.out)

    # The names of `subprocess.CompletedProcess`, so tests move between the two freely.
    @property
    def returncode(self) -> int:
        return self.code

    @property
    def stdout(self) -> str:
        return self.out

    @property
    def stderr(self) -> str:
        return self.err


class RunCli(Protocol):
    def __call__(self, *argv: str | os.PathLike[str], stdin: bytes | None = None) -> CliResult: ...


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> RunCli:
    """Run ``nitroguard._cli.main([...])`` in this process: exit code, stdout, stderr.

    Use it for every CLI test where a subprocess adds nothing; keep one subprocess
    smoke test per command for the real entry point (tests/test_cli_smoke.py).
    Asserts that no traceback reached stderr: the CLI contract forbids one.
    """
    from nitroguard._cli import main

    def run(*argv: str | os.PathLike[str], stdin: bytes | None = None) -> CliResult:
        capsys.readouterr()  # drop whatever an earlier step printed
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        with pytest.raises(SystemExit) as info:
            main([os.fspath(a) for a in argv])
        out, err = capsys.readouterr()
        code = info.value.code
        assert isinstance(code, int), code
        assert "Traceback" not in err, err
        return CliResult(code, out, err)

    return run


@pytest.fixture
def unused_tcp_address() -> str:
    """A loopback TCP address nothing listens on (bound, closed, not reused at once)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"
