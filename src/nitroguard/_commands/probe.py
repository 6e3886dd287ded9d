"""`nitroguard probe`: not yet available (see the issue tracker)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `probe` subcommand."""
    parser = sub.add_parser("probe", help="(not yet available)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    sys.stderr.write("nitroguard probe: not yet available\n")
    return 2
