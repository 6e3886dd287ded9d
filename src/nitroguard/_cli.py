"""The `nitroguard` command line: a thin dispatcher over `nitroguard._commands`.

Exit codes, for every subcommand: `ExitCode` (0 success, 1 a check or verification
failed or an internal error, 2 usage error, unreadable input, unwritable output or
unreachable target). Results go to stdout; logs and progress go to stderr; `--json`
prints exactly one JSON object on stdout, on success and on error (docs/cli.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from nitroguard import __version__
from nitroguard._commands import COMMANDS, load
from nitroguard._commands._common import ExitCode, emit_json, error_json, exit_code_for
from nitroguard.errors import Error, Reason

__all__ = ["main"]

# Kept for callers of the old names; `ExitCode` is the one table.
EXIT_OK = ExitCode.OK
EXIT_FAILED = ExitCode.FAILED
EXIT_USAGE = ExitCode.USAGE


class _UsageError(Exception):
    """argparse misuse, raised by `_Parser.error` so `main` renders it once."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    """argparse that reports misuse with the usage of the (sub)command at fault,
    and accepts `-v` after the command as well as before it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.prog != "nitroguard":
            # default=SUPPRESS: only set when given here, so a `-v` before the
            # command is not reset by the subcommand's parser.
            self.add_argument(
                "-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS
            )

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        ns, extras = super().parse_known_args(args, namespace)
        if extras and self.prog != "nitroguard":
            # Report an unknown option against the subcommand that got it.
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras

    def error(self, message: str) -> NoReturn:
        raise _UsageError(self, message)


def _wanted(argv: Sequence[str]) -> list[str]:
    """The commands to register: only the one named on the command line, when it is
    unambiguous (the first argument that is not an option), else all of them."""
    for arg in argv:
        if arg in {"-h", "--help", "--version"}:
            break
        if arg.startswith("-"):
            continue
        if arg in COMMANDS:
            return [arg]
        break
    return list(COMMANDS)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Build the argument parser; with `argv`, only for the command it names."""
    parser = _Parser(
        prog="nitroguard",
        description="Harden and check AWS Nitro Enclave applications.",
    )
    parser.add_argument("--version", action="version", version=f"nitroguard {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS if argv is None else _wanted(argv):
        load(name)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI and exit with its status code (`ExitCode`)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    sys.exit(int(_main(args_list)))


def _fail(
    *, as_json: bool, code: ExitCode, reason: str, message: str, error_type: str, line: str
) -> ExitCode:
    if as_json:
        emit_json(error_json(code=code, reason=reason, message=message, error_type=error_type))
    sys.stderr.write(line + "\n")
    return code


def _main(argv: list[str]) -> ExitCode:
    as_json = "--json" in argv
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        exc.parser.print_usage(sys.stderr)
        return _fail(
            as_json=as_json,
            code=ExitCode.USAGE,
            reason=Reason.INVALID_ARGUMENT.value,
            message=exc.message,
            error_type="UsageError",
            line=f"nitroguard: error: {exc.message}",
        )
    as_json = bool(getattr(args, "json", False))
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return ExitCode(func(args))
    except Error as exc:
        code = exit_code_for(exc)
        prefix = "nitroguard: error: " if code is ExitCode.USAGE else "nitroguard: "
        return _fail(
            as_json=as_json,
            code=code,
            reason=exc.reason.value,
            message=exc.message,
            error_type=type(exc).__name__,
            line=prefix + exc.diagnostics(),
        )
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`nitroguard ... | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush cannot raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return ExitCode.FAILED
    except Exception as exc:  # the last-resort handler: one line, no traceback
        name = type(exc).__name__
        logging.getLogger("nitroguard").debug("internal error", exc_info=True)
        return _fail(
            as_json=as_json,
            code=ExitCode.INTERNAL,
            reason=Reason.INTERNAL_ERROR.value,
            message=f"{name}: {exc}",
            error_type=name,
            line=f"nitroguard: internal error: {name}: {exc} (a bug; -vv shows the traceback)",
        )
