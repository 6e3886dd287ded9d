"""Atomic file outputs: a file is either the old one or the complete new one, never half.

Every file the package writes (EIF images, build outputs, the fake KMS's state, the
emulator PKI's state) goes through `atomic_output`: a temporary file in the same
directory (so the rename cannot cross a file system), flushed and fsynced, then
renamed onto the target; on any error the temporary file is removed and the target
is left untouched.

One mode rule: the file is created with ``mode`` (default ``0o666``) *through the
umask*, exactly as ``open(path, "w")`` would create it. Private files pass a
narrower mode (``0o600``); the umask can only narrow it further.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_output", "write_atomic"]


def _create(path: str, flags: int, *, mode: int) -> int:
    return os.open(path, flags | os.O_CLOEXEC, mode)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, mode: int = 0o666) -> Iterator[BinaryIO]:
    """Yield a new file (opened ``w+b``) that replaces ``path`` only if the block succeeds.

    The handle's ``.name`` is the temporary file's path, so the block may read back
    what it wrote (`nitroguard.eif.sign_eif` verifies its output before the rename).

    Args:
        path: the file to create or replace.
        mode: permission bits for the new file, narrowed by the umask.

    Raises:
        OSError: the directory is not writable, the disk is full, ... (the caller
            turns it into its own error).
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fh = open(tmp, "x+b", opener=functools.partial(_create, mode=mode))  # noqa: SIM115 - closed below
    try:
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (best effort: some file systems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o666) -> None:
    """Write ``data`` to ``path`` atomically (see `atomic_output`)."""
    with atomic_output(path, mode=mode) as fh:
        fh.write(data)
