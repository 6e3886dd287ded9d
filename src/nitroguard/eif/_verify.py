"""Measure an image and judge its signature (the short forms of `read_eif` and
`EifImage.check_signature`)."""

from __future__ import annotations

import datetime as dt

from nitroguard.errors import EifError, Reason

from ._measure import Measurements
from ._reader import EifImage, EifSource, read_eif
from ._signature import SignatureReport

__all__ = ["check_signature", "measure", "verify_signature"]


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
