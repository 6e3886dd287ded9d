"""`DEFAULT`: every in-enclave check, in display order.

Importing the check modules registers their checks (see `_check.check`). Findings
are shown by area in `AREAS` order, and within an area in registration order, so the
order does not depend on which module is imported first.
"""

from __future__ import annotations

from nitroguard.audit import _checks_mem_nsm, _checks_rng_time
from nitroguard.audit._check import AREAS, Check, registered

__all__ = ["DEFAULT"]

# The modules register on import; name them so the import is not "unused".
_MODULES = (_checks_rng_time, _checks_mem_nsm)

#: The in-enclave checks, ENV-1 first.
_AREA_ORDER = list(AREAS)
DEFAULT: tuple[Check, ...] = tuple(sorted(registered(), key=lambda c: _AREA_ORDER.index(c.area)))
