"""`nitroguard eif`: describe, measure and build Enclave Image Files.

- ``nitroguard eif describe FILE [--json] [--at TIME] [--allow ID]``: validate the
  layout and CRC, recompute PCR0/1/2/8, verify the signature over our own PCR0, and
  run the static checks. JSON uses ``nitro-cli describe-eif``'s field names.
- ``nitroguard eif pcr FILE [--json]``: only the PCRs.
- ``nitroguard eif build --kernel K --cmdline TEXT|@FILE --ramdisk R... -o OUT``:
  a deterministic (and atomic) build, optionally signed.
- ``nitroguard eif build (--docker-export TAR --image-config FILE | --oci PATH) --blobs DIR
  -o OUT``: what ``nitro-cli build-enclave`` does, without Docker (same PCRs); also
  writes ``OUT.pcrs.json``.
- ``nitroguard eif verify IMAGE --expect PCRS.json``: exit 0 only if every listed PCR
  matches.
- ``nitroguard eif diff A B``: which sections differ and which PCRs that moves
  (exit 0 when PCR0/1/2 agree: a reproducible rebuild).
- ``nitroguard eif sign FILE --sign-cert PEM --sign-key PEM -o OUT``: sign an
  unsigned image like ``nitro-cli sign-eif``.

Exit codes: 0 sound, 1 failed CRC / signature / check or malformed image,
2 unreadable input or usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from nitroguard.errors import ConfigError, Error, Reason
from nitroguard.findings import Finding, Status, summarize

from ._common import emit_json, parse_time

if TYPE_CHECKING:
    from nitroguard.eif import BuildResult, Signer

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `eif` subcommand and its `describe`, `pcr` and `build` actions."""
    parser = sub.add_parser(
        "eif",
        help="describe, measure and build Enclave Image Files",
        description="Parse, measure, verify and build EIF images without nitro-cli or Docker.",
    )
    actions = parser.add_subparsers(dest="eif_command", metavar="ACTION")
    actions.required = True

    describe = actions.add_parser(
        "describe",
        help="validate an image, recompute its PCRs, verify its signature, run static checks",
    )
    describe.add_argument("file", metavar="FILE", help="the .eif file")
    describe.add_argument("--json", action="store_true", help="one JSON object on stdout")
    describe.add_argument(
        "--at",
        metavar="TIME",
        help="judge the signing certificate's validity at TIME (ISO-8601 or epoch ms; "
        "default: now)",
    )
    describe.add_argument(
        "--allow",
        metavar="ID",
        action="append",
        default=[],
        help="do not fail on this finding id (e.g. RNG-2); repeatable",
    )
    describe.set_defaults(func=_describe)

    pcr = actions.add_parser("pcr", help="print only the PCRs of an image")
    pcr.add_argument("file", metavar="FILE", help="the .eif file")
    pcr.add_argument("--json", action="store_true", help="one JSON object on stdout")
    pcr.set_defaults(func=_pcr)

    build = actions.add_parser(
        "build",
        help="write an EIF deterministically (nitro-cli's layout), optionally signed",
    )
    build.add_argument("--kernel", metavar="FILE", help="bzImage or Image")
    build.add_argument(
        "--cmdline",
        metavar="TEXT|@FILE",
        help="kernel command line, or @FILE to read it (trailing newline trimmed, like nitro-cli)",
    )
    build.add_argument(
        "--ramdisk",
        action="append",
        metavar="FILE",
        help="ramdisk, in order; repeat for more (the first is measured in PCR1)",
    )
    _add_image_arguments(build)
    build.add_argument(
        "--metadata",
        metavar="JSON|@FILE",
        help="the exact metadata section (JSON); default: generated, with the epoch as build time",
    )
    build.add_argument("--image-name", help="ImageName for generated metadata")
    build.add_argument("--image-version", default="1.0", help="ImageVersion (default 1.0)")
    build.add_argument(
        "--build-time",
        metavar="TIME|now",
        help="BuildTime for generated metadata (default 1970-01-01T00:00:00+00:00; "
        "'now' reads the clock)",
    )
    build.add_argument(
        "--arch",
        choices=["x86_64", "aarch64"],
        help="EIF architecture (default x86_64; from an image: the image's architecture)",
    )
    build.add_argument("--sign-cert", metavar="PEM", help="signing certificate (PEM)")
    build.add_argument("--sign-key", metavar="PEM", help="EC private key (PEM, unencrypted)")
    build.add_argument("-o", "--output", required=True, metavar="OUT", help="output .eif")
    build.add_argument("--json", action="store_true", help="print the measurements as JSON")
    build.set_defaults(func=_build)

    sign = actions.add_parser(
        "sign", help="sign an unsigned image like `nitro-cli sign-eif` (appends a section)"
    )
    sign.add_argument("file", metavar="FILE", help="the unsigned .eif")
    sign.add_argument("--sign-cert", required=True, metavar="PEM", help="certificate (PEM)")
    sign.add_argument("--sign-key", required=True, metavar="PEM", help="EC private key (PEM)")
    sign.add_argument("-o", "--output", required=True, metavar="OUT", help="signed .eif")
    sign.add_argument("--json", action="store_true", help="print the measurements as JSON")
    sign.set_defaults(func=_sign)

    _register_verify(actions)

    diff = actions.add_parser(
        "diff",
        help="compare two images: which sections differ and which PCRs that moves "
        "(exit 0 when PCR0/1/2 agree)",
    )
    diff.add_argument("a", metavar="A", help="first .eif")
    diff.add_argument("b", metavar="B", help="second .eif")
    diff.add_argument("--json", action="store_true", help="one JSON object on stdout")
    diff.set_defaults(func=_diff)


