"""The parsed form of a KMS key policy: `KeyPolicy`, `Statement`, `Condition`, and the
`RequestContext` / `Decision` of an evaluation (see `nitroguard.kms._policy`)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from nitroguard.errors import KmsPolicyError, Reason

__all__ = [
    "ATTESTATION_PREFIX",
    "MAX_POLICY_SIZE",
    "Condition",
    "Decision",
    "KeyPolicy",
    "RequestContext",
    "Statement",
]

#: KMS's own limit on a key policy document (32 KiB).
MAX_POLICY_SIZE = 32 * 1024
#: Deepest JSON nesting accepted (a valid policy needs 5).
MAX_DEPTH = 16
#: Lower-case prefix of the Nitro Enclaves attestation condition keys.
ATTESTATION_PREFIX = "kms:recipientattestation:"

_VERSIONS = ("2012-10-17", "2008-10-17")
_STATEMENT_KEYS = frozenset(
    {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource"}
    | {"NotResource", "Condition"}
)
_PRINCIPAL_TYPES = ("AWS", "Service", "Federated", "CanonicalUser")
_STRING_OPS = frozenset(
    {
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringNotEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
        "ArnEquals",
        "ArnNotEquals",
        "ArnLike",
        "ArnNotLike",
        "Bool",
        "Null",
    }
)
_NEGATED_OPS = frozenset(
    {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike"}
)
_UNSUPPORTED_OPS = frozenset(
    {
        "NumericEquals",
        "NumericNotEquals",
        "NumericLessThan",
        "NumericLessThanEquals",
        "NumericGreaterThan",
        "NumericGreaterThanEquals",
        "DateEquals",
        "DateNotEquals",
        "DateLessThan",
        "DateLessThanEquals",
        "DateGreaterThan",
        "DateGreaterThanEquals",
        "BinaryEquals",
        "IpAddress",
        "NotIpAddress",
    }
)
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_ACTION_RE = re.compile(r"^(\*|kms:[A-Za-z*?]+)$", re.IGNORECASE)


def _fail(message: str, where: str, reason: Reason = Reason.INVALID_KEY_POLICY) -> KmsPolicyError:
    return KmsPolicyError(f"{where}: {message}", reason, where=where)


@dataclasses.dataclass(frozen=True, slots=True)
class Condition:
    """One ``operator: {key: values}`` pair of a statement's ``Condition`` block.

    Attributes:
        operator: the operator as written, e.g. ``"ForAnyValue:StringLikeIfExists"``.
        base: the operator without qualifier and ``IfExists`` (``"StringLike"``).
        qualifier: ``"ForAnyValue"``, ``"ForAllValues"`` or ``None``.
        if_exists: whether the ``IfExists`` form was used.
        key: the condition key as written (matching is case-insensitive).
        values: the policy values (numbers and booleans as KMS reads them, as text).
    """

    operator: str
    base: str
    qualifier: str | None
    if_exists: bool
    key: str
    values: tuple[str, ...]

    @property
    def key_lower(self) -> str:
        """The key in lower case, the form used for matching."""
        return self.key.lower()

    @property
    def negated(self) -> bool:
        """True for the ``...Not...`` string and ARN operators."""
        return self.base in _NEGATED_OPS

    def describe(self) -> str:
        """The condition as it reads in the policy: ``"StringLike": {"k": ["v"]}``."""
        values: Any = self.values[0] if len(self.values) == 1 else list(self.values)
        return json.dumps({self.operator: {self.key: values}})


@dataclasses.dataclass(frozen=True, slots=True)
class Statement:
    """One parsed statement.

    Attributes:
        index: its position in ``Statement`` (0-based).
        sid: its ``Sid``, or ``None``.
        effect: ``"Allow"`` or ``"Deny"``.
        principals: ``(type, value)`` pairs; ``("*", "*")`` for ``"Principal": "*"``.
        not_principal: whether the principals came from ``NotPrincipal``.
        actions: the action patterns (from ``Action`` or ``NotAction``).
        not_action: whether they came from ``NotAction``.
        resources: the ``Resource`` values.
        conditions: the conditions, all of which must hold.
    """

    index: int
    sid: str | None
    effect: str
    principals: tuple[tuple[str, str], ...]
    not_principal: bool
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    conditions: tuple[Condition, ...]
    # Precomputed for speed: (anyone, exact principals, accounts), action patterns.
    _principal_index: tuple[bool, frozenset[str], frozenset[str]] = dataclasses.field(
        init=False, repr=False, compare=False
    )
    _action_patterns: tuple[re.Pattern[str], ...] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        anyone = False
        exact: set[str] = set()
        accounts: set[str] = set()
        for kind, value in self.principals:
            if value == "*" and kind in ("*", "AWS"):
                anyone = True
                continue
            exact.add(value)
            if kind == "AWS":
                account = _delegating_account(value)
                if account is not None:
                    accounts.add(account)
        index = (anyone, frozenset(exact), frozenset(accounts))
        object.__setattr__(self, "_principal_index", index)
        patterns = tuple(_wildcard(p, ignore_case=True) for p in self.actions)
        object.__setattr__(self, "_action_patterns", patterns)

    @property
    def label(self) -> str:
        """How findings and decisions name the statement: its Sid, else ``#index``."""
        return self.sid if self.sid else f"#{self.index}"

    def matches_principal(self, principal: str) -> bool:
        """Whether the statement's principal element covers `principal`.

        An account principal (``arn:aws:iam::ACCOUNT:root`` or the bare id) covers every
        principal of that account: see the module docstring (no IAM here).
        """
        anyone, exact, accounts = self._principal_index
        hit = anyone or principal in exact or _account_of(principal) in accounts
        return hit != self.not_principal

    def matches_action(self, action: str) -> bool:
        """Whether the statement's action element covers `action` (e.g. ``kms:Decrypt``)."""
        hit = any(pattern.match(action) for pattern in self._action_patterns)
        return hit != self.not_action


