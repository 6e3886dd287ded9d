"""Where every EIF output is written: `atomic_output` with the EIF error policy."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from nitroguard import _atomic
from nitroguard.errors import Error, Reason

__all__ = ["atomic_output"]


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[BinaryIO]:
    """`nitroguard._atomic.atomic_output` (umask-honouring mode, fsync, rename), raising
    our error: every EIF output (`build_eif`, `sign_eif`, the image build) goes through it.

    Raises:
        Error: `unwritable_output` when the output cannot be written.
    """
    try:
        with _atomic.atomic_output(path) as fh:
            yield fh
    except OSError as exc:
        raise Error(f"cannot write {path}: {exc.strerror}", Reason.UNWRITABLE_OUTPUT) from exc
