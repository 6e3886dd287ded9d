"""A streaming cpio "newc" writer, byte-compatible with ``surma/gocpio`` as linuxkit uses it.

The quirks that make nitro-cli's ramdisks what they are (``../shared/spec/oci-eif.md``
3.1-3.2): lowercase hex, inode numbers from 721 (the trailer included), c_dev fixed
to 3/1, nlink 2 for directories and 1 otherwise, data padded lazily to 4 bytes before
the next header, a ``TRAILER!!!`` entry with mtime 0, and the whole archive padded
with NULs to a multiple of 512.

Data is streamed: `write_entry` takes an iterator of chunks and checks that exactly
the announced number of bytes arrives. Numbers that do not fit the 8 hex digits
(files of 4 GiB or more, negative or post-2106 mtimes, uids >= 2^32) would corrupt
the archive as gocpio writes it (spec 3.8), so they are refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from nitroguard.errors import ImageError, Reason

__all__ = [
    "TYPE_BLK",
    "TYPE_CHAR",
    "TYPE_DIR",
    "TYPE_FIFO",
    "TYPE_REG",
    "TYPE_SYMLINK",
    "CpioWriter",
]

# cpio type numbers, shifted left by 12 into c_mode (gocpio common.go).
TYPE_FIFO = 0o01
TYPE_CHAR = 0o02
TYPE_DIR = 0o04
TYPE_BLK = 0o06
TYPE_REG = 0o10
TYPE_SYMLINK = 0o12

FIRST_INODE = 721
_MAX = 0xFFFFFFFF


class CpioWriter:
    """Write newc entries to `out` as linuxkit's gocpio does.

    Args:
        out: a binary stream, written sequentially.
    """

    def __init__(self, out: BinaryIO | None, *, count_only: bool = False) -> None:
        self._out = out
        self._inode = FIRST_INODE
        self.offset = 0
        self.entries = 0
        #: Only compute the archive size: data iterators are never consumed.
        self.count_only = count_only

    def _pad(self, multiple: int) -> bytes:
        pad = -self.offset % multiple
        self.offset += pad
        return b"\x00" * pad

    def write_entry(self, name: bytes, **fields: Any) -> None:
        """Write one entry to the output stream (see `entry` for the arguments)."""
        assert self._out is not None  # noqa: S101 - constructor contract
        for chunk in self.entry(name, **fields):
            self._out.write(chunk)

    def entry(
        self,
        name: bytes,
        *,
        ftype: int,
        mode: int,
        uid: int = 0,
        gid: int = 0,
        mtime: int = 0,
        size: int = 0,
        data: Iterable[bytes] = (),
        rdevmajor: int = 0,
        rdevminor: int = 0,
    ) -> Iterator[bytes]:
        """Yield one entry's bytes: header, name, then exactly `size` bytes from `data`
        (pulled lazily, so a caller streaming the archive never buffers a file).

        Raises:
            ImageError: `cpio_field_overflow` when a number does not fit 8 hex digits
                (gocpio would write a corrupt header); `malformed_tar` when `data`
                yields a different number of bytes than `size`.
        """
        c_mode = (mode & 0o7777) | (ftype << 12)
        nlink = 2 if ftype == TYPE_DIR else 1
        fields = (
            ("inode", self._inode),
            ("mode", c_mode),
            ("uid", uid),
            ("gid", gid),
            ("nlink", nlink),
            ("mtime", mtime),
            ("size", size),
            ("devmajor", 3),
            ("devminor", 1),
            ("rdevmajor", rdevmajor),
            ("rdevminor", rdevminor),
            ("namesize", len(name) + 1),
            ("check", 0),
        )
        for what, value in fields:
            if not 0 <= value <= _MAX:
                raise ImageError(
                    f"{name.decode(errors='replace')}: {what} {value} does not fit a newc "
                    "header (linuxkit would write a corrupt archive)",
                    Reason.CPIO_FIELD_OVERFLOW,
                )
        header = b"070701" + b"".join(b"%08x" % value for _what, value in fields)
        lead = self._pad(4)
        self.offset += len(header) + len(name) + 1
        yield lead + header + name + b"\x00" + self._pad(4)
        self._inode += 1
        self.entries += 1
        if self.count_only:
            self.offset += size
            return
        written = 0
        for chunk in data:
            written += len(chunk)
            if written > size:
                break
            self.offset += len(chunk)
            yield chunk
        if written != size:
            raise ImageError(
                f"{name.decode(errors='replace')}: expected {size} bytes of data, got "
                f"{'more' if written > size else written}",
                Reason.MALFORMED_TAR,
            )

    def trailer(self) -> Iterator[bytes]:
        """Yield the trailer and the 512-byte padding of the whole archive."""
        yield from self.entry(b"TRAILER!!!", ftype=0, mode=0)
        yield self._pad(512)

    def close(self) -> int:
        """Write the trailer and the padding; return the archive size."""
        assert self._out is not None  # noqa: S101 - constructor contract
        for chunk in self.trailer():
            self._out.write(chunk)
        return self.offset
