"""The `nitroguard` command line: a thin dispatcher over `nitroguard._commands`.

Exit codes, for every subcommand: 0 success, 1 a check or verification failed,
2 usage error or unreadable input. Results go to stdout; logs and progress go to
stderr; `--json` prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from nitroguard import __version__
from nitroguard._commands import COMMANDS
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


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser (used by `main` and by the README check)."""
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
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI and exit with its status code."""
    parser = build_parser()
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
    sys.exit(code)
