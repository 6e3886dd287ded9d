"""Small argument checks shared across packages (one copy of each)."""

from __future__ import annotations

from typing import TypeGuard

__all__ = ["is_int"]


def is_int(value: object) -> TypeGuard[int]:
    """Whether `value` is an integer and not a `bool`.

    `bool` subclasses `int`, so ``isinstance(True, int)`` holds; a count, an index or
    a CBOR integer field must never accept ``True`` as 1. Every such check in the
    package goes through here.
    """
    return isinstance(value, int) and not isinstance(value, bool)