# --- describe -----------------------------------------------------------------------


def _fail_json(exc: Error, as_json: bool) -> NoReturn:
    # The CLI's one error path (`nitroguard._cli`) renders it: the same exit code,
    # stderr line and `--json` error object as every other command.
    del as_json
    raise exc


#: Inputs at least this large get a progress line on stderr (when it is a terminal).
_PROGRESS_BYTES = 32 * 1024 * 1024


def _progress(what: str, paths: list[str], *, tty: bool | None = None) -> None:
    """One line on stderr before long work on large files, only for a terminal."""
    if not (sys.stderr.isatty() if tty is None else tty):
        return
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += Path(path).stat().st_size
    if total >= _PROGRESS_BYTES:
        sys.stderr.write(f"{what}: {total / (1 << 20):.0f} MiB to read and hash...\n")
        sys.stderr.flush()


def _nonempty(path: str) -> str:
    """`path`, unless it is an empty regular file: the same `unreadable_input` (exit 2)
    that `attest` gives for empty input, not a truncated-image failure."""
    try:
        empty = Path(path).stat().st_size == 0 and Path(path).is_file()
    except OSError:
        return path  # the reader reports it, with its own reason
    if empty:
        raise Error(f"{path}: empty input", Reason.UNREADABLE_INPUT)
    return path


def _describe(args: argparse.Namespace) -> int:
    from nitroguard.eif import certificate_view, metadata_view, read_eif, static_checks

    # The clock is read once, here, at the boundary.
    at = parse_time(args.at) if args.at else dt.datetime.now(dt.UTC)
    try:
        _progress(f"eif describe {args.file}", [args.file])
        image = read_eif(_nonempty(args.file), check_crc=False)
    except Error as exc:
        return _fail_json(exc, args.json)
    report = image.check_signature(at)
    findings = static_checks(image)
    allowed = {a.upper() for a in args.allow}
    unknown = sorted(allowed - {f.id for f in findings})
    if unknown:
        raise ConfigError(
            f"--allow: unknown finding id(s) {', '.join(unknown)}; "
            f"known: {', '.join(f.id for f in findings)}"
        )
    failed_findings = [f for f in findings if f.status is Status.FAIL and f.id not in allowed]
    problems: list[str] = []
    if not image.crc_ok:
        problems.append("CRC mismatch")
    if report is not None and not report.ok:
        problems.append(f"signature: {report.message}")
    problems += [f"{f.id} failed" for f in failed_findings]
    code = EXIT_FAILED if problems else EXIT_OK

    if args.json:
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
        out["Findings"] = [f.to_dict() for f in findings]
        out["Allowed"] = sorted(allowed)
        out["Sound"] = not problems
        emit_json(out)
        return code

    w = sys.stdout.write
    h = image.header
    w(f"EIF version {h.version} ({h.arch}), {image.file_size} bytes, {h.num_sections} sections\n")
    for s in image.sections:
        w(f"  [{s.index}] {s.type.name.lower():<9} offset {s.offset:>12}  size {s.size:>12}\n")
    w("\nMeasurements (SHA-384):\n")
    for name, value in image.measurements.as_hex().items():
        w(f"  {name}  {value}\n")
    w(
        f"\nCRC-32     {'ok' if image.crc_ok else 'MISMATCH'} (stored {h.crc32:#010x}, "
        f"computed {image.crc_computed:#010x})\n"
    )
    if report is None:
        w("Signature  none (unsigned image)\n")
    else:
        alg = report.to_dict()["Algorithm"]
        verdict = "ok" if report.ok else f"FAILED: {report.message} [{report.reason}]"
        w(f"Signature  {verdict}\n")
        w(f"  {alg} by {report.subject} (issuer {report.issuer})\n")
        nb = report.not_before.isoformat() if report.not_before else "?"
        na = report.not_after.isoformat() if report.not_after else "?"
        w(f"  valid {nb} .. {na}, checked at {at.isoformat()}\n")
        w(
            f"  signature over our PCR0: {'valid' if report.signature_valid else 'INVALID'}; "
            f"embedded payload {'matches' if report.payload_matches else 'DOES NOT MATCH'}\n"
        )
    if isinstance(image.metadata, dict):
        meta_view = metadata_view(image.metadata)
        w("\nMetadata (not attested: editing it changes no PCR)\n")
        for key in ("ImageName", "ImageVersion"):
            w(f"  {key}: {image.metadata.get(key)}\n")
        if isinstance(meta_view, dict):
            for key, value in meta_view.items():
                if key != "DockerInfo" or value is not None:
                    w(f"  {key}: {value}\n")
    w(f"\nCmdline: {image.cmdline_text}\n")
    if image.kernel_version:
        w(f"Kernel:  {image.kernel_version}\n")
    w("\nFindings:\n")
    for f in findings:
        _write_finding(f, allowed)
    counts = summarize(findings)
    w(
        f"\n{counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail, "
        f"{counts['skip']} skip\n"
    )
    w("Result: SOUND\n" if not problems else f"Result: FAILED ({'; '.join(problems)})\n")
    return code


