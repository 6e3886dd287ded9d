"""The check framework: `Check`, `Options` and the `@check(id, title)` registry.

The checks themselves live in `_checks_rng_time` and `_checks_mem_nsm`: pure
functions from `Facts` to one `Finding` each.

Each check cites its id in ``../shared/spec/threat-checklist.md``. Evidence always
names the file read and the exact value seen (``repr``, so a stray newline or space
is visible); remediations that touch the kernel command line say that PCR0 and PCR1
move, because the command line is part of the measured EIF.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

from nitroguard._kernel import (
    MIN_RNG_KERNEL,
    Cmdline,
    parse_cmdline,
)
from nitroguard.audit._facts import Facts
from nitroguard.errors import ConfigError
from nitroguard.findings import Finding

__all__ = [
    "AREAS",
    "ENV_ID",
    "PCR_NOTE",
    "Check",
    "Options",
    "check",
    "registered",
    "title_of",
]

ENV_ID = "ENV-1"

#: Appended to every remediation that changes the kernel command line or the kernel.
PCR_NOTE = (
    "This changes the kernel command line, which is measured: PCR0 and PCR1 move, so "
    "update every attestation policy and KMS key policy that pins them at the same time."
)
_KERNEL_NOTE = (
    "A new kernel changes the EIF measurement: PCR0 and PCR1 move, so update attestation "
    "and KMS key policies together."
)

#: Display order and names of the areas (the CLI groups findings by these).
AREAS = {
    "ENV": "environment",
    "RNG": "randomness",
    "TIME": "time",
    "CPU": "CPU side channels",
    "MEM": "memory",
    "NSM": "NSM driver",
    "ATT": "attestation",
}

NSM_HWRNG = "nsm-hwrng"
ZERO_PCR = bytes(48)


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """Thresholds used by the checks.

    Attributes:
        min_kernel: RNG-3's minimum kernel (veil's floor, the 2022 RNG rework).
        max_clock_skew: TIME-3 fails when the wall clock differs from the attested
            time by more than this many seconds.
        warn_clock_skew: TIME-3 warns above this many seconds.
    """

    min_kernel: tuple[int, int, int] = MIN_RNG_KERNEL
    max_clock_skew: float = 10.0
    warn_clock_skew: float = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """One registered check.

    Attributes:
        id: the checklist id it reports.
        title: the finding title.
        func: the pure check.
        enclave_only: outside a Nitro Enclave its warn/fail is reported as skip.
    """

    id: str
    title: str
    func: Callable[[Facts, Options], Finding]
    enclave_only: bool = True

    @property
    def area(self) -> str:
        """The id prefix, e.g. ``"RNG"``."""
        return self.id.split("-", 1)[0]


_REGISTRY: dict[str, Check] = {}
_F = TypeVar("_F", bound=Callable[[Facts, Options], Finding])


def check(id: str, title: str, *, enclave_only: bool = True) -> Callable[[_F], _F]:  # noqa: A002 - the checklist calls it an id
    """Register the decorated function as check `id`, titled `title` (its one source).

    Registration order is the display order.

    Raises:
        ConfigError: `id` is registered twice.
    """

    def register(func: _F) -> _F:
        if id in _REGISTRY:
            raise ConfigError(f"check {id} is registered twice")
        _REGISTRY[id] = Check(id, title, func, enclave_only)
        return func

    return register


def title_of(id: str) -> str:  # noqa: A002 - the checklist calls it an id
    """The registered title of check `id`."""
    return _REGISTRY[id].title


def registered() -> tuple[Check, ...]:
    """Every registered check, in registration order."""
    return tuple(_REGISTRY.values())


def _cmdline(facts: Facts) -> Cmdline | None:
    return None if facts.cmdline.raw is None else parse_cmdline(facts.cmdline.raw)
