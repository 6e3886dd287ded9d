"""KMS key policies: a strict, bounded parser and an evaluator with KMS's semantics.

The fake KMS (`nitroguard.kms._fake`) authorizes every request with `evaluate`, and the
key-policy linter (`nitroguard.kms._lint`) asks the same evaluator whether a request
without ``Recipient``, or from another image, could succeed: both must agree, so there
is exactly one implementation of the rules (``../shared/spec/kms.md`` section 2).

What is modelled (the parts that decide whether the attestation gate holds):

- ``Effect`` Allow/Deny: an explicit Deny wins, and nothing allowed means denied.
- ``Principal`` / ``NotPrincipal``: ``"*"``, ``{"AWS": ARN | [ARN...]}`` (also
  ``Service``/``Federated``/``CanonicalUser``, matched literally). **The fake has no
  IAM:** a KMS key policy that names an account (``arn:aws:iam::ACCOUNT:root`` or the
  bare 12-digit id) delegates to that account's IAM policies, which may grant the key
  to any of its principals. We therefore treat such a principal as matching every
  principal of that account, the worst case, which is what a linter must assume.
- ``Action`` / ``NotAction``: case-insensitive, with ``*`` and ``?`` wildcards
  (``kms:*``, ``kms:GenerateDataKey*``).
- ``Resource``: in a key policy, ``"*"`` means "this key". Key ARNs are accepted and also
  taken to mean this key; ``NotResource`` is refused (`unsupported_policy_element`).
- ``Condition``: ``String{Equals,NotEquals,EqualsIgnoreCase,NotEqualsIgnoreCase,Like,
  NotLike}``, ``Arn{Equals,NotEquals,Like,NotLike}``, ``Bool``, ``Null``, each with an
  ``IfExists`` form (except ``Null``) and the ``ForAnyValue:``/``ForAllValues:``
  qualifiers. Several values of one key are OR'd; several keys and operators are AND'd;
  condition-key names are case-insensitive. When a key is absent from the request, a
  positive operator is false, a negated one (``StringNotEquals``...) is **true**, an
  ``IfExists`` form is true, ``ForAnyValue`` is false and ``ForAllValues`` is true;
  this is exactly why soft operators let a request without ``Recipient`` through.
  Numeric, Date, IpAddress and Binary operators are refused as unsupported.

Request condition keys that KMS always sets, ``aws:PrincipalArn`` and
``kms:CallerAccount``, are derived from the principal when the caller leaves them out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from nitroguard.errors import KmsPolicyError, Reason
from nitroguard.kms._policy_model import (
    _ACCOUNT_RE,
    _ACTION_RE,
    _PRINCIPAL_TYPES,
    _STATEMENT_KEYS,
    _STRING_OPS,
    _UNSUPPORTED_OPS,
    _VERSIONS,
    ATTESTATION_PREFIX,
    MAX_DEPTH,
    MAX_POLICY_SIZE,
    Condition,
    Decision,
    KeyPolicy,
    RequestContext,
    Statement,
    _account_of,
    _fail,
    _wildcard,
)

__all__ = [
    "ATTESTATION_PREFIX",
    "MAX_POLICY_SIZE",
    "Condition",
    "Decision",
    "KeyPolicy",
    "RequestContext",
    "Statement",
    "condition_holds",
    "evaluate",
    "parse_policy",
    "statement_applies",
]


# --- parsing -----------------------------------------------------------------------------


def _check_depth(text: str) -> None:
    """Refuse nesting beyond `MAX_DEPTH` before `json` recurses into it."""
    depth = 0
    in_string = False
    escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise KmsPolicyError(
                    f"policy nests deeper than {MAX_DEPTH} levels", Reason.TOO_DEEP, where="$"
                )
        elif char in "]}":
            depth -= 1


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise KmsPolicyError(
                f"duplicate JSON key {key!r}", Reason.MALFORMED_POLICY_JSON, where="$"
            )
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise KmsPolicyError(f"{name} is not valid JSON", Reason.MALFORMED_POLICY_JSON, where="$")


def _load_json(text: str | bytes) -> Any:
    if isinstance(text, bytes | bytearray):
        if len(text) > 4 * MAX_POLICY_SIZE:
            raise KmsPolicyError(
                f"policy larger than {MAX_POLICY_SIZE} characters", Reason.TOO_LARGE, where="$"
            )
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise KmsPolicyError(
                f"policy is not UTF-8 text (byte {exc.start})",
                Reason.MALFORMED_POLICY_JSON,
                where="$",
            ) from None
    if not isinstance(text, str):
        raise KmsPolicyError("policy must be text", Reason.MALFORMED_POLICY_JSON, where="$")
    if text.startswith("\ufeff"):
        text = text[1:]
    if len(text) > MAX_POLICY_SIZE * 2:
        # get-key-policy output escapes the inner policy, so allow twice KMS's limit here;
        # the inner document is checked against the real limit below.
        raise KmsPolicyError(
            f"policy larger than {MAX_POLICY_SIZE} characters", Reason.TOO_LARGE, where="$"
        )
    _check_depth(text)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except KmsPolicyError:
        raise
    except (ValueError, RecursionError) as exc:
        where = ""
        if isinstance(exc, json.JSONDecodeError):
            where = f" at line {exc.lineno} column {exc.colno}: {exc.msg}"
        raise KmsPolicyError(
            f"policy is not valid JSON{where}", Reason.MALFORMED_POLICY_JSON, where="$"
        ) from None


def _check_text(value: str, where: str) -> str:
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise _fail("lone surrogate in a string", where, Reason.MALFORMED_POLICY_JSON)
    return value


def _strings(value: Any, where: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items and not allow_empty:
        raise _fail("empty list", where)
    out = []
    for item in items:
        if not isinstance(item, str) or not item:
            raise _fail(f"expected a non-empty string, got {json.dumps(item)[:60]}", where)
        out.append(_check_text(item, where))
    return tuple(out)


def _parse_principal(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if value == "*":
        return (("*", "*"),)
    if not isinstance(value, dict) or not value:
        raise _fail('must be "*" or an object such as {"AWS": ARN}', where)
    out: list[tuple[str, str]] = []
    for kind, entries in value.items():
        if kind not in _PRINCIPAL_TYPES:
            raise _fail(f"unknown principal type {kind!r}", where)
        for entry in _strings(entries, f"{where}.{kind}"):
            valid = entry == "*" or _ACCOUNT_RE.match(entry) or entry.startswith("arn:")
            if kind == "AWS" and not valid:
                raise _fail(f"invalid AWS principal {entry!r}", f"{where}.{kind}")
            out.append((kind, entry))
    return tuple(out)


def _split_operator(operator: str, where: str) -> tuple[str | None, str, bool]:
    qualifier: str | None = None
    base = operator
    if ":" in base:
        qualifier, _, base = base.partition(":")
        if qualifier not in ("ForAnyValue", "ForAllValues"):
            raise _fail(
                f"unknown set qualifier {qualifier!r} (ForAnyValue or ForAllValues)",
                where,
                Reason.INVALID_POLICY_CONDITION,
            )
    if_exists = base.endswith("IfExists")
    if if_exists:
        base = base[: -len("IfExists")]
    if base in _UNSUPPORTED_OPS:
        raise _fail(
            f"operator {operator!r} is valid in KMS but not evaluated by nitroguard",
            where,
            Reason.UNSUPPORTED_POLICY_ELEMENT,
        )
    if base not in _STRING_OPS:
        raise _fail(
            f"unknown condition operator {operator!r}", where, Reason.INVALID_POLICY_CONDITION
        )
    if base == "Null" and (if_exists or qualifier):
        raise _fail(
            f"{operator!r}: Null takes no IfExists form or set qualifier",
            where,
            Reason.INVALID_POLICY_CONDITION,
        )
    return qualifier, base, if_exists


def _condition_values(value: Any, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise _fail(
            "a condition key needs at least one value", where, Reason.INVALID_POLICY_CONDITION
        )
    out = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, str):
            out.append(_check_text(item, where))
        elif isinstance(item, int | float):
            out.append(json.dumps(item))
        else:
            raise _fail(
                f"condition values are strings, numbers or booleans, got {json.dumps(item)[:60]}",
                where,
                Reason.INVALID_POLICY_CONDITION,
            )
    return tuple(out)


def _parse_conditions(value: Any, where: str) -> tuple[Condition, ...]:
    if not isinstance(value, dict):
        raise _fail("Condition must be an object", where, Reason.INVALID_POLICY_CONDITION)
    out: list[Condition] = []
    for operator, block in value.items():
        here = f"{where}.{operator}"
        qualifier, base, if_exists = _split_operator(operator, here)
        if not isinstance(block, dict) or not block:
            raise _fail(
                "an operator needs an object of condition keys",
                here,
                Reason.INVALID_POLICY_CONDITION,
            )
        for key, values in block.items():
            if not key or ":" not in key:
                raise _fail(
                    f"invalid condition key {key!r} (service:name)",
                    here,
                    Reason.INVALID_POLICY_CONDITION,
                )
            _check_text(key, here)
            parsed = _condition_values(values, f"{here}.{key}")
            if base in ("Null", "Bool") and any(v.lower() not in ("true", "false") for v in parsed):
                raise _fail(
                    f"{base} takes true or false, got {list(parsed)}",
                    f"{here}.{key}",
                    Reason.INVALID_POLICY_CONDITION,
                )
            out.append(Condition(operator, base, qualifier, if_exists, key, parsed))
    return tuple(out)


def _parse_statement(raw: Any, index: int) -> Statement:
    where = f"Statement[{index}]"
    if not isinstance(raw, dict):
        raise _fail("a statement must be an object", where)
    unknown = sorted(set(raw) - _STATEMENT_KEYS)
    if unknown:
        raise _fail(f"unknown statement element(s) {unknown}", where)
    sid = raw.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise _fail("Sid must be a string", f"{where}.Sid")
    if isinstance(sid, str):
        _check_text(sid, f"{where}.Sid")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise _fail(
            f"Effect must be Allow or Deny, got {json.dumps(effect)[:60]}",
            f"{where}.Effect",
            Reason.UNKNOWN_EFFECT,
        )
    if ("Principal" in raw) == ("NotPrincipal" in raw):
        raise _fail("exactly one of Principal or NotPrincipal is required in a key policy", where)
    not_principal = "NotPrincipal" in raw
    name = "NotPrincipal" if not_principal else "Principal"
    principals = _parse_principal(raw[name], f"{where}.{name}")
    if ("Action" in raw) == ("NotAction" in raw):
        raise _fail("exactly one of Action or NotAction is required", where)
    not_action = "NotAction" in raw
    name = "NotAction" if not_action else "Action"
    actions = _strings(raw[name], f"{where}.{name}")
    for action in actions:
        if not _ACTION_RE.match(action):
            raise _fail(
                f"invalid action {action!r} (a key policy takes kms:... actions)",
                f"{where}.{name}",
            )
    if "NotResource" in raw:
        raise _fail(
            "NotResource is not evaluated by nitroguard",
            f"{where}.NotResource",
            Reason.UNSUPPORTED_POLICY_ELEMENT,
        )
    if "Resource" not in raw:
        raise _fail("Resource is required in a key policy", where)
    resources = _strings(raw["Resource"], f"{where}.Resource")
    for resource in resources:
        if resource != "*" and not resource.startswith("arn:aws"):
            raise _fail(f"invalid resource {resource!r}", f"{where}.Resource")
    conditions = (
        _parse_conditions(raw["Condition"], f"{where}.Condition") if "Condition" in raw else ()
    )
    return Statement(
        index, sid, effect, principals, not_principal, actions, not_action, resources, conditions
    )


def parse_policy(text: str | bytes) -> KeyPolicy:
    """Parse a KMS key policy strictly (also ``aws kms get-key-policy`` output).

    Raises:
        KmsPolicyError: with `malformed_policy_json` (not JSON, duplicate keys, NaN),
            `too_large`, `too_deep`, `unknown_effect`, `invalid_policy_condition` (a
            condition block KMS would refuse), `unsupported_policy_element` (valid for
            KMS but not evaluated here) or `invalid_key_policy` (anything else).
    """
    document = _load_json(text)
    if isinstance(document, dict) and "Statement" not in document and "Policy" in document:
        inner = document["Policy"]
        if not isinstance(inner, str):
            raise _fail("get-key-policy output: Policy must be a string", "Policy")
        document = _load_json(inner)
        if len(inner) > MAX_POLICY_SIZE:
            raise KmsPolicyError(
                f"policy larger than {MAX_POLICY_SIZE} characters", Reason.TOO_LARGE, where="$"
            )
    elif isinstance(text, str) and len(text) > MAX_POLICY_SIZE:
        raise KmsPolicyError(
            f"policy larger than {MAX_POLICY_SIZE} characters", Reason.TOO_LARGE, where="$"
        )
    if not isinstance(document, dict):
        raise _fail("a policy must be a JSON object", "$")
    unknown = sorted(set(document) - {"Version", "Id", "Statement"})
    if unknown:
        raise _fail(f"unknown policy element(s) {unknown}", "$")
    version = document.get("Version")
    if version is not None and version not in _VERSIONS:
        raise _fail(f"Version must be one of {list(_VERSIONS)}, got {version!r}", "Version")
    policy_id = document.get("Id")
    if policy_id is not None and not isinstance(policy_id, str):
        raise _fail("Id must be a string", "Id")
    if "Statement" not in document:
        raise _fail("Statement is required", "$")
    raw = document["Statement"]
    raw_list = raw if isinstance(raw, list) else [raw]
    if not raw_list:
        raise _fail("Statement must not be empty", "Statement")
    statements = tuple(_parse_statement(item, i) for i, item in enumerate(raw_list))
    sids = [s.sid for s in statements if s.sid]
    if len(sids) != len(set(sids)):
        raise _fail("duplicate Sid", "Statement")
    return KeyPolicy(version, policy_id, statements, document)


# --- evaluation ------------------------------------------------------------------------------


def _value_matches(base: str, policy_value: str, actual: str) -> bool:
    if base in ("StringEquals", "StringNotEquals"):
        return policy_value == actual
    if base in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return policy_value.casefold() == actual.casefold()
    if base in ("StringLike", "StringNotLike") or base.startswith("Arn"):
        # IAM's ArnEquals and ArnLike both take wildcards.
        return bool(_wildcard(policy_value, ignore_case=False).match(actual))
    # Bool
    return policy_value.lower() == actual.lower()


def _single(base: str, values: tuple[str, ...], actual: str, negated: bool) -> bool:
    hit = any(_value_matches(base, v, actual) for v in values)
    return not hit if negated else hit


def condition_holds(condition: Condition, conditions: Mapping[str, str | tuple[str, ...]]) -> bool:
    """Whether one condition holds for a request's condition keys (lower-cased keys).

    `conditions` must map lower-case keys to values (`evaluate` prepares it).
    """
    raw = conditions.get(condition.key_lower)
    if condition.base == "Null":
        is_absent = raw is None or raw == ()
        return any((v.lower() == "true") == is_absent for v in condition.values)
    actual: tuple[str, ...] = () if raw is None else (raw,) if isinstance(raw, str) else raw
    negated = condition.negated
    if condition.qualifier == "ForAllValues":
        if not actual:
            return True
        return all(_single(condition.base, condition.values, a, negated) for a in actual)
    if condition.qualifier == "ForAnyValue":
        if not actual:
            return condition.if_exists
        return any(_single(condition.base, condition.values, a, negated) for a in actual)
    if not actual:
        return condition.if_exists or negated
    if negated:
        return all(_single(condition.base, condition.values, a, True) for a in actual)
    return any(_single(condition.base, condition.values, a, False) for a in actual)


def _normalized(request: RequestContext) -> dict[str, str | tuple[str, ...]]:
    conditions: dict[str, str | tuple[str, ...]] = {}
    for key, value in request.conditions.items():
        conditions[key.lower()] = value if isinstance(value, str) else tuple(value)
    conditions.setdefault("aws:principalarn", request.principal)
    account = _account_of(request.principal)
    if account is not None:
        conditions.setdefault("kms:calleraccount", account)
    return conditions


def statement_applies(
    statement: Statement, request: RequestContext, conditions: Mapping[str, Any] | None = None
) -> bool:
    """Whether `statement` matches `request` (principal, action, resource and conditions)."""
    if not statement.matches_principal(request.principal):
        return False
    if not statement.matches_action(request.action):
        return False
    prepared = _normalized(request) if conditions is None else conditions
    return all(condition_holds(c, prepared) for c in statement.conditions)


def evaluate(policy: KeyPolicy, request: RequestContext) -> Decision:
    """Decide a request as KMS does: an explicit Deny wins, otherwise any matching Allow
    allows, otherwise the request is denied by default."""
    conditions = _normalized(request)
    allowed_by: str | None = None
    for statement in policy.statements:
        if not statement_applies(statement, request, conditions):
            continue
        if statement.effect == "Deny":
            return Decision(False, statement.label, True)
        if allowed_by is None:
            allowed_by = statement.label
    return Decision(allowed_by is not None, allowed_by, False)