def _write_finding(f: Finding, allowed: set[str]) -> None:
    w = sys.stdout.write
    tag = f.status.value.upper()
    if f.status is Status.FAIL and f.id in allowed:
        tag = "FAIL (allowed)"
    w(f"  {tag:<5} {f.id:<10} {f.title}\n")
    w(f"        {f.evidence}\n")
    if f.remediation:
        w(f"        fix: {f.remediation}\n")


# --- pcr ----------------------------------------------------------------------------


def _pcr(args: argparse.Namespace) -> int:
    from nitroguard.eif import read_eif

    try:
        image = read_eif(_nonempty(args.file))
    except Error as exc:
        return _fail_json(exc, args.json)
    values = image.measurements.as_hex()
    if args.json:
        emit_json(values)
    else:
        for name, value in values.items():
            sys.stdout.write(f"{name} {value}\n")
    return EXIT_OK


# --- diff -----------------------------------------------------------------------------


def _diff(args: argparse.Namespace) -> int:
    from nitroguard.eif import diff_images

    try:
        result = diff_images(_nonempty(args.a), _nonempty(args.b))
    except Error as exc:
        return _fail_json(exc, args.json)
    code = EXIT_OK if result.same_measurements else EXIT_FAILED
    if args.json:
        emit_json(result.to_dict())
        return code
    w = sys.stdout.write
    for s in result.sections:
        pcrs = f" [{', '.join(s.measured_in)}]" if s.measured_in else " [not measured]"
        w(f"  {s.status:<9} {s.name:<11}{pcrs}  {s.detail}\n")
    if result.identical_bytes:
        w("Result: identical files\n")
    elif result.same_measurements:
        extra = ""
        if "PCR8" in result.pcrs_differ:
            extra = " (PCR8 differs: another signer, or only one image is signed)"
        w(f"Result: same PCR0/PCR1/PCR2; only unmeasured parts differ{extra}\n")
    else:
        w(f"Result: PCRs differ: {', '.join(result.pcrs_differ)}\n")
    return code


# --- build --------------------------------------------------------------------------


def _read_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise Error(f"cannot read {what} {path}: {exc.strerror}", Reason.UNREADABLE_INPUT) from exc


def _text_or_file(value: str, what: str) -> bytes:
    # surrogateescape: argv bytes that are not UTF-8 come back as they were given.
    data = (
        _read_file(value[1:], what)
        if value.startswith("@")
        else value.encode("utf-8", "surrogateescape")
    )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # nitro-cli reads the cmdline as UTF-8 text; other bytes cannot be measured alike.
        raise ConfigError(
            f"--{what}: not valid UTF-8 (byte {exc.start}: {data[exc.start : exc.start + 1]!r})"
        ) from None
    return data


def _signer(cert_path: str, key_path: str) -> Signer:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from nitroguard.eif import Signer

    cert_pem = _read_file(cert_path, "signing certificate")
    key_pem = _read_file(key_path, "signing key")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot load the signing key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("the signing key must be an EC key (P-256, P-384 or P-521)")
    return Signer(cert_pem, key)


