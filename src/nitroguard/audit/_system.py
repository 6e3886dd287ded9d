"""`SystemReader`: the only place in the audit that touches the operating system.

Every fact the checks need comes through this object: file contents under
``/proc``, ``/sys`` and ``/dev`` (relative to a configurable root, so tests and
auditors can point it at a fake tree or a snapshot), the kernel release, whether
``getrandom`` would block, and the wall and monotonic clocks. The non-file facts are
injectable, so every check is testable without touching the host.

When the root is not ``/`` the probe is a *snapshot* probe: facts that cannot be
read from files (kernel release via ``uname``, ``getrandom`` readiness, the wall
clock) are not taken from the machine running the audit, since they would describe
the wrong system; they are reported as unknown unless injected.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
import time
import zlib
from collections.abc import Callable
from pathlib import Path

__all__ = ["FileRead", "NodeInfo", "SystemReader"]

#: Upper bound on one file read. sysfs attributes are at most one page; /proc/cmdline
#: at most a few KiB. A larger file is not what we expect to read, so it is refused.
MAX_READ = 64 * 1024
#: /proc/config.gz is about 30-60 KiB compressed and 150-300 KiB of text; the caps leave
#: room for large configs while bounding what a hostile or odd tree can cost (a gzip
#: bomb is refused once it passes MAX_GZIP_SIZE, not expanded).
MAX_GZIP_COMPRESSED = 1024 * 1024
MAX_GZIP_SIZE = 4 * 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class FileRead:
    """The outcome of reading one file.

    Attributes:
        path: the path as seen inside the audited system (e.g. ``/proc/cmdline``).
        raw: the content exactly as read (newlines included), or None on error.
        error: why the read failed (``"absent"``, ``"permission denied"``, ...).
    """

    path: str
    raw: str | None
    error: str | None = None

    @property
    def value(self) -> str | None:
        """The content with surrounding whitespace removed (sysfs values end in ``\\n``)."""
        return None if self.raw is None else self.raw.strip()

    @property
    def absent(self) -> bool:
        """Whether the file does not exist."""
        return self.error == "absent"

    def describe(self) -> str:
        """Evidence text: ``path = 'value\\n'`` or ``path: error``."""
        if self.raw is None:
            return f"{self.path}: {self.error}"
        shown = self.raw if len(self.raw) <= 200 else self.raw[:200] + "..."
        return f"{self.path} = {shown!r}"


@dataclasses.dataclass(frozen=True, slots=True)
class NodeInfo:
    """`stat` facts about one filesystem node (symlinks followed).

    Attributes:
        path: the path inside the audited system.
        kind: ``"char"``, ``"block"``, ``"file"``, ``"dir"`` or ``"other"``.
        mode: permission bits (``st_mode & 0o7777``).
        major: device major number (char/block only, else None).
        minor: device minor number (char/block only, else None).
    """

    path: str
    kind: str
    mode: int
    major: int | None = None
    minor: int | None = None

    def describe(self) -> str:
        """Evidence text such as ``/dev/nsm: char device 10:125, mode 0666``."""
        dev = f" {self.major}:{self.minor}" if self.major is not None else ""
        noun = {"char": "char device", "block": "block device", "dir": "directory"}
        return f"{self.path}: {noun.get(self.kind, self.kind)}{dev}, mode {self.mode:04o}"


def _live_getrandom_ready() -> bool | None:
    # RNG-4: a non-blocking getrandom() that fails with EAGAIN means the CRNG is not
    # yet initialised (man 2 getrandom). Never block here: the audit must not hang.
    try:
        os.getrandom(1, os.GRND_NONBLOCK)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return None
        raise
    return True


class SystemReader:
    """Reads facts about the system rooted at `root`.

    Args:
        root: the directory holding the audited ``/proc``, ``/sys`` and ``/dev``.
        kernel_release: override ``uname -r`` (by default: ``os.uname()`` when
            `root` is ``/``, otherwise ``<root>/proc/sys/kernel/osrelease``).
        getrandom_ready: override the CRNG readiness probe: a bool, a callable
            returning a bool (or None for "unknown"), or None for the default (a real
            non-blocking ``getrandom`` when `root` is ``/``, unknown otherwise).
        wall_clock: a callable returning Unix time in seconds (default: `time.time`
            when `root` is ``/``, unknown otherwise).
        monotonic_clock: a callable returning monotonic seconds (default:
            `time.monotonic`).
        max_read: the largest file the probe reads.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = "/",
        *,
        kernel_release: str | None = None,
        getrandom_ready: bool | Callable[[], bool | None] | None = None,
        wall_clock: Callable[[], float] | None = None,
        monotonic_clock: Callable[[], float] | None = None,
        max_read: int = MAX_READ,
    ) -> None:
        self.root = Path(root)
        self.live = os.path.realpath(self.root) == "/"
        self._kernel_release = kernel_release
        self._getrandom_ready = getrandom_ready
        self._wall_clock = (
            wall_clock if wall_clock is not None else (time.time if self.live else None)
        )
        self._monotonic = monotonic_clock if monotonic_clock is not None else time.monotonic
        self._max_read = max_read

    def __repr__(self) -> str:
        return f"SystemReader(root={str(self.root)!r})"

    # --- files -------------------------------------------------------------------

    def _host_path(self, path: str) -> Path:
        if not path.startswith("/") or "/../" in f"{path}/":
            raise ValueError(f"probe paths are absolute and normalised: {path!r}")
        return self.root / path.lstrip("/")

    def read(self, path: str) -> FileRead:
        """Read a small regular file; never blocks, never raises for I/O problems.

        Args:
            path: the absolute path inside the audited system.

        Returns:
            A `FileRead` with the raw text, or with `error` set.
        """
        data = self._read_bytes(path, self._max_read)
        if isinstance(data, FileRead):
            return data
        return FileRead(path, data.decode("utf-8", errors="replace"))

    def read_gzip(
        self,
        path: str,
        *,
        max_compressed: int = MAX_GZIP_COMPRESSED,
        max_size: int = MAX_GZIP_SIZE,
    ) -> FileRead:
        """Read and decompress a small gzip file such as ``/proc/config.gz``.

        Decompression streams with a cap, so a gzip bomb costs at most `max_size`
        bytes of memory and is refused, not expanded. Never raises for I/O or
        format problems: they are reported in `FileRead.error`.

        Args:
            path: the absolute path inside the audited system.
            max_compressed: the largest compressed file read.
            max_size: the largest decompressed size accepted.

        Returns:
            A `FileRead` with the decompressed text, or with `error` set.
        """
        data = self._read_bytes(path, max_compressed)
        if isinstance(data, FileRead):
            return data
        # wbits=31: exactly one gzip member (header and CRC32/ISIZE trailer checked).
        inflater = zlib.decompressobj(wbits=31)
        out: list[bytes] = []
        total = 0
        pending = data
        try:
            while pending and not inflater.eof:
                # max_length bounds each step, so output never exceeds the cap + 1.
                chunk = inflater.decompress(pending, max_size + 1 - total)
                out.append(chunk)
                total += len(chunk)
                if total > max_size:
                    return FileRead(
                        path, None, f"decompresses to more than {max_size} bytes; refused"
                    )
                # Terminates: a step either fills max_length (total grows toward the
                # cap) or consumes all input (unconsumed_tail is empty).
                pending = inflater.unconsumed_tail
        except zlib.error as exc:
            return FileRead(path, None, f"not valid gzip: {exc}")
        if not inflater.eof:
            return FileRead(path, None, "not valid gzip: truncated stream")
        if inflater.unused_data:
            return FileRead(
                path, None, f"not valid gzip: {len(inflater.unused_data)} bytes after the stream"
            )
        return FileRead(path, b"".join(out).decode("utf-8", errors="replace"))

    def _read_bytes(self, path: str, limit: int) -> bytes | FileRead:
        host = self._host_path(path)
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
        try:
            fd = os.open(host, flags)
        except FileNotFoundError:
            return FileRead(path, None, "absent")
        except NotADirectoryError:
            return FileRead(path, None, "absent")
        except PermissionError:
            return FileRead(path, None, "permission denied")
        except OSError as exc:
            return FileRead(path, None, exc.strerror or f"errno {exc.errno}")
        try:
            # A FIFO or device in a fake tree must not make the audit hang or read
            # forever: only regular files (which sysfs/procfs attributes are) are read.
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return FileRead(path, None, "not a regular file")
            chunks: list[bytes] = []
            total = 0
            while total <= limit:
                chunk = os.read(fd, limit + 1 - total)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            if total > limit:
                return FileRead(path, None, f"larger than {limit} bytes")
        except OSError as exc:
            return FileRead(path, None, exc.strerror or f"errno {exc.errno}")
        finally:
            os.close(fd)
        return b"".join(chunks)

    def listdir(self, path: str) -> list[str] | None:
        """Sorted entry names of a directory, or None if it is absent or unreadable."""
        try:
            return sorted(os.listdir(self._host_path(path)))
        except OSError:
            return None

    def node(self, path: str) -> NodeInfo | None:
        """`stat` a node (following symlinks); None if it does not exist."""
        try:
            st = os.stat(self._host_path(path))
        except OSError:
            return None
        mode = st.st_mode
        if stat.S_ISCHR(mode):
            kind = "char"
        elif stat.S_ISBLK(mode):
            kind = "block"
        elif stat.S_ISREG(mode):
            kind = "file"
        elif stat.S_ISDIR(mode):
            kind = "dir"
        else:
            kind = "other"
        if kind in ("char", "block"):
            return NodeInfo(
                path, kind, stat.S_IMODE(mode), os.major(st.st_rdev), os.minor(st.st_rdev)
            )
        return NodeInfo(path, kind, stat.S_IMODE(mode))

    # --- non-file facts ------------------------------------------------------------

    def kernel_release(self) -> tuple[str | None, str]:
        """The kernel release and where it came from.

        Returns:
            ``(release or None, source)`` where source is ``"injected"``,
            ``"uname -r"`` or the file path read (with its error if unreadable).
        """
        if self._kernel_release is not None:
            return self._kernel_release, "injected"
        if self.live:
            return os.uname().release, "uname -r"
        read = self.read("/proc/sys/kernel/osrelease")
        if read.value:
            return read.value, read.path
        return None, read.describe()

    def getrandom_ready(self) -> bool | None:
        """Whether a non-blocking ``getrandom`` succeeds (None: unknown)."""
        if self._getrandom_ready is None:
            return _live_getrandom_ready() if self.live else None
        if isinstance(self._getrandom_ready, bool):
            return self._getrandom_ready
        return self._getrandom_ready()

    def wall_time(self) -> float | None:
        """The audited system's wall clock (Unix seconds), or None if unknown."""
        return None if self._wall_clock is None else self._wall_clock()

    def monotonic(self) -> float:
        """A monotonic clock in seconds (for measuring intervals and clock jumps)."""
        return self._monotonic()
