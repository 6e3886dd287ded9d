"""Fixtures for the NSM tests (helpers live in nsm_helpers.py)."""

from __future__ import annotations

import pytest
from nsm_helpers import Clock


@pytest.fixture
def clock() -> Clock:
    """A settable clock starting at nsm_helpers.T0."""
    return Clock()