def _print_result(result: BuildResult, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "Path": str(result.path),
                "Size": result.size,
                "CRC32": f"{result.crc32:#010x}",
                "Measurements": result.measurements.to_dict(),
            }
        )
        return
    sys.stdout.write(f"wrote {result.path} ({result.size} bytes)\n")
    for name, value in result.measurements.as_hex().items():
        sys.stdout.write(f"{name} {value}\n")


def _sign(args: argparse.Namespace) -> int:
    from nitroguard.eif import sign_eif

    signer = _signer(args.sign_cert, args.sign_key)
    try:
        _progress(f"eif sign {args.file}", [args.file])
        result = sign_eif(_nonempty(args.file), args.output, signer=signer)
    except Error as exc:
        return _fail_json(exc, args.json)
    _print_result(result, args.json)
    return EXIT_OK


def _build(args: argparse.Namespace) -> int:
    if args.docker_export is not None or args.oci is not None:
        return _build_image(args)
    missing = [
        flag
        for flag, value in (("--kernel", args.kernel), ("--cmdline", args.cmdline))
        if value is None
    ]
    if not args.ramdisk:
        missing.append("--ramdisk")
    if missing:
        raise ConfigError(
            f"eif build needs {', '.join(missing)} (or --docker-export/--oci with --blobs)"
        )
    from nitroguard.eif import EPOCH_BUILD_TIME, build_eif, default_metadata, kernel_version

    # nitro-cli trims the cmdline blob (spec 2.4); a trailing newline would change PCR0.
    cmdline = _text_or_file(args.cmdline, "cmdline").strip()
    if args.metadata is not None:
        metadata = _text_or_file(args.metadata, "metadata")
    else:
        if args.build_time is None:
            build_time = EPOCH_BUILD_TIME
        elif args.build_time == "now":
            build_time = dt.datetime.now(dt.UTC).isoformat()
        else:
            build_time = parse_time(args.build_time).isoformat()
        kver = kernel_version(args.kernel)
        metadata = default_metadata(
            image_name=args.image_name or Path(args.kernel).name,
            image_version=args.image_version,
            build_time=build_time,
            kernel_version=kver.split()[0] if kver else "unknown",
        )
    if (args.sign_cert is None) != (args.sign_key is None):
        raise ConfigError("--sign-cert and --sign-key go together")
    signer = _signer(args.sign_cert, args.sign_key) if args.sign_cert else None
    _progress(f"eif build {args.output}", [args.kernel, *args.ramdisk])
    result = build_eif(
        args.output,
        kernel=args.kernel,
        cmdline=cmdline,
        ramdisks=args.ramdisk,
        metadata=metadata,
        signer=signer,
        arch=args.arch or "x86_64",
    )
    _print_result(result, args.json)
    return EXIT_OK


# --- build from a container image (issue 13) ---------------------------------------------


def _add_image_arguments(build: argparse.ArgumentParser) -> None:
    group = build.add_argument_group(
        "build from a container image (nitro-cli build-enclave without Docker)"
    )
    group.add_argument(
        "--docker-export",
        metavar="TAR",
        help="`docker export` of a created container (needs --image-config)",
    )
    group.add_argument(
        "--image-config",
        metavar="FILE",
        help="`docker inspect` output (object or one-element list) or an OCI image config",
    )
    group.add_argument(
        "--oci", metavar="PATH", help="OCI layout directory or tar, or a `docker save` tar"
    )
    group.add_argument("--platform", metavar="OS/ARCH", help="pick one image of an index")
    group.add_argument(
        "--blobs",
        metavar="DIR",
        help="nitro-cli blob directory: init, nsm.ko, cmdline, bzImage or Image",
    )
    group.add_argument(
        "--ramdisk-dir",
        metavar="DIR",
        help="also write bootstrap-initrd.img and customer-initrd.img there",
    )
    group.add_argument(
        "--allow-unreproducible",
        action="store_true",
        help="build even where dockerd would stamp the current time (implied layer "
        "directories, a missing WorkingDir): the PCRs then match no nitro-cli build",
    )
    group.add_argument(
        "--progress",
        action="store_true",
        help="report progress on stderr (default: only when stderr is a terminal)",
    )


class _Progress:
    """Bytes of file data copied into the customer ramdisk, reported on stderr."""

    def __init__(self) -> None:
        self.done = 0
        self._shown = 0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.done - self._shown >= 64 << 20:
            self._shown = self.done
            sys.stderr.write(f"\rcustomer ramdisk: {self.done >> 20} MiB of file data")
            sys.stderr.flush()

    def finish(self) -> None:
        sys.stderr.write(f"\rcustomer ramdisk: {self.done / (1 << 20):.1f} MiB of file data\n")


