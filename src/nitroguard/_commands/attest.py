"""`nitroguard attest`: not yet available (see the issue tracker)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `attest` subcommand."""
    parser = sub.add_parser("attest", help="(not yet available)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    sys.stderr.write("nitroguard attest: not yet available\n")
    return 2
