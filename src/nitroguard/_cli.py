"""The `nitroguard` command line: a thin dispatcher over `nitroguard._commands`.

Exit codes, for every subcommand: 0 success, 1 a check or verification failed,
2 usage error or unreadable input. Results go to stdout; logs and progress go to
stderr; `--json` prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from nitroguard import __version__
from nitroguard._commands import COMMANDS, load
from nitroguard.errors import ConfigError, Error, Reason

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with our message format on misuse."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"nitroguard: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


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
    """Run the CLI and exit with its status code."""
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        code = func(args)
    except ConfigError as exc:
        sys.stderr.write(f"nitroguard: error: {exc.diagnostics()}\n")
        code = EXIT_USAGE
    except Error as exc:
        code = EXIT_USAGE if exc.reason is Reason.UNREADABLE_INPUT else EXIT_FAILED
        sys.stderr.write(f"nitroguard: {exc.diagnostics()}\n")
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # The reader went away (`nitroguard ... | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush cannot raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        code = EXIT_FAILED
    sys.exit(code)
