"""What each package exports (issue 15): the trio/h11 rule, enforced.

Implementation lives in ``_``-modules; a package's ``__init__`` only re-exports, with
``__all__``. For every converted package: every ``__all__`` name resolves, no name is
listed twice, no ``_``-name is exported, and the ``__init__`` holds no logic (only a
docstring, imports and ``__all__``).
"""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

import nitroguard

ROOT = pathlib.Path(nitroguard.__file__).parent

#: Packages already in the ``_``-module form.
CONVERTED = (
    "app",
    "attestation",
    "audit",
    "channel",
    "eif",
    "fleet",
    "framing",
    "hazmat",
    "kms",
    "nsm",
    "scan",
    "transport",
)

#: Packages still to convert in phase 2 of issue 15 (the lead empties this list).
#: Only the checks that already hold for them run (names resolve, no duplicates).
PHASE2 = ("probe", "testing")


def _packages() -> list[str]:
    # Private packages (``_commands``, the CLI) export nothing.
    return sorted(
        p.parent.name for p in ROOT.glob("*/__init__.py") if not p.parent.name.startswith("_")
    )


def _all(package: str) -> list[str]:
    module = importlib.import_module(f"nitroguard.{package}")
    names = getattr(module, "__all__", None)
    assert isinstance(names, list | tuple), f"nitroguard.{package} has no __all__"
    return list(names)


def test_every_package_is_classified() -> None:
    assert set(_packages()) <= set(CONVERTED) | set(PHASE2)
    assert set(CONVERTED) <= set(_packages())


@pytest.mark.parametrize("package", CONVERTED)
def test_exports_resolve_once_and_are_public(package: str) -> None:
    module = importlib.import_module(f"nitroguard.{package}")
    names = _all(package)
    assert [n for n in names if not hasattr(module, n)] == []
    assert sorted({n for n in names if names.count(n) > 1}) == []
    assert [n for n in names if n.startswith("_")] == []


@pytest.mark.parametrize("package", CONVERTED)
def test_init_is_logic_free(package: str) -> None:
    tree = ast.parse((ROOT / package / "__init__.py").read_text())
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    logic = [
        ast.unparse(node)[:60]
        for node in body
        if not isinstance(node, ast.Import | ast.ImportFrom)
        and not (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["__all__"]
        )
    ]
    assert logic == []


@pytest.mark.parametrize("package", [p for p in PHASE2 if (ROOT / p).is_dir()])
def test_phase2_exports_resolve_once(package: str) -> None:
    module = importlib.import_module(f"nitroguard.{package}")
    names = getattr(module, "__all__", [])
    assert [n for n in names if not hasattr(module, n)] == []
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_a_broken_export_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The check above must be able to fail: a name listed but missing is reported.
    import nitroguard.scan

    monkeypatch.setattr(nitroguard.scan, "__all__", [*nitroguard.scan.__all__, "missing"])
    with pytest.raises(AssertionError):
        test_exports_resolve_once_and_are_public("scan")
