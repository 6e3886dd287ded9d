"""A strict, streaming tar reader with Go ``archive/tar`` semantics.

Why our own reader (``../shared/spec/oci-eif.md`` 3.1, 3.3): nitro-cli's linuxkit reads
``docker export`` with Go's ``archive/tar``, and the ramdisk bytes depend on details
Python's ``tarfile`` changes: it strips the trailing ``/`` of directory names (linuxkit
keeps it), decodes names as text, and reads whole PAX headers of any size. This reader:

* keeps names and link targets as raw bytes, exactly as Go returns them (ustar
  ``prefix/name`` joining, PAX ``path``/``linkpath``, GNU ``L``/``K`` long names);
* converts the old ``\\0`` type like Go (``\\0`` + trailing ``/`` = directory);
* bounds every special header (PAX, long names) at 1 MiB, like Go's
  ``maxSpecialFileSize``, and never reads file data into memory: the caller streams
  it in chunks;
* verifies the header checksum (signed or unsigned, as Go accepts);
* raises only `nitroguard.errors.TarError` on malformed input.

Nothing is written anywhere: this is a parser.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import BinaryIO

from nitroguard.errors import Reason, TarError

__all__ = ["TarEntry", "TarReader"]

BLOCK = 512
#: Go's ``maxSpecialFileSize``: bound on PAX headers and GNU long names.
MAX_SPECIAL = 1 << 20
_CHUNK = 4 << 20

TYPE_REG = b"0"
TYPE_LINK = b"1"
TYPE_SYMLINK = b"2"
TYPE_CHAR = b"3"
TYPE_BLOCK = b"4"
TYPE_DIR = b"5"
TYPE_FIFO = b"6"
#: Types whose header carries no data (Go ``isHeaderOnlyType``).
HEADER_ONLY = frozenset({TYPE_LINK, TYPE_SYMLINK, TYPE_CHAR, TYPE_BLOCK, TYPE_DIR, TYPE_FIFO})


@dataclasses.dataclass(slots=True)
class TarEntry:
    """One tar member, as Go's ``tar.Header`` would present it.

    Attributes:
        name: the raw name (a directory from ``docker export`` ends in ``/``).
        typeflag: one byte (``b"0"`` regular, ``b"5"`` directory, ...).
        mode: the numeric mode field (type bits, if any, included as stored).
        uid, gid: numeric owner.
        mtime: seconds since the epoch, floored (Go ``Time.Unix()``).
        size: the size field (data length for regular files).
        linkname: symlink / hard-link target.
        devmajor, devminor: device numbers (ustar, PAX and GNU formats).
        pax: the PAX records that applied to this entry.
    """

    name: bytes
    typeflag: bytes
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int
    linkname: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    pax: dict[bytes, bytes] = dataclasses.field(default_factory=dict)

    @property
    def data_size(self) -> int:
        """How many data bytes follow the header in the archive."""
        return 0 if self.typeflag in HEADER_ONLY else self.size


def _octal(field: bytes, what: str) -> int:
    if field and field[0] & 0x80:
        # GNU base-256: two's complement, big endian, first byte's top bit is the flag.
        value = int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
        if field[0] & 0x40:
            value -= 1 << (len(field) * 8 - 1)
        return value
    text = field.strip(b" \x00")
    if not text:
        return 0
    try:
        if not all(0x30 <= c <= 0x37 for c in text):
            raise ValueError
        return int(text, 8)
    except ValueError:
        raise TarError(f"invalid {what} field {field!r}", Reason.MALFORMED_TAR) from None


def _cstr(field: bytes) -> bytes:
    end = field.find(b"\x00")
    return field if end < 0 else field[:end]


def _parse_pax(data: bytes) -> dict[bytes, bytes]:
    """PAX records ``"%d %s=%s\\n"`` (POSIX pax format), strictly: like Go, anything
    that is not a whole record (trailing NULs included) is an error."""
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos, pos + 21)
        if sp <= pos:
            raise TarError("malformed PAX record length", Reason.MALFORMED_TAR)
        try:
            length = int(data[pos:sp].decode("ascii"), 10)
        except (UnicodeDecodeError, ValueError):
            raise TarError("malformed PAX record length", Reason.MALFORMED_TAR) from None
        end = pos + length
        if length <= sp - pos + 1 or end > len(data) or data[end - 1 : end] != b"\n":
            raise TarError("malformed PAX record", Reason.MALFORMED_TAR)
        key, eq, value = data[sp + 1 : end - 1].partition(b"=")
        if not eq or not key or b"\x00" in key:
            raise TarError("malformed PAX record", Reason.MALFORMED_TAR)
        out[key] = value
        pos = end
    return out


def _pax_int(value: bytes, what: str) -> int:
    try:
        text = value.decode("ascii")
        if not text or not text.lstrip("+-").isdigit():
            raise ValueError
        return int(text, 10)
    except (UnicodeDecodeError, ValueError):
        raise TarError(f"invalid PAX {what} {value!r}", Reason.MALFORMED_TAR) from None


def _pax_time(value: bytes) -> int:
    """A PAX time, floored to whole seconds like Go's ``Time.Unix()``."""
    try:
        text = value.decode("ascii")
        whole, _, frac = text.partition(".")
        if not whole.lstrip("-").isdigit() or (frac and not frac.isdigit()) or len(text) > 40:
            raise ValueError
        sec = int(whole, 10)
        if frac and int(frac) != 0 and whole.startswith("-"):
            sec -= 1
        return sec
    except (UnicodeDecodeError, ValueError):
        raise TarError(f"invalid PAX time {value!r}", Reason.MALFORMED_TAR) from None


