"""Shared fixtures: the location of the real vectors in ../shared.

The real vectors are read from ../shared (never copied into the repo). Outside CI
a missing ../shared skips those tests with a clear reason; in CI (CI=true) it is
an error, so vector tests can never be silently skipped there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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
