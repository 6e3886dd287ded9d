"""`Finding`: the result type shared by the environment audit and the EIF static checks.

A finding is one checklist item (`id`, e.g. ``"RNG-2"``) judged against one piece
of evidence. It lives here, outside `audit` and `eif`, so that both can produce
the same type without importing each other.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

__all__ = ["Finding", "Status", "summarize"]


class Status(enum.StrEnum):
    """The verdict of one check."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One checklist item judged against evidence.

    Attributes:
        id: the checklist id (``../shared/spec/threat-checklist.md``), e.g. ``"TIME-1"``.
        title: a short human-readable title.
        status: the verdict.
        evidence: what was read and what was seen (file path and value, or a summary).
        remediation: what to change; empty when the check passed.
        file: for findings about source code (`nitroguard scan`), the file...
        line: ...and the 1-based line; both None otherwise.
    """

    id: str
    title: str
    status: Status
    evidence: str
    remediation: str = ""
    file: str | None = dataclasses.field(default=None, kw_only=True)
    line: int | None = dataclasses.field(default=None, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping with the keys `id, title, status, evidence, remediation`,
        plus `file` and `line` when the finding points into a source file."""
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "status": self.status.value,
            "evidence": self.evidence,
            "remediation": self.remediation,
        }
        if self.file is not None:
            out["file"] = self.file
            out["line"] = self.line
        return out


def summarize(findings: list[Finding] | tuple[Finding, ...]) -> dict[str, int]:
    """Count findings per status: ``{"pass": n, "warn": n, "fail": n, "skip": n}``."""
    counts = {s.value: 0 for s in Status}
    for f in findings:
        counts[f.status.value] += 1
    return counts
