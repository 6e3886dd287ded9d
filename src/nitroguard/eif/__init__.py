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
Docker, with the same PCRs (docs/eif.md, "Build from an image"). `describe` gives
the verdict of ``nitroguard eif describe`` (CRC, signature, static checks) as a
`Description`.
"""

from ._checks import kernel_params, static_checks
from ._describe import Description, certificate_view, describe, metadata_view
from ._diff import ImageDiff, SectionDiff, diff_images
from ._format import EifHeader, SectionType
from ._image import ImageConfig, parse_image_config
from ._imagebuild import ImageBuildResult, build_eif_from_image
from ._measure import Measurements, extend_from_zero, pcr_of_bytes
from ._reader import EifImage, EifSource, Section, read_eif
from ._signature import SignatureReport, SignatureSection, pcr_payload
from ._verify import check_signature, measure, verify_signature
from ._writer import (
    EPOCH_BUILD_TIME,
    BuildResult,
    Signer,
    StreamedInput,
    build_eif,
    default_metadata,
    kernel_version,
    metadata_from_kernel,
    sign_eif,
)

__all__ = [
    "EPOCH_BUILD_TIME",
    "BuildResult",
    "Description",
    "EifHeader",
    "EifImage",
    "EifSource",
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
    "certificate_view",
    "check_signature",
    "default_metadata",
    "describe",
    "diff_images",
    "extend_from_zero",
    "kernel_params",
    "kernel_version",
    "measure",
    "metadata_from_kernel",
    "metadata_view",
    "parse_image_config",
    "pcr_of_bytes",
    "pcr_payload",
    "read_eif",
    "sign_eif",
    "static_checks",
    "verify_signature",
]