@dataclasses.dataclass(frozen=True, slots=True)
class KeyPolicy:
    """A parsed key policy.

    Attributes:
        version: the ``Version`` (or ``None`` when absent).
        id: the ``Id`` (or ``None``).
        statements: the statements in order.
        document: the policy as a JSON-ready mapping (as read, after unwrapping
            ``get-key-policy`` output).
    """

    version: str | None
    id: str | None
    statements: tuple[Statement, ...]
    document: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class RequestContext:
    """One KMS request as the key policy sees it.

    Attributes:
        principal: the caller's ARN, e.g. ``arn:aws:iam::111122223333:role/enclave``.
        action: the action, e.g. ``kms:Decrypt``.
        conditions: the request's condition keys and values (any case), e.g.
            ``kms:RecipientAttestation:PCR0``, ``kms:EncryptionContext:purpose``,
            ``kms:EncryptionContextKeys`` (a tuple). A key that is absent is not present
            in the request (no ``Recipient`` means no attestation keys).
    """

    principal: str
    action: str
    conditions: Mapping[str, str | tuple[str, ...]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of `evaluate`.

    Attributes:
        allowed: whether KMS would allow the request.
        statement: the label (Sid or ``#index``) of the deciding statement: the explicit
            Deny, or the first Allow that matched; ``None`` for a default deny.
        explicit_deny: whether a Deny statement matched.
    """

    allowed: bool
    statement: str | None
    explicit_deny: bool


def _wildcard(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _account_of(arn: str) -> str | None:
    parts = arn.split(":")
    if len(parts) >= 6 and parts[0] == "arn" and _ACCOUNT_RE.match(parts[4]):
        return parts[4]
    return None


def _delegating_account(value: str) -> str | None:
    """The account an AWS principal delegates to (a bare id or an account root ARN)."""
    if _ACCOUNT_RE.match(value):
        return value
    if value.startswith("arn:") and value.endswith(":root"):
        return _account_of(value)
    return None
