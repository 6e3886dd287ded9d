"""`nitroguard proxy`: not yet available (see the issue tracker)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `proxy` subcommand."""
    parser = sub.add_parser("proxy", help="(not yet available)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    sys.stderr.write("nitroguard proxy: not yet available\n")
    return 2
