"""`describe`: is an EIF sound? The verdict ``nitroguard eif describe`` renders.

An image is *sound* when its CRC matches, its signature (if any) verifies over the
PCR0 we computed, and no static check failed, except the check ids the caller
allows by name. `Description.to_dict` is nitro-cli's ``describe-eif`` JSON shape
(``Measurements``, ``IsSigned``, ``SigningCertificate``, ``CheckCRC``,
``SignatureCheck``, ``Metadata``, ...) plus nitroguard's own keys (``Findings``,
``Sound``, ...).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Any, final

from nitroguard.errors import ConfigError
from nitroguard.findings import Finding, Status

from ._checks import static_checks
from ._reader import EifImage, EifSource, read_eif
from ._signature import SignatureReport

__all__ = ["Description", "certificate_view", "describe", "metadata_view"]


@final
@dataclasses.dataclass(frozen=True, slots=True)
class Description:
    """What `describe` decided about one image.

    Attributes:
        image: the parsed image.
        at: when the signing certificate's validity was judged.
        signature: the signature report, or None for an unsigned image.
        findings: every static check (`static_checks`), allowed failures included.
        allowed: the check ids whose failure the caller accepted (upper case).
        problems: why the image is not sound, readable (empty when sound).
    """

    image: EifImage
    at: dt.datetime
    signature: SignatureReport | None
    findings: tuple[Finding, ...]
    allowed: frozenset[str]
    problems: tuple[str, ...]

    @property
    def sound(self) -> bool:
        """True when nothing is wrong: CRC, signature and (non-allowed) checks all hold."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """nitro-cli's ``describe-eif`` JSON, plus nitroguard's findings and verdict."""
        image, report = self.image, self.signature
        meta = image.metadata if isinstance(image.metadata, dict) else {}
        out: dict[str, Any] = {
            "EifVersion": image.version,
            "Measurements": image.measurements.to_dict(),
            "IsSigned": image.is_signed,
        }
        if report is not None:
            out["SigningCertificate"] = certificate_view(image, report)
        out["CheckCRC"] = image.crc_ok
        if report is not None:
            out["SignatureCheck"] = report.ok
            out["Signature"] = report.to_dict()
        out["ImageName"] = meta.get("ImageName")
        out["ImageVersion"] = meta.get("ImageVersion")
        out["Metadata"] = metadata_view(image.metadata)
        out["Arch"] = image.header.arch
        out["FileSize"] = image.file_size
        out["CRC32"] = {
            "Stored": f"{image.header.crc32:#010x}",
            "Computed": f"{image.crc_computed:#010x}",
        }
        out["Sections"] = [
            {"Index": s.index, "Type": s.type.name.lower(), "Offset": s.offset, "Size": s.size}
            for s in image.sections
        ]
        out["KernelVersion"] = image.kernel_version
        out["LayoutIssues"] = list(image.layout_issues)
        out["Findings"] = [f.to_dict() for f in self.findings]
        out["Allowed"] = sorted(self.allowed)
        out["Sound"] = self.sound
        return out


def describe(
    image: EifImage | EifSource,
    *,
    at: dt.datetime | None = None,
    allow: Iterable[str] = (),
) -> Description:
    """Judge an image: CRC, signature over our PCR0, and the static checks.

    Args:
        image: a parsed image, or a source for `read_eif` (read with
            ``check_crc=False``: a CRC mismatch is a finding here, not an error).
        at: when to judge the signing certificate's validity; default now (read once).
        allow: check ids (e.g. ``"RNG-3"``, any case) whose failure does not make
            the image unsound; they are still listed in `Description.findings`.

    Raises:
        ConfigError: an `allow` id names no static check.
        EifError: the image is malformed (see `read_eif`).
        Error: `unreadable_input` when it cannot be read.
    """
    if at is None:
        at = dt.datetime.now(dt.UTC)
    if not isinstance(image, EifImage):
        image = read_eif(image, check_crc=False)
    report = image.check_signature(at)
    findings = tuple(static_checks(image))
    allowed = frozenset(a.upper() for a in allow)
    # A misspelt id would silently allow nothing: refuse it (as the CLI's --allow does).
    unknown = sorted(allowed - {f.id for f in findings})
    if unknown:
        raise ConfigError(
            f"--allow: unknown finding id(s) {', '.join(unknown)}; "
            f"known: {', '.join(f.id for f in findings)}"
        )
    problems: list[str] = []
    if not image.crc_ok:
        problems.append("CRC mismatch")
    if report is not None and not report.ok:
        problems.append(f"signature: {report.message}")
    problems += [
        f"{f.id} failed" for f in findings if f.status is Status.FAIL and f.id not in allowed
    ]
    return Description(image, at, report, findings, allowed, tuple(problems))


def metadata_view(metadata: Any) -> Any:
    """nitro-cli's ``Metadata``: BuildMetadata fields, DockerInfo, custom keys flattened."""
    if not isinstance(metadata, dict):
        return metadata
    view: dict[str, Any] = {}
    build = metadata.get("BuildMetadata")
    if isinstance(build, dict):
        view.update(build)
    view["DockerInfo"] = metadata.get("DockerInfo")
    custom = metadata.get("CustomMetadata")
    if isinstance(custom, dict):
        view.update(custom)
    elif custom is not None:
        view["CustomMetadata"] = custom
    return view


def certificate_view(image: EifImage, report: SignatureReport) -> dict[str, Any]:
    """nitro-cli's ``SigningCertificate`` fields (the certificate's own signature
    algorithm and signature, ``XX:XX`` hex), plus the subject."""
    from cryptography.x509.oid import SignatureAlgorithmOID

    names = {
        SignatureAlgorithmOID.ECDSA_WITH_SHA256: "ecdsa-with-SHA256",
        SignatureAlgorithmOID.ECDSA_WITH_SHA384: "ecdsa-with-SHA384",
        SignatureAlgorithmOID.ECDSA_WITH_SHA512: "ecdsa-with-SHA512",
    }
    view: dict[str, Any] = {
        "IssuerName": report.issuer,
        "SubjectName": report.subject,
        "NotBefore": report.to_dict()["NotBefore"],
        "NotAfter": report.to_dict()["NotAfter"],
    }
    if image.signature is not None:
        cert = image.signature.certificate
        oid = cert.signature_algorithm_oid
        view["Algorithm"] = names.get(oid, oid.dotted_string)
        view["Signature"] = ":".join(f"{b:02X}" for b in cert.signature)
    return view
