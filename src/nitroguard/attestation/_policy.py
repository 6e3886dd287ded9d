"""Composable policies run after the cryptographic steps (in the style of sigstore-python).

A policy is any object with ``verify(doc, *, at) -> None`` that raises `PolicyError`
when the document does not satisfy it. `Verifier.verify` runs the caller's policy only
after the chain and the signature have been checked (step 7), so policies see
authenticated fields.

Every policy fails closed: `PCRs` needs at least one index and each listed index must
be present, `AllOf`/`AnyOf` refuse to be empty, `Nonce` refuses short nonces. The only
escape hatch, `UnsafeNoOp`, says so in its name and warns every time it runs.

Checklist ids: ATT-2 (`NotDebug`), ATT-3/ATT-7 (`PCRs`), ATT-4 (`Nonce`), ATT-5
(`MaxAge`), ATT-6 (`PublicKey`, `UserData`).
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import warnings
from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

from nitroguard._util import is_int
from nitroguard.errors import ConfigError, PolicyError, Reason

__all__ = [
    "DEBUG_PCRS",
    "MAX_AGE_LIMIT",
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

_log = logging.getLogger("nitroguard.attestation.policy")  # the name users filter on

#: A nonce shorter than this does not protect against replay (checklist ATT-4).
MIN_NONCE_LENGTH = 16

#: The PCRs that are all zero in a debug-mode enclave (image, kernel, application).
DEBUG_PCRS = (0, 1, 2)

_PCR_LENGTH = 48
_ZERO_PCR = bytes(_PCR_LENGTH)


class AttestedFields(Protocol):
    """The document fields a policy may read (`AttestationDocument`, `VerifiedDocument`)."""

    @property
    def module_id(self) -> str:
        """The enclave id."""

    @property
    def timestamp(self) -> int:
        """Milliseconds since the Unix epoch."""

    @property
    def pcrs(self) -> Mapping[int, bytes]:
        """PCR index -> value."""

    @property
    def public_key(self) -> bytes | None:
        """The `public_key` field."""

    @property
    def user_data(self) -> bytes | None:
        """The `user_data` field."""

    @property
    def nonce(self) -> bytes | None:
        """The `nonce` field."""


@runtime_checkable
class Policy(Protocol):
    """Anything that can accept or reject an authenticated document."""

    def verify(self, doc: AttestedFields, *, at: dt.datetime) -> None:
        """Raise `PolicyError` unless `doc` satisfies the policy at time `at`.

        Args:
            doc: the document, already verified cryptographically.
            at: the verification time (timezone-aware), the same one used for the chain.

        Raises:
            PolicyError: with a precise `reason` when the document is rejected.
        """


def _as_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ConfigError(f"{what} must be bytes, got {type(value).__name__}")
    return bytes(value)


def _equal(expected: bytes, actual: bytes | None) -> bool:
    # Constant-time for equal lengths; length is not secret for any field here.
    return actual is not None and hmac.compare_digest(expected, actual)


class PCRs:
    """Exact PCR values: every listed index must be present and equal.

    Defends against: a different enclave image, kernel, application, IAM role (PCR3),
    parent instance (PCR4) or signer (PCR8) than the one you audited, and against
    "expected PCR absent but verification passes" (checklist ATT-3, ATT-7).
    """

    def __init__(self, expected: Mapping[int, bytes]) -> None:
        """Build the policy.

        Args:
            expected: PCR index (0..31) -> 48-byte value.

        Raises:
            ConfigError: empty map, index out of range or value not 48 bytes.
        """
        if not expected:
            raise ConfigError("PCRs needs at least one expected PCR (an empty set accepts all)")
        checked: dict[int, bytes] = {}
        for index, value in expected.items():
            untyped: object = index  # callers without type checking pass anything
            if not is_int(untyped) or not 0 <= index <= 31:
                raise ConfigError(f"PCR index must be in 0..31, got {index!r}")
            raw = _as_bytes(value, f"PCR{index}")
            if len(raw) != _PCR_LENGTH:
                raise ConfigError(f"PCR{index} must be {_PCR_LENGTH} bytes, got {len(raw)}")
            checked[index] = raw
        self.expected: Mapping[int, bytes] = dict(sorted(checked.items()))

    def verify(self, doc: AttestedFields, *, at: dt.datetime) -> None:
        """See `Policy.verify`. Reasons: `pcr_missing`, `pcr_mismatch`."""
        for index, value in self.expected.items():
            actual = doc.pcrs.get(index)
            if actual is None:
                raise PolicyError(
                    f"PCR{index} is required but absent from the document",
                    Reason.PCR_MISSING,
                    step="policy",
                    pcr=index,
                )
            if not hmac.compare_digest(value, actual):
                raise PolicyError(
                    f"PCR{index} is {actual.hex()}, expected {value.hex()}",
                    Reason.PCR_MISMATCH,
                    step="policy",
                    pcr=index,
                )

    def __repr__(self) -> str:
        return f"PCRs({{{', '.join(f'{i}: {v.hex()[:12]}...' for i, v in self.expected.items())}}})"


class NotDebug:
    """Reject debug-mode enclaves: PCR0, PCR1 or PCR2 all zero (or absent).

    Defends against: a debug enclave, whose memory the parent can read through the
    console and whose documents are signed by the same real chain (checklist ATT-2).
    `Verifier.verify` applies this unless ``allow_debug=True``.
    """

    def verify(self, doc: AttestedFields, *, at: dt.datetime) -> None:
        """See `Policy.verify`. Reasons: `debug_mode`, `pcr_missing`."""
        for index in DEBUG_PCRS:
            value = doc.pcrs.get(index)
            if value is None:
                raise PolicyError(
                    f"PCR{index} is absent: cannot tell the enclave is not in debug mode",
                    Reason.PCR_MISSING,
                    step="policy",
                    pcr=index,
                )
            if value == _ZERO_PCR:
                raise PolicyError(
                    f"PCR{index} is all zeros: the enclave runs in debug mode "
                    "(pass allow_debug=True / --allow-debug only for development)",
                    Reason.DEBUG_MODE,
                    step="policy",
                    pcr=index,
                )

    def __repr__(self) -> str:
        return "NotDebug()"


class Nonce:
    """The document must echo your fresh, random nonce (constant-time compare).

    Defends against: replay of an old document captured by the parent or a network
    attacker (checklist ATT-4). Generate the nonce with `secrets.token_bytes(32)` and
    use it once.
    """

    def __init__(self, expected: bytes) -> None:
        """Build the policy.

        Args:
            expected: the nonce you sent, at least 16 bytes (32 recommended).

        Raises:
            ConfigError: when the nonce is shorter than 16 bytes.
        """
        raw = _as_bytes(expected, "nonce")
        if len(raw) < MIN_NONCE_LENGTH:
            raise ConfigError(
                f"nonce is {len(raw)} bytes; at least {MIN_NONCE_LENGTH} are needed "
                "to resist replay (32 recommended)"
            )
        self.expected = raw

    def verify(self, doc: AttestedFields, *, at: dt.datetime) -> None:
        """See `Policy.verify`. Reason: `nonce_mismatch`."""
        if doc.nonce is None:
            raise PolicyError("the document carries no nonce", Reason.NONCE_MISMATCH, step="policy")
        if not _equal(self.expected, doc.nonce):
            raise PolicyError(
                "the document nonce does not match the expected nonce",
                Reason.NONCE_MISMATCH,
                step="policy",
            )

    def __repr__(self) -> str:
        return f"Nonce({len(self.expected)} bytes)"


#: The largest `MaxAge` (and skew) in seconds, about 100 years: anything larger
#: (inf, 1e306) is a mistake, and would overflow the millisecond arithmetic.
MAX_AGE_LIMIT: float = 100 * 365.25 * 86400


class MaxAge:
    """The document `timestamp` must be recent relative to the verification time.

    Defends against: stale documents (a week-old document replayed) and documents
    stamped in the future beyond the allowed clock skew (checklist ATT-5). Measured
    against the `at` passed to `Verifier.verify` (your trusted clock), never the
    document's own idea of time.
    """

    def __init__(self, seconds: float, *, skew: float = 30.0) -> None:
        """Build the policy.

        Args:
            seconds: the largest accepted age, > 0.
            skew: how far in the future a timestamp may be, >= 0.

        Raises:
            ConfigError: when `seconds` <= 0 or `skew` < 0, or either is over
                `MAX_AGE_LIMIT` (inf and nan included).
        """
        if not 0 < seconds <= MAX_AGE_LIMIT:
            raise ConfigError(
                f"max age must be > 0 and <= {MAX_AGE_LIMIT:g} seconds, got {seconds!r}"
            )
        if not 0 <= skew <= MAX_AGE_LIMIT:
            raise ConfigError(f"skew must be >= 0 and <= {MAX_AGE_LIMIT:g} seconds, got {skew!r}")
        self.max_age_ms = round(seconds * 1000)
        self.skew_ms = round(skew * 1000)

    def verify(self, doc: AttestedFields, *, at: dt.datetime) -> None:
        """See `Policy.verify`. Reasons: `stale_document`, `future_document`."""
        now_ms = round(at.timestamp() * 1000)
        age_ms = now_ms - doc.timestamp
        if age_ms > self.max_age_ms:
            raise PolicyError(
                f"document is {age_ms / 1000:.3f} s old; at most {self.max_age_ms / 1000:g} s "
                "allowed",
                Reason.STALE_DOCUMENT,
                step="policy",
            )
        if -age_ms > self.skew_ms:
            raise PolicyError(
                f"document timestamp is {-age_ms / 1000:.3f} s in the future; at most "
                f"{self.skew_ms / 1000:g} s of skew allowed",
                Reason.FUTURE_DOCUMENT,
                step="policy",
            )

    def __repr__(self) -> str:
        return f"MaxAge({self.max_age_ms / 1000:g}, skew={self.skew_ms / 1000:g})"


class UserData:
    """`user_data` must equal the expected bytes exactly.

    Defends against: a document that does not commit to your session (for example a
    hash of the enclave's handshake key) being reused elsewhere (checklist ATT-6).
    """

    def __init__(self, expected: bytes) -> None:
        """Build the policy. Raises `ConfigError` if `expected` is not bytes."""
        self.expected = _as_bytes(expected, "user_data")

    def verify(self, doc: AttestedFields, *, at: dt.datetime) -> None:
        """See `Policy.verify`. Reason: `user_data_mismatch`."""
        if not _equal(self.expected, doc.user_data):
            raise PolicyError("user_data does not match", Reason.USER_DATA_MISMATCH, step="policy")

    def __repr__(self) -> str:
        return f"UserData({len(self.expected)} bytes)"


class PublicKey:
    """`public_key` must equal the expected bytes exactly.

    Defends against: a parent or man in the middle substituting its own key for the
    enclave's (checklist ATT-6); use the key the enclave generated itself.
    """

    def __init__(self, expected: bytes) -> None:
        """Build the policy. Raises `ConfigError` if `expected` is not bytes."""
        self.expected = _as_bytes(expected, "public_key")

    def verify(self, doc: AttestedFields, *, at: dt.datetime) -> None:
        """See `Policy.verify`. Reason: `public_key_mismatch`."""
        if not _equal(self.expected, doc.public_key):
            raise PolicyError(
                "public_key does not match", Reason.PUBLIC_KEY_MISMATCH, step="policy"
            )

    def __repr__(self) -> str:
        return f"PublicKey({len(self.expected)} bytes)"


class ModuleId:
    """`module_id` must equal the expected enclave id.

    Defends against: a document from another enclave (another instance or a restarted
    enclave) with the same image being taken for the one you meant.
    """

    def __init__(self, expected: str) -> None:
        """Build the policy. Raises `ConfigError` when `expected` is not non-empty text."""
        untyped: object = expected
        if not isinstance(untyped, str) or not expected:
            raise ConfigError("module id must be non-empty text")
        self.expected = expected

    def verify(self, doc: AttestedFields, *, at: dt.datetime) -> None:
        """See `Policy.verify`. Reason: `module_id_mismatch`."""
        if doc.module_id != self.expected:
            raise PolicyError(
                f"module_id is {doc.module_id!r}, expected {self.expected!r}",
                Reason.MODULE_ID_MISMATCH,
                step="policy",
            )

    def __repr__(self) -> str:
        return f"ModuleId({self.expected!r})"


def _children(policies: Iterable[Policy], name: str) -> tuple[Policy, ...]:
    children = tuple(policies)
    if not children:
        raise ConfigError(f"{name} needs at least one policy (an empty {name} would accept all)")
    for child in children:
        if not isinstance(child, Policy):
            raise ConfigError(f"{name}: {child!r} is not a policy")
    return children


class AllOf:
    """Every child policy must accept. Refuses to be built empty."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        """Build the policy. Raises `ConfigError` when `policies` is empty."""
        self.policies = _children(policies, "AllOf")

    def verify(self, doc: AttestedFields, *, at: dt.datetime) -> None:
        """See `Policy.verify`. Raises the first child's `PolicyError`."""
        for child in self.policies:
            child.verify(doc, at=at)

    def __repr__(self) -> str:
        return f"AllOf({list(self.policies)!r})"


class AnyOf:
    """At least one child policy must accept. Refuses to be built empty.

    Useful for a list of acceptable PCR sets (for example during an image rollout).
    """

    def __init__(self, policies: Iterable[Policy]) -> None:
        """Build the policy. Raises `ConfigError` when `policies` is empty."""
        self.policies = _children(policies, "AnyOf")

    def verify(self, doc: AttestedFields, *, at: dt.datetime) -> None:
        """See `Policy.verify`. Reason: `policy_failed` when no child accepts."""
        failures: list[PolicyError] = []
        for child in self.policies:
            try:
                child.verify(doc, at=at)
            except PolicyError as exc:
                failures.append(exc)
            else:
                return
        raise PolicyError(
            f"0 of {len(self.policies)} policies accepted the document: "
            + "; ".join(exc.diagnostics() for exc in failures),
            Reason.POLICY_FAILED,
            step="policy",
            reasons=[exc.reason.value for exc in failures],
        )

    def __repr__(self) -> str:
        return f"AnyOf({list(self.policies)!r})"


class UnsafePolicyWarning(UserWarning):
    """Emitted every time `UnsafeNoOp` accepts a document."""


class UnsafeNoOp:
    """**UNSAFE: accepts every document that passed the cryptographic steps.**

    It checks no PCR, nonce, freshness or binding, so any enclave AWS ever signed,
    running any image, passes. Meant for inspection tools and tests only. Every use
    logs a warning and emits `UnsafePolicyWarning`.
    """

    def verify(self, doc: AttestedFields, *, at: dt.datetime) -> None:
        """Accept, loudly."""
        message = (
            f"UnsafeNoOp policy accepted the document of {doc.module_id!r} without checking "
            "PCRs, nonce or freshness"
        )
        _log.warning(message)
        warnings.warn(message, UnsafePolicyWarning, stacklevel=2)

    def __repr__(self) -> str:
        return "UnsafeNoOp()"
