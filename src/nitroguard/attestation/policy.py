"""Attestation policies: the public namespace ``nitroguard.attestation.policy``.

A logic-free re-export of `nitroguard.attestation._policy`, kept as a public module
(rather than only a name in the package) because the documented spelling is
``from nitroguard.attestation import policy`` then ``policy.PCRs(...)``, and
``from nitroguard.attestation.policy import Policy`` is used for type hints.
"""

from nitroguard.attestation._policy import (
    DEBUG_PCRS,
    MIN_NONCE_LENGTH,
    AllOf,
    AnyOf,
    AttestedFields,
    MaxAge,
    ModuleId,
    Nonce,
    NotDebug,
    PCRs,
    Policy,
    PublicKey,
    UnsafeNoOp,
    UnsafePolicyWarning,
    UserData,
)

__all__ = [
    "DEBUG_PCRS",
    "MIN_NONCE_LENGTH",
    "AllOf",
    "AnyOf",
    "AttestedFields",
    "MaxAge",
    "ModuleId",
    "Nonce",
    "NotDebug",
    "PCRs",
    "Policy",
    "PublicKey",
    "UnsafeNoOp",
    "UnsafePolicyWarning",
    "UserData",
]
