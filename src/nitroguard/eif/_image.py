"""nitro-cli's two ramdisks from a container image, without Docker or linuxkit.

Follows ``../shared/spec/oci-eif.md``: the bootstrap ramdisk (3.4), the customer
ramdisk (3.5) from a ``docker export`` stream with linuxkit's filters (3.6) and tar to
cpio conversion (3.3), and ``cmd``/``env`` from the image config as nitro-cli writes
them (2.3). Everything streams: file data goes from the tar member to the output in
chunks, so memory stays bounded whatever the image size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import os
import posixpath
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from nitroguard.errors import Error, ImageError, Reason
from nitroguard.hazmat._cpio import (
    TYPE_BLK,
    TYPE_CHAR,
    TYPE_DIR,
    TYPE_FIFO,
    TYPE_REG,
    TYPE_SYMLINK,
    CpioWriter,
)
from nitroguard.hazmat._tar import TarEntry, TarReader

__all__ = [
    "DEFAULT_MTIME",
    "ImageConfig",
    "Source",
    "coalesce",
    "customer_ramdisk_size",
    "docker_export_entries",
    "iter_customer_ramdisk",
    "parse_image_config",
    "write_bootstrap_ramdisk",
    "write_customer_ramdisk",
]

#: linuxkit's ``defaultModTime``, 2017-04-18T16:30:00Z (spec 3.4).
DEFAULT_MTIME = 1492533000
PREFIX = b"rootfs/"
#: linuxkit's fixed hosts text (spec 3.6): 160 bytes.
HOSTS = (
    b"127.0.0.1       localhost\n"
    b"::1     localhost ip6-localhost ip6-loopback\n"
    b"fe00::0 ip6-localnet\n"
    b"ff00::0 ip6-mcastprefix\n"
    b"ff02::1 ip6-allnodes\n"
    b"ff02::2 ip6-allrouters\n"
)
#: nitro-cli passes this to linuxkit for init images (spec 2.6, 3.6).
RESOLV_TARGET = b"/run/resolvconf/resolv.conf"
EXCLUDE = frozenset(
    {b".dockerenv", b"Dockerfile", b"dev/console", b"dev/pts", b"dev/shm", b"etc/hostname"}
)
#: linuxkit's ``touch`` list: re-timed when seen, synthesized at the end when not.
#: Values: (cpio type, mode, symlink target or contents).
TOUCH: dict[bytes, tuple[int, int, bytes]] = {
    b"dev/": (TYPE_DIR, 0o755, b""),
    b"dev/pts/": (TYPE_DIR, 0o755, b""),
    b"dev/shm/": (TYPE_DIR, 0o755, b""),
    b"etc/": (TYPE_DIR, 0o755, b""),
    b"etc/hosts": (TYPE_REG, 0o644, HOSTS),
    b"etc/mtab": (TYPE_SYMLINK, 0o755, b"/proc/mounts"),
    b"etc/resolv.conf": (TYPE_SYMLINK, 0o644, RESOLV_TARGET),
    b"proc/": (TYPE_DIR, 0o755, b""),
    b"sys/": (TYPE_DIR, 0o755, b""),
}
#: nitro-cli's ``files:`` directories of the customer YAML (spec 2.4).
FIXED_DIRS = (b"dev", b"run", b"sys", b"var", b"proc", b"tmp")

#: An entry of a flattened image and a function streaming its data.
Source = Iterable[tuple[TarEntry, Callable[[], Iterator[bytes]]]]
Progress = Callable[[int], None]


# --- Go path semantics (filepath.Clean / Dir / Rel) ----------------------------------


def go_clean(path: bytes) -> bytes:
    """Go's ``filepath.Clean`` on Unix."""
    if not path:
        return b"."
    out = posixpath.normpath(path)
    if out.startswith(b"//"):
        out = b"/" + out.lstrip(b"/")
    return out


def go_dir(path: bytes) -> bytes:
    """Go's ``filepath.Dir``: everything up to the last ``/``, cleaned."""
    return go_clean(path[: path.rfind(b"/") + 1])


def go_rel(base: bytes, target: bytes) -> bytes | None:
    """Go's ``filepath.Rel``; None where Go returns an error."""
    base, targ = go_clean(base), go_clean(target)
    if targ == base:
        return b"."
    if base == b".":
        base = b""
    if base.startswith(b"/") != targ.startswith(b"/"):
        return None
    bl, tl = len(base), len(targ)
    b0 = bi = t0 = ti = 0
    while True:
        while bi < bl and base[bi] != 0x2F:
            bi += 1
        while ti < tl and targ[ti] != 0x2F:
            ti += 1
        if targ[t0:ti] != base[b0:bi]:
            break
        if bi < bl:
            bi += 1
        if ti < tl:
            ti += 1
        b0, t0 = bi, ti
    if base[b0:bi] == b"..":
        return None
    if b0 != bl:
        seps = base[b0:bl].count(b"/")
        out = b".." + b"/.." * seps
        if t0 != tl:
            out += b"/" + targ[t0:]
        return out
    return targ[t0:]


