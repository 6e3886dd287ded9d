"""The import graph of ``src/nitroguard`` (issue 15): layers only ever import downwards.

Every module is parsed with `ast` (nothing is imported), and its imports become edges:

1. no import cycle, between modules or between packages;
2. nothing outside ``_cli.py`` / ``_commands/`` (and ``__main__``) imports the CLI;
3. runtime code never imports the shipped test kit ``nitroguard.testing``.

Imports under ``if TYPE_CHECKING:`` are not edges (they never run). Imports inside
functions are edges: a lazy import still couples the two modules.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator

import nitroguard

ROOT = pathlib.Path(nitroguard.__file__).parent
PKG = "nitroguard"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, pathlib.Path] = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(module: str) -> set[str]:
    """The nitroguard modules `module` imports at run time."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            for alias in node.names:
                # `from pkg import sub` imports the submodule when there is one.
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return {name for name in found if name == PKG or name.startswith(PKG + ".")}


GRAPH: dict[str, set[str]] = {m: _imports(m) for m in MODULES}


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in `graph` as a path (first node repeated at the end), else None."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph, white)
    parent: dict[str, str] = {}
    for start in sorted(graph):
        if color[start] != white:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        color[start] = grey
        while stack:
            node, children = stack[-1]
            for child in children:
                if child not in color:
                    continue
                if color[child] == grey:
                    cycle = [child, node]
                    while cycle[-1] != child:
                        cycle.append(parent[cycle[-1]])
                    return cycle[::-1]
                if color[child] == white:
                    color[child] = grey
                    parent[child] = node
                    stack.append((child, iter(sorted(graph[child]))))
                    break
            else:
                color[node] = black
                stack.pop()
    return None


def _is_cli(module: str) -> bool:
    return module in (f"{PKG}._cli", f"{PKG}.__main__") or module.startswith(f"{PKG}._commands")


def test_the_graph_sees_the_package() -> None:
    # Guards the parser itself: known edges must be found, or every check is vacuous.
    assert len(MODULES) > 50
    assert "nitroguard.nsm._interface" in GRAPH["nitroguard.nsm._device"]
    assert "nitroguard.nsm._codec" in GRAPH["nitroguard.nsm._interface"]
    assert "nitroguard.errors" in GRAPH["nitroguard.framing._codec"]


def test_find_cycle_finds_cycles() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_cycle() -> None:
    assert _find_cycle(GRAPH) is None


def test_no_package_cycle() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        here = _package(module)
        packages.setdefault(here, set()).update(_package(t) for t in targets if _package(t) != here)
    assert _find_cycle(packages) is None


def test_only_the_cli_imports_the_cli() -> None:
    bad = sorted(
        (module, target)
        for module, targets in GRAPH.items()
        for target in targets
        if _is_cli(target) and not _is_cli(module)
    )
    assert bad == []


def test_runtime_code_never_imports_the_test_kit() -> None:
    kit = f"{PKG}.testing"
    bad = sorted(
        (module, target)
        for module, targets in GRAPH.items()
        for target in targets
        if (target == kit or target.startswith(kit + "."))
        and not (module == kit or module.startswith(kit + ".") or _is_cli(module))
    )
    assert bad == []