class TarReader:
    """Iterate over a tar stream: ``for entry in reader: reader.read_data()``.

    The data of an entry must be consumed (or is skipped) before the next entry.

    Args:
        stream: a binary stream positioned at the start of the archive; read
            sequentially, never seeked.
        max_name: the longest name or link target accepted.
    """

    def __init__(self, stream: BinaryIO, *, max_name: int = 65536, skip_data: bool = False) -> None:
        self._s = stream
        # Seek over file data instead of reading it (a size-only pass over a file).
        self._seek = skip_data
        self._remaining = 0
        self._pad = 0
        self._max_name = max_name
        self.offset = 0

    def _read_exact(self, n: int, what: str) -> bytes:
        chunks = []
        left = n
        while left:
            try:
                block = self._s.read(min(left, _CHUNK))
            except OSError as exc:
                raise TarError(
                    f"cannot read the tar stream: {exc}", Reason.UNREADABLE_INPUT
                ) from exc
            except Exception as exc:  # decompressors raise their own types
                raise TarError(f"corrupt compressed stream: {exc}", Reason.MALFORMED_TAR) from exc
            if not block:
                raise TarError(f"tar stream truncated in {what}", Reason.TRUNCATED)
            chunks.append(block)
            left -= len(block)
        self.offset += n
        return b"".join(chunks)

    def _skip_rest(self) -> None:
        if self._seek and self._remaining + self._pad:
            try:
                self._s.seek(self._remaining + self._pad, 1)
            except (OSError, ValueError) as exc:
                raise TarError(f"cannot seek the tar stream: {exc}", Reason.MALFORMED_TAR) from exc
            self.offset += self._remaining + self._pad
            self._remaining = self._pad = 0
            return
        while self._remaining:
            self._read_exact(min(self._remaining, _CHUNK), "file data")
            self._remaining -= min(self._remaining, _CHUNK)
        if self._pad:
            self._read_exact(self._pad, "padding")
            self._pad = 0

    def read_chunks(self, chunk: int = _CHUNK) -> Iterator[bytes]:
        """Yield the current entry's data in chunks of at most `chunk` bytes."""
        while self._remaining:
            n = min(self._remaining, chunk)
            data = self._read_exact(n, "file data")
            self._remaining -= n
            yield data

    def _header_block(self) -> bytes | None:
        try:
            block = self._s.read(BLOCK)
        except OSError as exc:
            raise TarError(f"cannot read the tar stream: {exc}", Reason.UNREADABLE_INPUT) from exc
        except Exception as exc:
            raise TarError(f"corrupt compressed stream: {exc}", Reason.MALFORMED_TAR) from exc
        if not block:
            return None  # Go: a clean EOF at a header boundary ends the archive
        self.offset += len(block)
        if len(block) < BLOCK:
            block += self._read_exact(BLOCK - len(block), "header")
        return block

    def _special(self, size: int, what: str) -> bytes:
        if size < 0 or size > MAX_SPECIAL:
            raise TarError(f"{what} of {size} bytes exceeds 1 MiB", Reason.TOO_LARGE)
        data = self._read_exact(size, what)
        pad = -size % BLOCK
        if pad:
            self._read_exact(pad, "padding")
        return data

    def __iter__(self) -> Iterator[TarEntry]:
        return self

    def __next__(self) -> TarEntry:
        self._skip_rest()
        pax: dict[bytes, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            block = self._header_block()
            if block is None:
                raise StopIteration
            if block == b"\x00" * BLOCK:
                nxt = self._header_block()
                if nxt is None or nxt == b"\x00" * BLOCK:
                    raise StopIteration
                raise TarError("a zero block followed by data", Reason.MALFORMED_TAR)
            stored = _octal(block[148:156], "checksum")
            unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
            signed = sum(b - 256 if b > 127 else b for b in block[:148] + block[156:]) + 8 * 0x20
            if stored not in (unsigned, signed):
                raise TarError("tar header checksum mismatch", Reason.MALFORMED_TAR)
            typeflag = block[156:157]
            # Go's getFormat: the ustar magic alone (any version) means USTAR/PAX, or
            # STAR when the block ends in "tar\0"; "ustar " + " \0" means GNU.
            gnu = block[257:265] == b"ustar  \x00"
            ustar = block[257:263] == b"ustar\x00"
            star = ustar and block[508:512] == b"tar\x00"
            size = _octal(block[124:136], "size")
            if size < 0:
                raise TarError("negative size", Reason.MALFORMED_TAR)
            if typeflag == b"x":
                pax.update(_parse_pax(self._special(size, "PAX header")))
                continue
            if typeflag == b"L":
                long_name = _cstr(self._special(size, "GNU long name"))
                continue
            if typeflag == b"K":
                long_link = _cstr(self._special(size, "GNU long link"))
                continue
            if typeflag == b"g":
                # Go returns global headers as entries; linuxkit then fails to convert them.
                raise TarError("PAX global headers are not supported", Reason.UNSUPPORTED_ENTRY)
            name = _cstr(block[0:100])
            if ustar:
                prefix = _cstr(block[345:476] if star else block[345:500])
                if prefix:
                    name = prefix + b"/" + name
            entry = TarEntry(
                name=name,
                typeflag=typeflag,
                mode=_octal(block[100:108], "mode"),
                uid=_octal(block[108:116], "uid"),
                gid=_octal(block[116:124], "gid"),
                mtime=_octal(block[136:148], "mtime"),
                size=size,
                linkname=_cstr(block[157:257]),
                devmajor=_octal(block[329:337], "devmajor") if (ustar or gnu) else 0,
                devminor=_octal(block[337:345], "devminor") if (ustar or gnu) else 0,
                pax=pax,
            )
            if long_name is not None:
                entry.name = long_name
            if long_link is not None:
                entry.linkname = long_link
            _apply_pax(entry, pax)
            if entry.size < 0:
                raise TarError("negative size", Reason.MALFORMED_TAR)
            if entry.typeflag == b"\x00":
                entry.typeflag = TYPE_DIR if entry.name.endswith(b"/") else TYPE_REG
            if len(entry.name) > self._max_name or len(entry.linkname) > self._max_name:
                raise TarError("name or link target too long", Reason.TOO_LARGE)
            if b"\x00" in entry.name or b"\x00" in entry.linkname:
                raise TarError("NUL in a name", Reason.MALFORMED_TAR)
            self._remaining = entry.data_size
            self._pad = -self._remaining % BLOCK
            return entry


def _apply_pax(entry: TarEntry, pax: dict[bytes, bytes]) -> None:
    """PAX records override the header's fields (Go's mergePAX)."""
    for key, value in pax.items():
        if key == b"path":
            entry.name = value
        elif key == b"linkpath":
            entry.linkname = value
        elif key == b"size":
            entry.size = _pax_int(value, "size")
        elif key == b"uid":
            entry.uid = _pax_int(value, "uid")
        elif key == b"gid":
            entry.gid = _pax_int(value, "gid")
        elif key == b"mtime":
            entry.mtime = _pax_time(value)
        elif key.startswith(b"GNU.sparse"):
            raise TarError("sparse files are not supported", Reason.UNSUPPORTED_ENTRY)
