"""Subcommands of the `nitroguard` CLI, one module each.

Each module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a handler returning the exit code. Keep handlers thin: parse
arguments, call the library, render the result.

`COMMANDS` maps each command name to its module, imported only when needed:
``nitroguard eif pcr FILE`` loads the EIF code and nothing else, which keeps
start-up short for scripts that call the CLI in a loop.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any, cast

__all__ = ["COMMANDS", "load"]

#: Command name -> module under `nitroguard._commands`, in help order.
COMMANDS: dict[str, str] = {
    "attest": "attest",
    "nsm": "nsm",
    "serve": "serve",
    "proxy": "proxy",
    "health": "health",
    "probe": "probe",
    "audit": "audit",
    "eif": "eif",
    "scan": "scan",
    "kms": "kms",
    "demo": "demo",
}

Register = Callable[["argparse._SubParsersAction[Any]"], None]


def load(name: str) -> Register:
    """Import the module of command `name` and return its ``register`` function."""
    module = importlib.import_module(f"nitroguard._commands.{COMMANDS[name]}")
    return cast(Register, module.register)