# --- image config ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ImageConfig:
    """What nitro-cli reads from ``docker inspect`` (spec 2.3, 7).

    Attributes:
        cmd: ``Config.Cmd`` (None when absent or null).
        entrypoint: ``Config.Entrypoint`` (None when absent or null).
        env: ``Config.Env`` (empty when absent).
        working_dir: ``Config.WorkingDir`` ("" when absent).
        architecture: ``amd64``, ``arm64``... (None when absent).
        image_id: the image id without ``sha256:`` (None when unknown).
    """

    cmd: tuple[str, ...] | None
    entrypoint: tuple[str, ...] | None
    env: tuple[str, ...]
    working_dir: str = ""
    architecture: str | None = None
    os: str | None = None
    image_id: str | None = None

    @property
    def launch(self) -> tuple[str, ...]:
        """The ``cmd`` file's lines: Cmd if present (even empty), else Entrypoint, never
        both joined (nitro-cli ``docker.rs``, spec 2.3).

        Raises:
            ImageError: `invalid_image_config` when neither is present
                (nitro-cli's ``UnsupportedEntryPoint``).
        """
        if self.cmd is not None:
            return self.cmd
        if self.entrypoint is not None:
            return self.entrypoint
        raise ImageError(
            "the image config has neither Cmd nor Entrypoint (nitro-cli fails with "
            "UnsupportedEntryPoint)",
            Reason.INVALID_IMAGE_CONFIG,
        )

    @property
    def eif_arch(self) -> str | None:
        """The EIF architecture nitro-cli derives from ``Architecture`` (spec 2.1)."""
        return {"amd64": "x86_64", "arm64": "aarch64", None: None}.get(self.architecture, "?")


