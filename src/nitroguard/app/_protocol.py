"""Request/response messages of `EnclaveApp` (pure functions, no I/O).

Each application message on the channel is one CBOR map (decoded strictly, with the
foundation decoder: bounded size and depth, no duplicate keys, no tags, no floats):

- request: ``{"op": text, "args": map}``
- response: ``{"ok": true, "result": any}`` or
  ``{"ok": false, "error": {"reason": text, "message": text}}``
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nitroguard.errors import (
    AppError,
    DecodeError,
    Error,
    Reason,
    RemoteProtocolError,
)
from nitroguard.hazmat import cbor

__all__ = [
    "DEFAULT_MAX_ITEMS",
    "decode_request",
    "decode_response",
    "encode_error",
    "encode_request",
    "encode_result",
]

_MAX_DEPTH = 16


def encode_request(op: str, args: Mapping[str, Any]) -> bytes:
    """Serialize a request."""
    return cbor.dumps({"op": op, "args": dict(args)})


#: Default item budget of one request (a vault ``put`` has 7 items). At 128 the worst
#: 64 KiB request costs 3.5x a benign one (bench/app_limits.py); at 1024 it was 25x.
DEFAULT_MAX_ITEMS = 128


def _loads(
    message: bytes, max_size: int, what: str, max_items: int | None = None
) -> dict[Any, Any]:
    if len(message) > max_size:
        # Refused before any decoding (and before the strict walk).
        raise RemoteProtocolError(
            f"{what}: {len(message)} bytes exceeds the limit of {max_size}", Reason.TOO_LARGE
        )
    try:
        value = cbor.loads(message, max_size=max_size, max_depth=_MAX_DEPTH, max_items=max_items)
    except DecodeError as exc:
        raise RemoteProtocolError(f"{what}: {exc.message}", exc.reason) from None
    if not isinstance(value, dict):
        raise RemoteProtocolError(f"{what}: not a CBOR map", Reason.UNEXPECTED_MESSAGE)
    return value


def decode_request(
    message: bytes, *, max_size: int, max_items: int = DEFAULT_MAX_ITEMS
) -> tuple[str, dict[str, Any]]:
    """Parse a request into ``(op, args)``.

    `max_size` is checked before anything is decoded; the strict walk then stops at
    `max_items` items, so a nested-array bomb costs about what a benign request does.

    Raises:
        RemoteProtocolError: malformed CBOR or shape (`unexpected_message`, or the
            decoder's reason such as `too_large` or `too_many_items`).
    """
    value = _loads(message, max_size, "request", max_items)
    op, args = value.get("op"), value.get("args", {})
    if set(value) - {"op", "args"}:
        raise RemoteProtocolError("request: unknown keys", Reason.UNEXPECTED_MESSAGE)
    if not isinstance(op, str) or not isinstance(args, dict):
        raise RemoteProtocolError(
            "request: op must be text and args a map", Reason.UNEXPECTED_MESSAGE
        )
    if not all(isinstance(k, str) for k in args):
        raise RemoteProtocolError("request: argument names must be text", Reason.UNEXPECTED_MESSAGE)
    return op, args


def encode_result(result: Any) -> bytes:
    """Serialize a successful response."""
    return cbor.dumps({"ok": True, "result": result})


def encode_error(error: Error) -> bytes:
    """Serialize an error response (reason and message only: never details)."""
    return cbor.dumps(
        {"ok": False, "error": {"reason": error.reason.value, "message": error.message}}
    )


def decode_response(message: bytes, *, max_size: int) -> Any:
    """Parse a response and return its result.

    Raises:
        AppError: the server answered with an error.
        RemoteProtocolError: malformed response.
    """
    value = _loads(message, max_size, "response")
    ok = value.get("ok")
    if ok is True and "result" in value:
        return value["result"]
    error = value.get("error")
    if ok is False and isinstance(error, dict):
        remote = str(error.get("reason", ""))
        try:
            reason = Reason(remote)
        except ValueError:
            reason = Reason.INTERNAL_ERROR
        raise AppError(str(error.get("message", "")), reason, remote_reason=remote)
    raise RemoteProtocolError("response: neither a result nor an error", Reason.UNEXPECTED_MESSAGE)
