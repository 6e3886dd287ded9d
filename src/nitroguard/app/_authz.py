"""Who may call what (issue 10): principals, call contexts and ``allow=`` rules.

The channel authenticates the enclave only, and the parent can always run the real
client. So every operation declares ``allow=``; a request runs only if its caller is
allowed. Callers authenticate inside the channel with the reserved ``authenticate``
operation (see `_session`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Collection
from typing import Any

__all__ = [
    "ANYONE",
    "AUTHENTICATED",
    "RESERVED",
    "AllowSpec",
    "Authenticator",
    "CallContext",
    "Operation",
    "Principal",
    "allowed",
]

#: ``allow=AUTHENTICATED``: any caller that authenticated (any scheme).
AUTHENTICATED = "authenticated"
#: ``allow=ANYONE``: anonymous callers too. Unsafe for anything but public data: the
#: parent is always a possible caller. Logged as a warning at start.
ANYONE = "anyone"
#: Reserved operation names.
RESERVED = frozenset({"attest", "authenticate"})


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    name: str
    """The name under which it is trusted: a `TrustedKeys` name (``alice``), or for an
    app scheme the hook's name prefixed with the scheme (``token:carol``), so names
    from different schemes never collide in ``allow=`` sets or per-principal state."""
    scheme: str
    """How it authenticated: ``key`` or the hook's scheme."""


@dataclasses.dataclass(frozen=True, slots=True)
class CallContext:
    """What an operation (or the authentication hook) learns about its caller."""

    principal: Principal | None
    """The authenticated caller; None for an anonymous one (only with ``allow=ANYONE``)."""
    channel_binding: bytes
    """This session's 32-byte exporter value (secret to the two ends)."""
    transcript_hash: bytes
    """SHA-256 of this session's ClientHello || ServerHello."""
    operation: str
    """The operation being called."""


Operation = Callable[[dict[str, Any], CallContext], Awaitable[Any]]
#: ``async def hook(scheme, credential, ctx) -> principal name`` (raise to refuse).
Authenticator = Callable[[str, bytes, CallContext], Awaitable[str]]
#: ``AUTHENTICATED``, ``ANYONE``, a collection of principal names, or a predicate.
AllowSpec = str | Collection[str] | Callable[[Principal], bool]


def allowed(spec: AllowSpec, principal: Principal) -> bool:
    """Whether `principal` passes an operation's ``allow=`` rule (None never reaches here)."""
    if isinstance(spec, str):
        return spec in (AUTHENTICATED, ANYONE)
    if callable(spec):
        return bool(spec(principal))
    return principal.name in spec
