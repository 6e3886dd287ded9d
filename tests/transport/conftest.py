"""Shared helpers for the transport tests (real sockets only)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture
def unix_path() -> Iterator[str]:
    """A short Unix socket path (sun_path is 108 bytes; pytest's tmp_path can be longer)."""
    d = tempfile.mkdtemp(prefix="ng-")
    path = os.path.join(d, "s.sock")
    yield path
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)
