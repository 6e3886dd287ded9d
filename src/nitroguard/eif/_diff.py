"""Explain the difference between two images (``../shared/spec/eif.md`` section 7).

Reproducible builds (checklist GEN-1) are checked by rebuilding and comparing. When
the PCRs differ, the useful question is *which* input drifted: the kernel or cmdline
(PCR1), the bootstrap ramdisk (PCR1), the application ramdisks (PCR2), or only the
unmeasured metadata (no PCR changes at all).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from typing import Any

from ._format import SectionType
from ._reader import EifImage, EifSource, _Source, read_eif

__all__ = ["ImageDiff", "SectionDiff", "diff_images"]


@dataclasses.dataclass(frozen=True, slots=True)
class SectionDiff:
    """One logical section compared across the two images.

    Attributes:
        name: e.g. ``"kernel"``, ``"ramdisk 1"``, ``"metadata"``.
        status: ``"same"``, ``"differs"``, ``"only in A"`` or ``"only in B"``.
        detail: sizes, changed metadata keys, or the two cmdlines.
        measured_in: the PCRs this section feeds (empty for metadata and signature).
    """

    name: str
    status: str
    detail: str
    measured_in: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class ImageDiff:
    """The comparison of two images.

    Attributes:
        identical_bytes: the files are byte-for-byte equal.
        pcrs_differ: the names of the PCRs whose values differ.
        sections: per logical section.
    """

    identical_bytes: bool
    pcrs_differ: tuple[str, ...]
    sections: tuple[SectionDiff, ...]

    @property
    def same_measurements(self) -> bool:
        """PCR0, PCR1 and PCR2 agree (PCR8 may still differ: another signer)."""
        return not {"PCR0", "PCR1", "PCR2"} & set(self.pcrs_differ)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "IdenticalBytes": self.identical_bytes,
            "SameMeasurements": self.same_measurements,
            "PCRsDiffer": list(self.pcrs_differ),
            "Sections": [
                {
                    "Name": s.name,
                    "Status": s.status,
                    "Detail": s.detail,
                    "MeasuredIn": list(s.measured_in),
                }
                for s in self.sections
            ],
        }


def _logical(image: EifImage) -> list[tuple[str, Any, tuple[str, ...]]]:
    out: list[tuple[str, Any, tuple[str, ...]]] = []
    ramdisk = 0
    for s in image.sections:
        if s.type == SectionType.RAMDISK:
            pcrs = ("PCR0", "PCR1") if ramdisk == 0 else ("PCR0", "PCR2")
            out.append((f"ramdisk {ramdisk}", s, pcrs))
            ramdisk += 1
        elif s.type in (SectionType.KERNEL, SectionType.CMDLINE):
            out.append((s.type.name.lower(), s, ("PCR0", "PCR1")))
        elif s.type == SectionType.SIGNATURE:
            out.append(("signature", s, ("PCR8",)))
        else:
            out.append((s.type.name.lower(), s, ()))
    return out


def _digests(source: EifSource, image: EifImage) -> tuple[dict[int, bytes], bytes]:
    """SHA-384 of every section's data, and of the whole file (one streaming pass)."""
    import io
    import os
    from pathlib import Path

    if isinstance(source, bytes | bytearray | memoryview):
        fh: Any = io.BytesIO(source)
    elif isinstance(source, str | os.PathLike):
        fh = Path(source).open("rb")  # noqa: SIM115 - closed below
    else:
        fh = source
    try:
        src = _Source(fh, "image")
        buf = itertools.repeat(bytearray(1024 * 1024))
        whole = hashlib.sha384()
        for chunk in src.chunks(0, src.size, buf):
            whole.update(chunk)
        out = {}
        for s in image.sections:
            h = hashlib.sha384()
            for chunk in src.chunks(s.data_offset, s.size, buf):
                h.update(chunk)
            out[s.index] = h.digest()
        return out, whole.digest()
    finally:
        if isinstance(source, str | os.PathLike):
            fh.close()


def _metadata_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            keys += _metadata_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return keys
    return [] if a == b else [prefix.rstrip(".") or "(root)"]


def diff_images(a: EifSource, b: EifSource) -> ImageDiff:
    """Compare two images section by section and say which PCRs each change moved.

    Args:
        a: the first image (path, bytes or binary file).
        b: the second image.

    Raises:
        EifError: either image is malformed (see `read_eif`).
        Error: `unreadable_input` when a file cannot be read.
    """
    ia, ib = read_eif(a), read_eif(b)
    da, wa = _digests(a, ia)
    db, wb = _digests(b, ib)
    ma, mb = ia.measurements.as_hex(), ib.measurements.as_hex()
    pcrs = tuple(p for p in sorted(set(ma) | set(mb)) if ma.get(p) != mb.get(p))
    la = {name: (s, pcr) for name, s, pcr in _logical(ia)}
    lb = {name: (s, pcr) for name, s, pcr in _logical(ib)}
    names = [n for n, _s, _p in _logical(ia)]
    names += [n for n, _s, _p in _logical(ib) if n not in la]
    sections = []
    for name in names:
        if name not in lb:
            sections.append(SectionDiff(name, "only in A", "", la[name][1]))
            continue
        if name not in la:
            sections.append(SectionDiff(name, "only in B", "", lb[name][1]))
            continue
        sa, pcr = la[name]
        sb, _ = lb[name]
        if da[sa.index] == db[sb.index]:
            sections.append(SectionDiff(name, "same", f"{sa.size} bytes", pcr))
            continue
        detail = f"{sa.size} vs {sb.size} bytes"
        if name == "cmdline":
            detail = f"{ia.cmdline_text!r} vs {ib.cmdline_text!r}"
        elif name == "metadata":
            keys = _metadata_keys(ia.metadata, ib.metadata)
            detail = "changed keys: " + ", ".join(keys) if keys else "same JSON, other bytes"
        sections.append(SectionDiff(name, "differs", detail, pcr))
    return ImageDiff(identical_bytes=wa == wb, pcrs_differ=pcrs, sections=tuple(sections))