def _build_image(args: argparse.Namespace) -> int:
    import os

    from nitroguard.eif._imagebuild import build_eif_from_image, build_time_from_epoch

    if args.blobs is None:
        raise ConfigError("building from an image needs --blobs DIR (init, nsm.ko, cmdline)")
    if args.ramdisk:
        raise ConfigError("--ramdisk cannot be combined with --docker-export/--oci")
    if (args.sign_cert is None) != (args.sign_key is None):
        raise ConfigError("--sign-cert and --sign-key go together")
    signer = _signer(args.sign_cert, args.sign_key) if args.sign_cert else None
    cmdline = _text_or_file(args.cmdline, "cmdline") if args.cmdline is not None else None
    metadata = _text_or_file(args.metadata, "metadata") if args.metadata is not None else None
    show = args.progress or sys.stderr.isatty()
    progress = _Progress() if show else None
    # The environment is read here, at the boundary (reproducible-builds.org convention).
    build_time = build_time_from_epoch(os.environ.get("SOURCE_DATE_EPOCH"))
    if args.build_time is not None:
        build_time = parse_time(args.build_time).isoformat()
    try:
        result = build_eif_from_image(
            Path(args.output),
            blobs=Path(args.blobs),
            docker_export=Path(args.docker_export) if args.docker_export else None,
            image_config=Path(args.image_config) if args.image_config else None,
            oci=Path(args.oci) if args.oci else None,
            platform=args.platform,
            allow_unreproducible=args.allow_unreproducible,
            arch=args.arch,
            kernel=Path(args.kernel) if args.kernel else None,
            cmdline=cmdline,
            ramdisk_dir=Path(args.ramdisk_dir) if args.ramdisk_dir else None,
            signer=signer,
            metadata=metadata,
            image_name=args.image_name,
            build_time=build_time,
            progress=progress,
        )
    except Error as exc:
        if progress is not None:
            sys.stderr.write("\n")
        return _fail_json(exc, args.json)
    if progress is not None:
        progress.finish()
    for warning in result.warnings:
        sys.stderr.write(f"nitroguard: warning: {warning}\n")
    if args.json:
        emit_json(
            {
                "Path": str(result.eif.path),
                "Size": result.eif.size,
                "CRC32": f"{result.eif.crc32:#010x}",
                "Arch": result.arch,
                "BootstrapRamdiskSize": result.bootstrap_size,
                "CustomerRamdiskSize": result.customer_size,
                "PcrsFile": str(result.pcrs_path),
                "Warnings": list(result.warnings),
                "Measurements": result.eif.measurements.to_dict(),
            }
        )
        return EXIT_OK
    _print_result(result.eif, False)
    sys.stdout.write(f"wrote {result.pcrs_path}\n")
    return EXIT_OK


# --- verify -------------------------------------------------------------------------------


def _register_verify(actions: argparse._SubParsersAction[Any]) -> None:
    verify = actions.add_parser(
        "verify",
        help="check an image's PCRs against expected values (exit 0 only if all match)",
    )
    verify.add_argument("file", metavar="IMAGE", help="the .eif file")
    verify.add_argument(
        "--expect",
        required=True,
        metavar="PCRS.json",
        help="expected PCRs: nitro-cli's Measurements object (or {'Measurements': ...})",
    )
    verify.add_argument("--json", action="store_true", help="one JSON object on stdout")
    verify.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    from nitroguard.eif import read_eif
    from nitroguard.eif._imagebuild import compare_pcrs, load_expected_pcrs

    try:
        expected = load_expected_pcrs(Path(args.expect))
        image = read_eif(args.file)
    except Error as exc:
        return _fail_json(exc, args.json)
    rows = compare_pcrs(image.measurements.as_hex(), expected)
    ok = all(row["Match"] for row in rows)
    if args.json:
        emit_json({"Match": ok, "PCRs": rows})
    else:
        for row in rows:
            verdict = "ok" if row["Match"] else "MISMATCH"
            sys.stdout.write(f"{row['PCR']:<5} {verdict}\n")
            if not row["Match"]:
                sys.stdout.write(f"  expected {row['Expected']}\n  actual   {row['Actual']}\n")
        sys.stdout.write("Result: all listed PCRs match\n" if ok else "Result: PCR MISMATCH\n")
    return EXIT_OK if ok else EXIT_FAILED
