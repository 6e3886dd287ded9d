"""`nitroguard eif`: not yet available (see the issue tracker)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `eif` subcommand."""
    parser = sub.add_parser("eif", help="(not yet available)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    sys.stderr.write("nitroguard eif: not yet available\n")
    return 2
