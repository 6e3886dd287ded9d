"""The KMS key-policy linter: could the parent use the key without the enclave?

Every verdict comes from the evaluator the fake KMS uses (`nitroguard.kms._policy`):
for each principal the policy names (and those given with ``--principal``) and each
action that hands out key material, the linter builds the most favourable request it
can for each Allow statement (condition keys other than the attestation ones are filled
with values that satisfy the statement, as an attacker would choose them) and asks
`evaluate` whether

- a request **without** ``Recipient`` (no ``kms:RecipientAttestation:*`` key), or
- a request whose document comes from **another image** (``ImageSha384``, ``PCR0``,
  ``PCR2`` and ``PCR8`` differ; ``PCR1``, ``PCR3``, ``PCR4`` may be shared with it)

is allowed. Deny statements therefore count: a Deny with ``StringNotEqualsIgnoreCase``
that refuses such requests clears the finding. The checks are KMS-1..KMS-8
(``docs/kms.md``, "Key policies"); findings use the audit's `Finding` shape.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence

from nitroguard.errors import KmsPolicyError
from nitroguard.findings import Finding, Status
from nitroguard.kms._policy import (
    ATTESTATION_PREFIX,
    Condition,
    KeyPolicy,
    RequestContext,
    Statement,
    condition_holds,
    evaluate,
    parse_policy,
    statement_applies,
)

__all__ = [
    "ADMIN_ACTIONS",
    "USE_ACTIONS",
    "ImagePcrs",
    "is_soft",
    "lint_policy",
    "other_image_conditions",
]

#: Actions that hand key material (or a re-encryption of it) to the caller.
USE_ACTIONS = (
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyPair",
    "kms:GenerateRandom",
    "kms:DeriveSharedSecret",
    "kms:ReEncryptFrom",
)
#: Actions that change who may use the key.
ADMIN_ACTIONS = ("kms:PutKeyPolicy", "kms:CreateGrant", "kms:ReplicateKey")
#: Actions whose output an encryption context binds.
_CONTEXT_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyPair")

#: Stand-in principals for "anyone" and for "another principal of this account".
_ANYONE = "arn:aws:iam::000000000000:role/nitroguard-lint-anyone"
_OTHER_ROLE = "role/nitroguard-lint-other"
_OTHER_VALUE = "nitroguard-lint-other-value"
#: A measurement no real image has: what "another image" presents.
_OTHER_DIGEST = hashlib.sha384(b"nitroguard lint: another image").hexdigest()
#: The measurements that identify an image (another image cannot reproduce them).
_IMAGE_KEYS = ("imagesha384", "pcr0", "pcr2", "pcr8")
_HEX96 = re.compile(r"^[0-9a-fA-F]{96}$")

_TITLES = {
    "KMS-1": "Using the key requires an attestation of the image",
    "KMS-2": "Attestation conditions use exact operators",
    "KMS-3": "Pinned measurements are real SHA-384 values",
    "KMS-4": "Principals that use the key cannot change who may use it",
    "KMS-5": "Each measurement allows one value",
    "KMS-6": "Key use is bound to an encryption context",
    "KMS-7": "Pinned measurements match the given images",
    "KMS-8": "The key policy is valid",
}
_REMEDIATION = {
    "KMS-1": "Remove the use actions (kms:Decrypt, kms:GenerateDataKey*, kms:ReEncrypt*, "
    "kms:*) from that statement, or add a Deny with StringNotEqualsIgnoreCase on "
    "kms:RecipientAttestation:ImageSha384 for those actions; `nitroguard kms policy` "
    "writes such a policy.",
    "KMS-2": "Use StringEqualsIgnoreCase (no IfExists, no ForAnyValue/ForAllValues, no "
    "wildcards) on kms:RecipientAttestation keys in Allow statements.",
    "KMS-3": "Pin the 96-hex-digit SHA-384 measured from your image (`nitroguard eif pcr`); "
    "an all-zero value matches debug-mode enclaves.",
    "KMS-4": "Give PutKeyPolicy, CreateGrant and ReplicateKey only to administrators that "
    "cannot use the key, or Deny them to the key's users.",
    "KMS-5": "After the rolling upgrade, remove the old image's values.",
    "KMS-6": "Add a StringEquals condition on kms:EncryptionContext:<key> to the "
    "statements that let the enclave decrypt (wrapped-key substitution).",
    "KMS-7": "Regenerate the policy from the image you deploy (`nitroguard kms policy --eif`).",
    "KMS-8": "Fix the policy so that KMS accepts it (see the evidence).",
}

Conditions = dict[str, str | tuple[str, ...]]


@dataclasses.dataclass(frozen=True, slots=True)
class ImagePcrs:
    """The measurements of one image, as hex (from `nitroguard.eif` `Measurements`).

    Attributes:
        name: how findings name the image (its path).
        pcrs: PCR index to lower-case hex; PCR8 is absent for an unsigned image.
    """

    name: str
    pcrs: Mapping[int, str]

    def conditions(self) -> Conditions:
        """The attestation condition keys a document of this image presents."""
        out: Conditions = {f"{ATTESTATION_PREFIX}pcr{i}": v for i, v in self.pcrs.items()}
        out[f"{ATTESTATION_PREFIX}imagesha384"] = self.pcrs[0]
        # An unsigned image's document carries an all-zero PCR8.
        out.setdefault(f"{ATTESTATION_PREFIX}pcr8", "0" * 96)
        return out


def is_soft(condition: Condition) -> bool:
    """Whether an operator lets a request through that an exact match would refuse:
    any ``IfExists``, ``ForAnyValue``/``ForAllValues``, a negated operator, or
    ``StringLike``/``ArnLike`` with a wildcard."""
    if condition.base in ("Null", "Bool"):
        return False
    if condition.if_exists or condition.qualifier is not None or condition.negated:
        return True
    if condition.base in ("StringLike", "ArnLike", "ArnEquals"):
        return any("*" in v or "?" in v for v in condition.values)
    return False


def other_image_conditions() -> Conditions:
    """The fixed attestation keys of a document from another image."""
    return {f"{ATTESTATION_PREFIX}{k}": _OTHER_DIGEST for k in _IMAGE_KEYS}


def _attestation(statement: Statement) -> list[Condition]:
    return [c for c in statement.conditions if c.key_lower.startswith(ATTESTATION_PREFIX)]


def _candidates(conditions: Sequence[Condition]) -> list[str | tuple[str, ...] | None]:
    values: list[str] = []
    for condition in conditions:
        if condition.base in ("Null", "Bool"):
            values += ["true", "false"]
            continue
        for value in condition.values:
            values.append(value.replace("*", "x").replace("?", "x"))
    out: list[str | tuple[str, ...] | None] = [None, *values]
    if values:
        out.append(tuple(dict.fromkeys(values)))
    out.append(_OTHER_VALUE)
    return out


def _witness(
    policy: KeyPolicy,
    statement: Statement,
    principal: str,
    action: str,
    fixed: Mapping[str, str | tuple[str, ...] | None],
) -> Conditions:
    """The condition keys an attacker would send: they satisfy `statement` and dodge as
    many Deny statements as they can, given the `fixed` keys (None: absent).

    Conditions on different keys are AND'd, so each key is chosen on its own: among the
    candidate values (absent, every value the policy names, all of them, another one),
    the first that keeps `statement` true and makes the most Deny conditions false.
    """
    conditions: Conditions = {k: v for k, v in fixed.items() if v is not None}
    wanted: dict[str, list[Condition]] = {}
    for condition in statement.conditions:
        wanted.setdefault(condition.key_lower, []).append(condition)
    dodge: dict[str, list[Condition]] = {}
    for deny in policy.statements:
        if deny.effect != "Deny" or deny is statement:
            continue
        if deny.matches_principal(principal) and deny.matches_action(action):
            for condition in deny.conditions:
                dodge.setdefault(condition.key_lower, []).append(condition)
    base: Conditions = {"aws:principalarn": principal}
    parts = principal.split(":")
    if len(parts) >= 6:
        base["kms:calleraccount"] = parts[4]
    for key in dict.fromkeys([*wanted, *dodge]):
        if key in fixed:
            continue
        group, avoid = wanted.get(key, []), dodge.get(key, [])
        best: tuple[int, str | tuple[str, ...] | None] | None = None
        for candidate in _candidates([*group, *avoid]):
            trial = {**base, **conditions}
            if candidate is None:
                trial.pop(key, None)
            else:
                trial[key] = candidate
            if not all(condition_holds(c, trial) for c in group):
                continue
            score = sum(not condition_holds(c, trial) for c in avoid)
            if best is None or score > best[0]:
                best = (score, candidate)
        if best is not None and best[1] is not None:
            conditions[key] = best[1]
    return conditions


def _principals(policy: KeyPolicy, extra: Iterable[str]) -> list[str]:
    out = list(extra)
    for statement in policy.statements:
        for kind, value in statement.principals:
            if value == "*":
                out.append(_ANYONE)
            elif kind != "AWS":
                out.append(value)
            elif value.isdigit():
                out += [f"arn:aws:iam::{value}:root", f"arn:aws:iam::{value}:{_OTHER_ROLE}"]
            elif value.endswith(":root"):
                out += [value, value[: -len("root")] + _OTHER_ROLE]
            else:
                out.append(value)
        if statement.not_principal:
            out.append(_ANYONE)
    return list(dict.fromkeys(out))


@dataclasses.dataclass
class _Probe:
    """What the probes found for one statement."""

    bypass: list[str] = dataclasses.field(default_factory=list)
    closed_by: set[str] = dataclasses.field(default_factory=set)


def _probe(
    policy: KeyPolicy, statement: Statement, principals: Sequence[str], actions: Sequence[str]
) -> _Probe:
    """Try a request without Recipient and one from another image, for every principal
    and action that `statement` grants."""
    result = _Probe()
    absent: dict[str, str | tuple[str, ...] | None] = {
        c.key_lower: None for s in policy.statements for c in _attestation(s)
    }
    scenarios: list[tuple[str, Mapping[str, str | tuple[str, ...] | None]]] = [
        ("a request without Recipient", absent),
        ("a document from another image", other_image_conditions()),
    ]
    for principal in principals:
        if not statement.matches_principal(principal):
            continue
        for action in actions:
            if not statement.matches_action(action):
                continue
            for what, fixed in scenarios:
                conditions = _witness(policy, statement, principal, action, fixed)
                request = RequestContext(principal, action, conditions)
                decision = evaluate(policy, request)
                # Only a request that this statement grants is this statement's hole
                # (another statement that also allows it is probed on its own).
                if decision.allowed and statement_applies(statement, request):
                    result.bypass.append(
                        f"{what} may call {action} as {principal} "
                        f"(allowed by statement {decision.statement})"
                    )
                elif decision.explicit_deny and decision.statement is not None:
                    result.closed_by.add(decision.statement)
    return result


def _users(policy: KeyPolicy, principals: Sequence[str]) -> dict[str, str]:
    """Principals that some request (attested or not) lets use the key: principal ->
    "action via statement"."""
    users: dict[str, str] = {}
    for principal in principals:
        for statement in policy.statements:
            if statement.effect != "Allow" or not statement.matches_principal(principal):
                continue
            for action in USE_ACTIONS:
                if principal in users or not statement.matches_action(action):
                    continue
                conditions = _witness(policy, statement, principal, action, {})
                decision = evaluate(policy, RequestContext(principal, action, conditions))
                if decision.allowed:
                    users[principal] = f"{action} via statement {decision.statement}"
    return users


def _brief(items: Sequence[str], limit: int = 2) -> str:
    """The first `limit` items, then how many more: evidence stays readable."""
    head = "; ".join(items[:limit])
    return head + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _finding(check: str, status: Status, evidence: str) -> Finding:
    remediation = _REMEDIATION[check] if status in (Status.FAIL, Status.WARN) else ""
    return Finding(check, _TITLES[check], status, evidence, remediation)


def _kms1_kms2(
    policy: KeyPolicy, principals: Sequence[str]
) -> tuple[Finding, Finding, list[Statement]]:
    bypass1: list[str] = []
    cleared1: list[str] = []
    bypass2: list[str] = []
    cleared2: list[str] = []
    use_statements: list[Statement] = []
    for statement in policy.statements:
        if statement.effect != "Allow":
            continue
        actions = [a for a in USE_ACTIONS if statement.matches_action(a)]
        if not actions or not any(statement.matches_principal(p) for p in principals):
            continue
        use_statements.append(statement)
        soft = [c for c in _attestation(statement) if is_soft(c)]
        probe = _probe(policy, statement, principals, actions)
        name = f"statement {statement.label}"
        if soft:
            conds = ", ".join(c.describe() for c in soft)
            if probe.bypass:
                bypass2.append(f"{name} uses a soft operator {conds}: " + _brief(probe.bypass))
            elif probe.closed_by:
                cleared2.append(
                    f"{name} uses {conds}, closed by Deny {', '.join(sorted(probe.closed_by))}"
                )
            else:
                bypass2.append(f"{name} uses a soft operator {conds}")
        elif probe.bypass:
            pinned = ", ".join(c.describe() for c in _attestation(statement))
            why = (
                f"pins nothing that identifies the image ({pinned})"
                if pinned
                else "has no kms:RecipientAttestation condition"
            )
            bypass1.append(f"{name} {why}: " + _brief(probe.bypass))
        elif probe.closed_by:
            cleared1.append(f"{name} is closed by Deny {', '.join(sorted(probe.closed_by))}")
    if bypass1:
        kms1 = _finding("KMS-1", Status.FAIL, " | ".join(bypass1))
    else:
        note = "; ".join(cleared1) if cleared1 else "every statement that grants use"
        kms1 = _finding(
            "KMS-1",
            Status.PASS,
            f"no request without Recipient or from another image is allowed ({note})",
        )
    if bypass2:
        kms2 = _finding("KMS-2", Status.FAIL, " | ".join(bypass2))
    else:
        note = "; ".join(cleared2) if cleared2 else "no soft operator on attestation keys"
        kms2 = _finding("KMS-2", Status.PASS, note)
    return kms1, kms2, use_statements


def _kms3(policy: KeyPolicy) -> Finding:
    bad: list[str] = []
    seen = 0
    for statement in policy.statements:
        for condition in _attestation(statement):
            if condition.base in ("Null", "Bool"):
                continue
            for value in condition.values:
                seen += 1
                if value.strip("0") == "":
                    why = "is all zeros (matches debug-mode enclaves)"
                elif not _HEX96.match(value):
                    why = "is not 96 hex digits"
                else:
                    continue
                bad.append(f"statement {statement.label}: {condition.describe()}: {value!r} {why}")
    if bad:
        return _finding("KMS-3", Status.FAIL, " | ".join(bad))
    if not seen:
        return _finding("KMS-3", Status.SKIP, "no attestation condition values")
    return _finding("KMS-3", Status.PASS, f"{seen} pinned value(s), all 96 hex digits, none zero")


def _kms4(policy: KeyPolicy, users: Mapping[str, str]) -> Finding:
    bad: list[str] = []
    for principal, how in users.items():
        for statement in policy.statements:
            if statement.effect != "Allow" or not statement.matches_principal(principal):
                continue
            for action in ADMIN_ACTIONS:
                if not statement.matches_action(action):
                    continue
                conditions = _witness(policy, statement, principal, action, {})
                decision = evaluate(policy, RequestContext(principal, action, conditions))
                if decision.allowed:
                    bad.append(
                        f"{principal} may use the key ({how}) and may call {action} "
                        f"(statement {decision.statement})"
                    )
    bad = list(dict.fromkeys(bad))
    if bad:
        return _finding("KMS-4", Status.FAIL, _brief(bad, 3))
    if not users:
        return _finding("KMS-4", Status.SKIP, "no principal may use the key")
    return _finding(
        "KMS-4", Status.PASS, f"the key's users ({', '.join(users)}) cannot change its access"
    )


def _kms5(statements: Sequence[Statement]) -> Finding:
    values: dict[str, dict[str, list[str]]] = {}
    for statement in statements:
        for condition in _attestation(statement):
            if is_soft(condition) or condition.base in ("Null", "Bool"):
                continue
            per_key = values.setdefault(condition.key, {})
            for value in condition.values:
                per_key.setdefault(value.lower(), []).append(statement.label)
    several = [
        f"{key} allows {len(vals)} values ({', '.join(v[:12] + '...' for v in vals)}) "
        f"in statement(s) {', '.join(sorted({s for ss in vals.values() for s in ss}))}"
        for key, vals in values.items()
        if len(vals) > 1
    ]
    if several:
        return _finding("KMS-5", Status.WARN, " | ".join(several))
    if not values:
        return _finding("KMS-5", Status.SKIP, "no exact attestation condition")
    return _finding("KMS-5", Status.PASS, f"one value for each of {', '.join(values)}")


def _kms6(policy: KeyPolicy, statements: Sequence[Statement], users: Mapping[str, str]) -> Finding:
    relevant = [s for s in statements if any(s.matches_action(a) for a in _CONTEXT_ACTIONS)]
    if not relevant or not users:
        return _finding("KMS-6", Status.SKIP, "no statement lets a principal decrypt")

    def binds(statement: Statement) -> bool:
        return any(
            c.key_lower.startswith("kms:encryptioncontext:")
            or c.key_lower == "kms:encryptioncontextkeys"
            for c in statement.conditions
        )

    denies = [
        s.label
        for s in policy.statements
        if s.effect == "Deny" and binds(s) and any(s.matches_action(a) for a in _CONTEXT_ACTIONS)
    ]
    unbound = [s.label for s in relevant if not binds(s)]
    if unbound and not denies:
        return _finding(
            "KMS-6",
            Status.WARN,
            f"statement(s) {', '.join(unbound)} allow Decrypt/GenerateDataKey* with no "
            "kms:EncryptionContext: condition",
        )
    keys = sorted(
        {
            c.key
            for s in [*relevant, *(t for t in policy.statements if t.label in denies)]
            for c in s.conditions
            if c.key_lower.startswith("kms:encryptioncontext")
        }
    )
    return _finding("KMS-6", Status.PASS, f"bound to {', '.join(keys)}")


def _kms7(
    policy: KeyPolicy,
    statements: Sequence[Statement],
    principals: Sequence[str],
    images: Sequence[ImagePcrs],
) -> Finding:
    if not images:
        return _finding("KMS-7", Status.SKIP, "no image given (--eif)")
    attested = [s for s in statements if _attestation(s)]
    if not attested:
        return _finding("KMS-7", Status.FAIL, "no statement pins an image measurement")
    labels = {s.label for s in attested}
    matched: dict[str, str] = {}
    for image in images:
        fixed = image.conditions()
        for statement in attested:
            for principal in principals:
                if image.name in matched or not statement.matches_principal(principal):
                    continue
                for action in USE_ACTIONS:
                    if not statement.matches_action(action):
                        continue
                    conditions = _witness(policy, statement, principal, action, fixed)
                    decision = evaluate(policy, RequestContext(principal, action, conditions))
                    if decision.allowed and decision.statement in labels:
                        matched[image.name] = f"statement {decision.statement}"
                        break
    missing = [i.name for i in images if i.name not in matched]
    if len(missing) == len(images):
        pinned = "; ".join(
            f"statement {s.label}: " + ", ".join(c.describe() for c in _attestation(s))
            for s in attested
        )
        return _finding(
            "KMS-7",
            Status.FAIL,
            f"none of {', '.join(missing)} is allowed by the pinned values ({pinned})",
        )
    evidence = "; ".join(f"{name} allowed by {how}" for name, how in matched.items())
    if missing:
        evidence += f"; not allowed: {', '.join(missing)}"
    return _finding("KMS-7", Status.PASS, evidence)


def lint_policy(
    policy: str | bytes | KeyPolicy,
    *,
    principals: Sequence[str] = (),
    images: Sequence[ImagePcrs] = (),
) -> list[Finding]:
    """Lint a key policy (text, ``get-key-policy`` output, or parsed): KMS-1..KMS-8.

    Args:
        policy: the policy.
        principals: principals to check in addition to those the policy names.
        images: images whose measurements the policy should allow (KMS-7).

    Returns:
        One `Finding` per check, in id order. A policy that does not parse gives a
        failing KMS-8 and every other check skipped; nothing is raised for it.
    """
    if not isinstance(policy, KeyPolicy):
        try:
            policy = parse_policy(policy)
        except KmsPolicyError as exc:
            findings = [_finding("KMS-8", Status.FAIL, exc.diagnostics())]
            findings += [
                _finding(f"KMS-{i}", Status.SKIP, "the policy did not parse") for i in range(1, 8)
            ]
            return sorted(findings, key=lambda f: f.id)
    everyone = _principals(policy, principals)
    kms1, kms2, use_statements = _kms1_kms2(policy, everyone)
    users = _users(policy, everyone)
    return [
        kms1,
        kms2,
        _kms3(policy),
        _kms4(policy, users),
        _kms5(use_statements),
        _kms6(policy, use_statements, users),
        _kms7(policy, use_statements, everyone, images),
        _finding("KMS-8", Status.PASS, f"{len(policy.statements)} statement(s) parsed"),
    ]
