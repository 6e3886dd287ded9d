"""Attestation policies: the public namespace ``nitroguard.attestation.policy``.

A logic-free re-export of `nitroguard.attestation._policy`, kept as a public module
(rather than only a name in the package) because the documented spelling is
``from nitroguard.attestation import policy`` then ``policy.PCRs(...)``, and
``from nitroguard.attestation.policy import Policy`` is used for type hints.
"""

# The star import re-exports exactly `_policy.__all__` (one list of names, not two).
from nitroguard.attestation import _policy
from nitroguard.attestation._policy import *  # noqa: F403

__all__ = _policy.__all__
