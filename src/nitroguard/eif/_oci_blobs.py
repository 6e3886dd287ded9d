"""OCI image layout blob access: bounded, digest-checked reads of ``blobs/sha256/...``
(for `nitroguard.eif._oci`)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from nitroguard.errors import Error, ImageError, Reason
from nitroguard.hazmat._tar import TarReader

__all__: list[str] = []  # package-private helpers only

MAX_JSON = 16 * 1024 * 1024
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class _Blobs:
    """Read-only access to the files of an OCI layout (directory or uncompressed tar)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.members: dict[str, tuple[int, int]] | None = None
        if root.is_file():
            self.members = {}
            try:
                with root.open("rb") as fh:
                    if fh.read(2) == b"\x1f\x8b":
                        raise ImageError(
                            f"{root} is compressed; decompress it first (blobs are read "
                            "by offset, which needs a plain tar)",
                            Reason.UNSUPPORTED_COMPRESSION,
                        )
                    fh.seek(0)
                    reader = TarReader(fh)
                    for entry in reader:
                        if entry.typeflag == b"0":
                            name = posixpath.normpath(entry.name.decode(errors="replace"))
                            self.members[name.lstrip("/")] = (reader.offset, entry.size)
            except OSError as exc:
                raise Error(f"cannot read {root}: {exc.strerror}", Reason.UNREADABLE_INPUT) from exc
        elif not root.is_dir():
            raise Error(f"{root} is neither a directory nor a tar file", Reason.UNREADABLE_INPUT)

    def exists(self, name: str) -> bool:
        if self.members is not None:
            return name in self.members
        return (self.root / name).is_file()

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        name = posixpath.normpath(name).lstrip("/")
        if name.startswith("..") or "\x00" in name:
            raise ImageError(f"blob path {name!r} escapes the layout", Reason.UNSAFE_PATH)
        try:
            if self.members is None:
                path = self.root / name
                if path.is_symlink() or not path.is_file():
                    raise ImageError(f"missing blob {name}", Reason.MALFORMED_IMAGE)
                with path.open("rb") as fh:
                    yield fh
                return
            if name not in self.members:
                raise ImageError(f"missing blob {name}", Reason.MALFORMED_IMAGE)
            offset, size = self.members[name]
            with self.root.open("rb") as fh:
                fh.seek(offset)
                yield _Window(fh, size)  # type: ignore[misc]
        except OSError as exc:
            raise Error(f"cannot read {name}: {exc.strerror}", Reason.UNREADABLE_INPUT) from exc

    def read_json(self, name: str, digest: str | None = None) -> tuple[Any, bytes]:
        with self.open(name) as fh:
            data = fh.read(MAX_JSON + 1)
        if len(data) > MAX_JSON:
            raise ImageError(f"{name} exceeds {MAX_JSON} bytes", Reason.TOO_LARGE)
        if digest is not None and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ImageError(f"{name} does not match its digest {digest}", Reason.MALFORMED_IMAGE)
        try:
            return json.loads(data.decode("utf-8")), data
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ImageError(f"{name} is not JSON: {exc}", Reason.MALFORMED_IMAGE) from None


class _Window(io.RawIOBase):
    """The `size` bytes at the current position of `fh`."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self._fh, self._left = fh, size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._fh.read(n)
        self._left -= len(data)
        return data

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def _blob_path(digest: Any) -> str:
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ImageError(f"unsupported or malformed digest {digest!r}", Reason.MALFORMED_IMAGE)
    return "blobs/sha256/" + digest[len("sha256:") :]


class _Hashing(io.RawIOBase):
    """Hash everything read through it."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self.hash.update(data)
        return data

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


@contextlib.contextmanager
def _decompressed(raw: BinaryIO) -> Iterator[BinaryIO]:
    """gzip, zstd or plain, by magic number (media types are often wrong)."""
    buffered = io.BufferedReader(raw)  # type: ignore[type-var]
    magic = buffered.peek(4)[:4]
    if magic[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=buffered, mode="rb") as gz:
            yield gz  # type: ignore[misc]
    elif magic == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard
        except ImportError:
            raise ImageError(
                "this image has zstd-compressed layers; install the optional extra "
                "'nitroguard[zstd]' (the zstandard package) to read them",
                Reason.UNSUPPORTED_COMPRESSION,
            ) from None
        with zstandard.ZstdDecompressor().stream_reader(buffered) as zs:
            yield zs
    else:
        yield buffered
