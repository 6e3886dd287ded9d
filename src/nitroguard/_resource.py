"""One shape for everything that holds a connection, a socket or a device.

`AsyncResource` (asyncio) and `Resource` (blocking) are the base classes of the
objects callers must close. ``async with x:`` / ``with x:`` returns ``x`` itself
and closes it on the way out, whatever happened inside, so every closable object
of the package behaves the same way and implements only ``aclose()``/``close()``.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self

__all__ = ["AsyncResource", "Resource"]


class AsyncResource(abc.ABC):
    """An asyncio resource: ``async with`` returns it and awaits `aclose` on exit."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release the resource. Idempotent: closing twice is not an error."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Resource(abc.ABC):
    """A blocking resource: ``with`` returns it and calls `close` on exit."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the resource. Idempotent: closing twice is not an error."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
