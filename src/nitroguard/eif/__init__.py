"""Read, measure, verify, check and build Enclave Image Files (EIF).

Everything follows ``../shared/spec/eif.md``. Quick tour::

    from nitroguard.eif import read_eif, verify_signature, static_checks

    image = read_eif("app.eif")             # validates layout + CRC, streams, measures
    print(image.measurements.as_hex())      # {"PCR0": ..., "PCR1": ..., "PCR2": ...}
    if image.is_signed:
        verify_signature(image)             # over OUR PCR0; raises EifError on failure
    for finding in static_checks(image):    # RNG-2, TIME-2, CPU-1, RNG-3, NSM-1, layout
        print(finding.id, finding.status)

`build_eif` writes an image deterministically (nitro-cli's section order, no
wall-clock time, optional deterministic signing). `build_eif_from_image` does what
``nitro-cli build-enclave`` does, from a ``docker export`` or an OCI image, without
Docker, with the same PCRs (docs/eif.md, "Build from an image").
"""

from __future__ import annotations

import datetime as dt

from nitroguard.errors import EifError, Reason

from ._checks import kernel_params, static_checks
from ._diff import ImageDiff, SectionDiff, diff_images
from ._format import EifHeader, SectionType
from ._image import ImageConfig, parse_image_config
from ._imagebuild import ImageBuildResult, build_eif_from_image
from ._measure import Measurements, extend_from_zero, pcr_of_bytes
from ._reader import EifImage, EifSource, Section, read_eif
from ._signature import SignatureReport, SignatureSection, pcr_payload
from ._writer import (
    EPOCH_BUILD_TIME,
    BuildResult,
    Signer,
    StreamedInput,
    build_eif,
    default_metadata,
    sign_eif,
)

__all__ = [
    "EPOCH_BUILD_TIME",
    "BuildResult",
    "EifHeader",
    "EifImage",
    "ImageBuildResult",
    "ImageConfig",
    "ImageDiff",
    "Measurements",
    "Section",
    "SectionDiff",
    "SectionType",
    "SignatureReport",
    "SignatureSection",
    "Signer",
    "StreamedInput",
    "build_eif",
    "build_eif_from_image",
    "check_signature",
    "default_metadata",
    "diff_images",
    "extend_from_zero",
    "kernel_params",
    "measure",
    "parse_image_config",
    "pcr_of_bytes",
    "pcr_payload",
    "read_eif",
    "sign_eif",
    "static_checks",
    "verify_signature",
]


def measure(source: EifSource) -> Measurements:
    """PCR0/1/2 (and PCR8 when signed) of an image, validating it on the way.

    Raises:
        EifError: the image is malformed (see `read_eif`).
        Error: `unreadable_input` when it cannot be read.
    """
    return read_eif(source).measurements


def check_signature(image: EifImage, *, at: dt.datetime | None = None) -> SignatureReport:
    """Judge the signature of a signed image; never raises on a bad signature.

    The signature is verified over the payload rebuilt from the image's own PCR0
    (Trail of Bits: reconstruct, don't parse); the embedded payload is only compared.

    Args:
        image: a parsed image.
        at: when to judge the certificate's validity; default now (read once here).

    Raises:
        EifError: `not_signed` when the image has no signature section.
    """
    if at is None:
        at = dt.datetime.now(dt.UTC)
    report = image.check_signature(at)
    if report is None:
        raise EifError("the image is not signed", Reason.NOT_SIGNED)
    return report


def verify_signature(image: EifImage, *, at: dt.datetime | None = None) -> SignatureReport:
    """Like `check_signature`, but raise on any failure.

    Raises:
        EifError: `not_signed`, `bad_signature`, `signature_payload_mismatch`,
            `expired_certificate`, `not_yet_valid_certificate` or `unsupported_algorithm`.
    """
    report = check_signature(image, at=at)
    report.raise_for_failure()
    return report
