"""Subcommands of the `nitroguard` CLI, one module each.

Each module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a handler returning the exit code. Keep handlers thin: parse
arguments, call the library, render the result.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from nitroguard._commands import attest, audit, demo, eif, nsm, probe, proxy, scan, serve

COMMANDS: tuple[Callable[[argparse._SubParsersAction[Any]], None], ...] = (
    attest.register,
    nsm.register,
    serve.register,
    proxy.register,
    probe.register,
    audit.register,
    eif.register,
    scan.register,
    demo.register,
)