def _str_list(value: Any, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageError(f"{what} must be a list of strings", Reason.INVALID_IMAGE_CONFIG)
    for item in value:
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise ImageError(f"{what} holds invalid Unicode", Reason.INVALID_IMAGE_CONFIG) from None
    return tuple(value)


def parse_image_config(data: bytes, *, image_id: str | None = None) -> ImageConfig:
    """Parse a ``docker inspect`` object (or a one-element list of one), or an OCI image
    config.

    Args:
        data: the JSON bytes (at most 16 MiB are accepted by callers reading files).
        image_id: the id to report when the document has none (OCI: the config digest).

    Raises:
        ImageError: `invalid_image_config` on anything else.
    """
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ImageError(f"image config is not JSON: {exc}", Reason.INVALID_IMAGE_CONFIG) from None
    if isinstance(doc, list):
        if len(doc) != 1:
            raise ImageError(
                f"expected one image in the docker inspect list, found {len(doc)}",
                Reason.INVALID_IMAGE_CONFIG,
            )
        doc = doc[0]
    if not isinstance(doc, dict):
        raise ImageError("image config must be a JSON object", Reason.INVALID_IMAGE_CONFIG)
    if "Config" in doc:  # docker inspect
        config, arch, os_name = doc["Config"], doc.get("Architecture"), doc.get("Os")
        ident = doc.get("Id")
    else:  # OCI image config
        config, arch, os_name = doc.get("config"), doc.get("architecture"), doc.get("os")
        ident = None
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ImageError("the image's Config must be an object", Reason.INVALID_IMAGE_CONFIG)
    for what, value in (("Architecture", arch), ("Os", os_name), ("Id", ident)):
        if value is not None and not isinstance(value, str):
            raise ImageError(f"{what} must be a string", Reason.INVALID_IMAGE_CONFIG)
    working_dir = config.get("WorkingDir") or ""
    if not isinstance(working_dir, str):
        raise ImageError("WorkingDir must be a string", Reason.INVALID_IMAGE_CONFIG)
    if isinstance(ident, str) and ident.startswith("sha256:"):
        ident = ident[len("sha256:") :]
    return ImageConfig(
        cmd=_str_list(config.get("Cmd"), "Cmd"),
        entrypoint=_str_list(config.get("Entrypoint"), "Entrypoint"),
        env=_str_list(config.get("Env"), "Env") or (),
        working_dir=working_dir,
        architecture=arch or None,
        os=os_name,
        image_id=ident or image_id,
    )


def lines_file(items: Iterable[str]) -> bytes:
    """One element per line, each followed by ``\\n`` (nitro-cli ``docker.rs``)."""
    return b"".join(item.encode("utf-8") + b"\n" for item in items)


# --- ramdisks ---------------------------------------------------------------------------


def _file_chunks(path: Path, size: int) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            yield block


def write_bootstrap_ramdisk(out: BinaryIO, init: Path, nsm_ko: Path) -> int:
    """nitro-cli's ramdisk 0: ``dev``, ``init``, ``nsm.ko`` (spec 3.4). Returns its size.

    Raises:
        Error: `unreadable_input` when a blob cannot be read.
    """
    writer = CpioWriter(out)
    writer.write_entry(b"dev", ftype=TYPE_DIR, mode=0o755, mtime=DEFAULT_MTIME)
    for name, path in ((b"init", init), (b"nsm.ko", nsm_ko)):
        try:
            size = path.stat().st_size
            writer.write_entry(
                name,
                ftype=TYPE_REG,
                mode=0o755,
                mtime=DEFAULT_MTIME,
                size=size,
                data=_file_chunks(path, size),
            )
        except OSError as exc:
            raise Error(f"cannot read {path}: {exc.strerror}", Reason.UNREADABLE_INPUT) from exc
    return writer.close()


_CPIO_TYPES = {
    b"0": TYPE_REG,
    b"2": TYPE_SYMLINK,
    b"3": TYPE_CHAR,
    b"4": TYPE_BLK,
    b"5": TYPE_DIR,
    b"6": TYPE_FIFO,
}


def _emit(
    writer: CpioWriter, entry: TarEntry, chunks: Callable[[], Iterator[bytes]], progress: Progress
) -> Iterator[bytes]:
    """linuxkit ``copyTarEntry`` (spec 3.3), after ImageTar's renaming."""
    name = entry.name
    shown = name.decode(errors="replace")
    for what, value in (
        ("mode", entry.mode),
        ("devmajor", entry.devmajor),
        ("devminor", entry.devminor),
    ):
        # Go's tar writer (linuxkit re-writes every header as PAX) has no PAX record
        # for these: values beyond 7 octal digits make linuxkit fail.
        if not 0 <= value <= 0o7777777:
            raise ImageError(
                f"{shown}: {what} {value} does not fit a ustar field (linuxkit fails)",
                Reason.UNSUPPORTED_ENTRY,
            )
    if entry.typeflag == b"1":
        # Hard links become relative symlinks (initrd.go typeconv), from the link's dir.
        rel = go_rel(go_dir(name), entry.linkname)
        target = rel if rel is not None else b"/" + entry.linkname
        yield from writer.entry(
            name,
            ftype=TYPE_SYMLINK,
            mode=entry.mode,
            uid=entry.uid,
            gid=entry.gid,
            mtime=entry.mtime,
            size=len(target),
            data=(target,),
            rdevmajor=entry.devmajor,
            rdevminor=entry.devminor,
        )
        return
    ftype = _CPIO_TYPES.get(entry.typeflag)
    if ftype is None:
        raise ImageError(
            f"{shown}: tar type {entry.typeflag!r} cannot be converted to cpio "
            "(linuxkit fails the same way)",
            Reason.UNSUPPORTED_ENTRY,
        )
    if ftype in (TYPE_REG, TYPE_CHAR, TYPE_BLK, TYPE_FIFO) and name.endswith(b"/"):
        raise ImageError(
            f"{shown}: a non-directory name ends in '/' (Go's tar writer in linuxkit refuses it)",
            Reason.UNSUPPORTED_ENTRY,
        )
    data: Iterable[bytes] = ()
    size = entry.size
    if ftype == TYPE_SYMLINK:
        size, data = len(entry.linkname), (entry.linkname,)
    elif ftype == TYPE_REG:
        data = _counting(chunks(), progress)
    elif size:
        raise ImageError(
            f"{shown}: a header-only entry declares {size} data bytes (linuxkit would "
            "write a corrupt cpio header)",
            Reason.UNSUPPORTED_ENTRY,
        )
    yield from writer.entry(
        name,
        ftype=ftype,
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        mtime=entry.mtime,
        size=size,
        data=data,
        rdevmajor=entry.devmajor,
        rdevminor=entry.devminor,
    )


def _counting(chunks: Iterator[bytes], progress: Progress) -> Iterator[bytes]:
    for chunk in chunks:
        progress(len(chunk))
        yield chunk


def _const(data: bytes) -> Callable[[], Iterator[bytes]]:
    return lambda: iter((data,))


def iter_customer_ramdisk(
    w: CpioWriter,
    source: Source,
    config: ImageConfig,
    *,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """nitro-cli's ramdisk 1 (spec 3.5): ``rootfs``, the filtered image entries under
    ``rootfs/``, missing ``touch`` entries, the fixed directories, ``cmd`` and ``env``.

    Args:
        w: the cpio writer (its offset is the archive size once exhausted).
        source: the image's entries in ``docker export`` order (see
            `docker_export_entries` and `nitroguard.eif._oci`).
        config: the image config (``cmd``/``env``).
        progress: called with the number of file-data bytes copied, as they are.

    Yields:
        The archive's bytes, in order (file data streamed, never buffered whole).

    Raises:
        ImageError: an entry linuxkit cannot convert, or a value that does not fit.
    """
    report: Progress = progress or (lambda _n: None)
    cmd, env = lines_file(config.launch), lines_file(config.env)
    d = DEFAULT_MTIME
    yield from w.entry(b"rootfs", ftype=TYPE_DIR, mode=0o755, mtime=d)  # A: tarPrefix
    seen: set[bytes] = set()
    for entry, chunks in source:  # B
        name = entry.name
        if name in EXCLUDE:
            continue
        if name == b"etc/hosts":
            if entry.typeflag != b"0":
                raise ImageError(
                    "etc/hosts is not a regular file: linuxkit's replacement would fail",
                    Reason.UNSUPPORTED_ENTRY,
                )
            seen.add(name)  # AWS patch 0003: replaced names count as seen
            replaced = dataclasses.replace(
                entry, name=PREFIX + name, mtime=d, size=len(HOSTS), pax={}
            )
            yield from _emit(w, replaced, _const(HOSTS), report)
            continue
        if name == b"etc/resolv.conf":
            seen.add(name)
            replaced = dataclasses.replace(
                entry,
                name=PREFIX + name,
                typeflag=b"2",
                linkname=RESOLV_TARGET,
                size=0,
                mtime=d,
                pax={},
            )
            yield from _emit(w, replaced, _const(b""), report)
            continue
        mtime = entry.mtime
        if name in TOUCH:
            mtime = d
            seen.add(name)
        linkname = PREFIX + entry.linkname if entry.typeflag == b"1" else entry.linkname
        renamed = dataclasses.replace(entry, name=PREFIX + name, linkname=linkname, mtime=mtime)
        yield from _emit(w, renamed, chunks, report)
    for key in sorted(TOUCH):  # C
        if key in seen:
            continue
        ftype, mode, payload = TOUCH[key]
        name = PREFIX + key.rstrip(b"/")
        yield from w.entry(
            name, ftype=ftype, mode=mode, mtime=d, size=len(payload), data=(payload,)
        )
    yield from w.entry(b"rootfs", ftype=TYPE_DIR, mode=0o755, mtime=d)  # D: files section
    for sub in FIXED_DIRS:
        yield from w.entry(PREFIX + sub, ftype=TYPE_DIR, mode=0o755, mtime=d)
    for name, payload in ((b"cmd", cmd), (b"env", env)):
        yield from w.entry(
            name, ftype=TYPE_REG, mode=0o644, mtime=d, size=len(payload), data=(payload,)
        )
    yield from w.trailer()


def write_customer_ramdisk(
    out: BinaryIO, source: Source, config: ImageConfig, *, progress: Progress | None = None
) -> int:
    """Write nitro-cli's customer ramdisk to `out` (see `iter_customer_ramdisk`);
    return its size."""
    w = CpioWriter(out)
    for chunk in iter_customer_ramdisk(w, source, config, progress=progress):
        out.write(chunk)
    return w.offset


def customer_ramdisk_size(source: Source, config: ImageConfig) -> int:
    """The customer ramdisk's size, from the entry headers only (no data is read)."""
    w = CpioWriter(None, count_only=True)
    for _chunk in iter_customer_ramdisk(w, source, config):
        pass
    return w.offset


def coalesce(chunks: Iterable[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    """Join small pieces (headers, names) into blocks of about `size` bytes; large
    pieces pass through without a copy."""
    buf = bytearray()
    for chunk in chunks:
        if len(chunk) >= size:
            if buf:
                yield bytes(buf)
                buf.clear()
            yield chunk
            continue
        buf += chunk
        if len(buf) >= size:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


# --- docker export input -------------------------------------------------------------


@contextlib.contextmanager
def open_tar_stream(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a tar file, transparently gunzipping it (``docker export | gzip``).

    Raises:
        Error: `unreadable_input` when it cannot be opened.
    """
    try:
        fh = Path(path).open("rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise Error(f"cannot read {path}: {exc.strerror}", Reason.UNREADABLE_INPUT) from exc
    with fh:
        # peek, not seek: the export may be a pipe (`<(docker export ...)`)
        if fh.peek(2)[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
                yield gz  # type: ignore[misc]
            return
        yield fh


def docker_export_entries(stream: BinaryIO, *, skip_data: bool = False) -> Source:
    """The entries of a ``docker export`` tar stream, in stream order, data streamed.

    With `skip_data`, file data is seeked over (for a size-only pass)."""
    reader = TarReader(stream, skip_data=skip_data)
    for entry in reader:
        yield entry, reader.read_chunks
