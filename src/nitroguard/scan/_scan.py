"""`scan_source` and `scan_paths`: run the rules over source text and files.

`scan_source` is pure; `scan_paths` is the only function here that reads files.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

from nitroguard.errors import ConfigError, Error, Reason
from nitroguard.findings import Finding, Status
from nitroguard.scan._rules import RULES, Visitor

__all__ = ["MAX_FILE_SIZE", "scan_paths", "scan_source"]


#: Files larger than this are reported as skipped rather than parsed.
MAX_FILE_SIZE = 4 * 1024 * 1024


def scan_source(source: str, filename: str = "<string>") -> list[Finding]:
    """Scan one Python source text. Pure: no I/O.

    Returns:
        One `Finding` per suspicious place (status `warn` or `fail`), ordered by line;
        a single `skip` finding when the source does not parse.
    """
    try:
        tree = ast.parse(source, filename=filename)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None) or 0
        return [
            Finding(
                "SCAN",
                "source parses",
                Status.SKIP,
                f"{filename}:{line}: not valid Python ({exc.__class__.__name__}); not scanned",
                file=filename,
                line=line or None,
            )
        ]
    visitor = Visitor()
    visitor.visit(tree)
    lines = source.splitlines()
    findings = []
    for hit in sorted(visitor.hits, key=lambda h: (h.line, h.rule)):
        code = lines[hit.line - 1].strip() if 0 < hit.line <= len(lines) else ""
        findings.append(
            Finding(
                hit.rule,
                RULES[hit.rule],
                hit.status,
                f"{filename}:{hit.line}: {hit.message}" + (f"  | {code}" if code else ""),
                hit.remediation,
                file=filename,
                line=hit.line,
            )
        )
    return findings


def _iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for sub in sorted(path.rglob("*.py")):
                if not any(part.startswith(".") or part == "__pycache__" for part in sub.parts):
                    yield sub
        elif path.is_file():
            yield path
        elif path.exists():
            # A FIFO would block the read, a device would never end: refuse by name.
            raise ConfigError(f"{path}: not a regular file or directory", Reason.INVALID_ARGUMENT)
        else:
            raise ConfigError(f"{path}: no such file or directory", Reason.INVALID_ARGUMENT)


def scan_paths(paths: Iterable[str | Path]) -> list[Finding]:
    """Scan files and directories (recursively, ``*.py``).

    Raises:
        ConfigError: a path does not exist.
        Error: `unreadable_input` when a file cannot be read.
    """
    findings: list[Finding] = []
    for path in _iter_files(paths):
        try:
            size = path.stat().st_size
            if size > MAX_FILE_SIZE:
                findings.append(
                    Finding(
                        "SCAN",
                        "source parses",
                        Status.SKIP,
                        f"{path}: {size} bytes, over the {MAX_FILE_SIZE}-byte limit; not scanned",
                    )
                )
                continue
            source = path.read_bytes().decode("utf-8", errors="replace")
        except OSError as exc:
            raise Error(f"cannot read {path}: {exc.strerror}", Reason.UNREADABLE_INPUT) from exc
        findings.extend(scan_source(source, str(path)))
    return findings
