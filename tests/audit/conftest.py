"""Fixtures for the audit tests: fake roots built by `audit_trees`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from audit_trees import BUILDERS, Tree


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """An empty fake root."""
    root = tmp_path / "root"
    root.mkdir()
    return Tree(root)


@pytest.fixture
def make_tree(tmp_path: Path) -> Callable[[str], Tree]:
    """Build a named scenario: well_configured, aws_default, laptop, laptop_none."""

    def make(name: str) -> Tree:
        root = tmp_path / name
        root.mkdir()
        return BUILDERS[name](Tree(root))

    return make
