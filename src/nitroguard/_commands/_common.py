"""Helpers shared by the CLI subcommands: the exit codes, input reading and output
writing, hex/time parsing, JSON output (and its one error shape)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from nitroguard.errors import ConfigError, Error, Reason

__all__ = [
    "USAGE_REASONS",
    "ExitCode",
    "emit_json",
    "error_json",
    "exit_code_for",
    "parse_hex",
    "parse_time",
    "read_blob",
    "unwritable",
    "write_output",
]

#: The CLI never reads more than this from a file or stdin for a single blob.
MAX_BLOB = 64 * 1024 * 1024

_HEX_RE = re.compile(rb"^[0-9a-fA-F\s]+$")
_B64_RE = re.compile(rb"^[A-Za-z0-9+/=_\-\s]+$")


def read_blob(path: str, *, limit: int = MAX_BLOB, decode_text: bool = True) -> bytes:
    """Read a file (or stdin for ``-``); optionally detect and decode hex or base64 text.

    Raises:
        Error: `unreadable_input` when the file cannot be read, is too large or its
            text encoding is invalid.
    """
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(limit + 1)
        else:
            with Path(path).open("rb") as fh:
                raw = fh.read(limit + 1)
    except OSError as exc:
        raise Error(f"cannot read {path}: {exc.strerror}", Reason.UNREADABLE_INPUT) from exc
    if len(raw) > limit:
        raise Error(f"{path}: input larger than {limit} bytes", Reason.UNREADABLE_INPUT)
    if not decode_text:
        return raw
    stripped = raw.strip()
    if not stripped:
        raise Error(f"{path}: empty input", Reason.UNREADABLE_INPUT)
    # CBOR documents start with 0x84 (array) or 0xd2 (tag 18): never ASCII text.
    if _HEX_RE.match(stripped) and len(b"".join(stripped.split())) % 2 == 0:
        try:
            return bytes.fromhex(stripped.decode("ascii"))
        except ValueError as exc:  # pragma: no cover - regex already filtered
            raise Error(f"{path}: invalid hex", Reason.UNREADABLE_INPUT) from exc
    if _B64_RE.match(stripped):
        text = b"".join(stripped.split())
        try:
            if b"-" in text or b"_" in text:
                return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
            return base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Error(f"{path}: invalid base64", Reason.UNREADABLE_INPUT) from exc
    return raw


def parse_hex(value: str, what: str = "value") -> bytes:
    """Parse a hex string (an optional ``0x`` prefix is allowed).

    Raises:
        ConfigError: `invalid_argument` when it is not valid hex.
    """
    text = value.strip()
    if text.lower().startswith("0x"):
        text = text[2:]
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{what}: not valid hex: {value!r}") from None


def parse_time(value: str) -> dt.datetime:
    """Parse ISO-8601 (``2023-05-24T18:37:46Z``) or integer epoch milliseconds, as UTC.

    Raises:
        ConfigError: `invalid_argument` when it is neither.
    """
    text = value.strip()
    if re.fullmatch(r"\d+", text):
        try:
            return dt.datetime.fromtimestamp(int(text) / 1000, tz=dt.UTC)
        except (OverflowError, ValueError, OSError):
            raise ConfigError(f"time out of range: {value!r}") from None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(f"not an ISO-8601 time or epoch milliseconds: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def emit_json(obj: Any) -> None:
    """Print one JSON object on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


class ExitCode(enum.IntEnum):
    """The exit status of every `nitroguard` command (README, "Exit codes").

    `INTERNAL` shares 1 with `FAILED` (an alias): a bug of ours is reported as a
    failure, never as the caller's usage error.
    """

    OK = 0
    #: A check, verification or attack failed (the answer is "no").
    FAILED = 1
    #: An unexpected exception (a bug): one line `internal error: TYPE: ...`.
    INTERNAL = 1
    #: Usage error: bad option or value, unreadable or empty input, unwritable output,
    #: unreachable target.
    USAGE = 2
    #: Interrupted by Ctrl-C.
    INTERRUPTED = 130


#: Error reasons that mean the caller asked for something impossible (exit 2), not
#: that a check failed (exit 1).
USAGE_REASONS = frozenset(
    {
        Reason.INVALID_ARGUMENT,
        Reason.UNREADABLE_INPUT,
        Reason.UNWRITABLE_OUTPUT,
        Reason.TARGET_UNREACHABLE,
        Reason.REMOTE_TARGET_REFUSED,
    }
)


def exit_code_for(exc: Error) -> ExitCode:
    """The exit code for a nitroguard error that reached the top of a command."""
    if isinstance(exc, ConfigError) or exc.reason in USAGE_REASONS:
        return ExitCode.USAGE
    return ExitCode.FAILED


def error_json(*, code: ExitCode, reason: str, message: str, error_type: str) -> dict[str, Any]:
    """The one error shape of every command's `--json` output (docs/cli.md)."""
    return {
        "error": {
            "type": error_type,
            "reason": reason,
            "message": message,
            "exit_code": int(code),
        }
    }


def write_output(path: str, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file + rename), honouring the umask.

    Raises:
        Error: `unwritable_output` when the file cannot be written.
    """
    out = Path(path)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        # O_EXCL + the umask: the same mode a plain `open(path, "w")` would give.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise unwritable(path, exc) from exc


def unwritable(path: str | os.PathLike[str], exc: OSError) -> Error:
    """The one error for an output file that cannot be written (exit 2)."""
    return Error(f"cannot write {path}: {exc.strerror or exc}", Reason.UNWRITABLE_OUTPUT)
