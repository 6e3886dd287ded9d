"""Key-policy parser and evaluator (`nitroguard.kms.parse_policy` / `evaluate`)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nitroguard.errors import Error, KmsPolicyError, Reason
from nitroguard.kms import Decision, KeyPolicy, RequestContext, evaluate, parse_policy

ACCOUNT = "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/enclave"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/parent"
STRANGER = "arn:aws:iam::444455556666:role/enclave"
GOOD = "5f" * 48
IMG = "kms:RecipientAttestation:ImageSha384"


def policy(*statements: dict[str, Any]) -> KeyPolicy:
    return parse_policy(json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))


def allow(condition: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Sid": "Enclave",
        "Effect": "Allow",
        "Principal": {"AWS": ROLE},
        "Action": "kms:Decrypt",
        "Resource": "*",
    }
    if condition is not None:
        statement["Condition"] = condition
    statement.update(extra)
    return statement


def decide(p: KeyPolicy, conditions: dict[str, Any], principal: str = ROLE) -> Decision:
    return evaluate(p, RequestContext(principal, "kms:Decrypt", conditions))


# --- parsing -------------------------------------------------------------------------------


def test_get_key_policy_output_is_unwrapped() -> None:
    inner = json.dumps({"Version": "2012-10-17", "Statement": [allow()]})
    parsed = parse_policy(json.dumps({"Policy": inner, "PolicyName": "default"}).encode())
    assert parsed.statements[0].sid == "Enclave"
    assert parsed.document["Statement"][0]["Effect"] == "Allow"


@pytest.mark.parametrize(
    ("text", "reason", "where"),
    [
        ("{", Reason.MALFORMED_POLICY_JSON, "$"),
        (b"\xff\xfe", Reason.MALFORMED_POLICY_JSON, "$"),
        ('{"Statement": [], "Statement": []}', Reason.MALFORMED_POLICY_JSON, "$"),
        ('{"Version": NaN}', Reason.MALFORMED_POLICY_JSON, "$"),
        ("[" * 5000 + "]" * 5000, Reason.TOO_DEEP, "$"),
        (" " * 70000 + "{}", Reason.TOO_LARGE, "$"),
        ("[]", Reason.INVALID_KEY_POLICY, "$"),
        ('{"Statement": []}', Reason.INVALID_KEY_POLICY, "Statement"),
        ('{"Version": "2020-01-01", "Statement": {}}', Reason.INVALID_KEY_POLICY, "Version"),
        ('{"Statement": {}, "Comment": "x"}', Reason.INVALID_KEY_POLICY, "$"),
        ('{"Policy": 3}', Reason.INVALID_KEY_POLICY, "Policy"),
    ],
)
def test_document_errors(text: str | bytes, reason: Reason, where: str) -> None:
    with pytest.raises(KmsPolicyError) as info:
        parse_policy(text)
    assert info.value.reason is reason
    assert info.value.details["where"] == where


@pytest.mark.parametrize(
    ("change", "reason", "fragment"),
    [
        ({"Effect": "Permit"}, Reason.UNKNOWN_EFFECT, "Effect must be Allow or Deny"),
        ({"Effect": "allow"}, Reason.UNKNOWN_EFFECT, "Effect"),
        ({"Principal": "someone"}, Reason.INVALID_KEY_POLICY, "Principal"),
        ({"Principal": {"IAM": ROLE}}, Reason.INVALID_KEY_POLICY, "unknown principal type"),
        ({"Principal": {"AWS": "bob"}}, Reason.INVALID_KEY_POLICY, "invalid AWS principal"),
        ({"Principal": {"AWS": []}}, Reason.INVALID_KEY_POLICY, "empty list"),
        ({"Action": "s3:GetObject"}, Reason.INVALID_KEY_POLICY, "invalid action"),
        ({"Action": 7}, Reason.INVALID_KEY_POLICY, "non-empty string"),
        ({"NotAction": "kms:Encrypt"}, Reason.INVALID_KEY_POLICY, "exactly one of Action"),
        ({"Resource": "bucket"}, Reason.INVALID_KEY_POLICY, "invalid resource"),
        ({"NotResource": "*"}, Reason.UNSUPPORTED_POLICY_ELEMENT, "NotResource"),
        ({"Sid": 3}, Reason.INVALID_KEY_POLICY, "Sid must be a string"),
        ({"Sid": "\ud800"}, Reason.MALFORMED_POLICY_JSON, "surrogate"),
        ({"Extra": 1}, Reason.INVALID_KEY_POLICY, "unknown statement element"),
        ({"Condition": []}, Reason.INVALID_POLICY_CONDITION, "Condition must be an object"),
        ({"Condition": {"StringEqualz": {IMG: GOOD}}}, Reason.INVALID_POLICY_CONDITION, "unknown"),
        (
            {"Condition": {"ForSomeValues:StringEquals": {IMG: GOOD}}},
            Reason.INVALID_POLICY_CONDITION,
            "qualifier",
        ),
        (
            {"Condition": {"NullIfExists": {IMG: "true"}}},
            Reason.INVALID_POLICY_CONDITION,
            "Null takes",
        ),
        ({"Condition": {"Null": {IMG: "maybe"}}}, Reason.INVALID_POLICY_CONDITION, "true or false"),
        ({"Condition": {"StringEquals": {}}}, Reason.INVALID_POLICY_CONDITION, "needs an object"),
        (
            {"Condition": {"StringEquals": {IMG: []}}},
            Reason.INVALID_POLICY_CONDITION,
            "at least one",
        ),
        (
            {"Condition": {"StringEquals": {IMG: {"a": 1}}}},
            Reason.INVALID_POLICY_CONDITION,
            "values",
        ),
        ({"Condition": {"StringEquals": {"nocolon": "x"}}}, Reason.INVALID_POLICY_CONDITION, "key"),
        (
            {"Condition": {"NumericLessThan": {"kms:X": 1}}},
            Reason.UNSUPPORTED_POLICY_ELEMENT,
            "not evaluated",
        ),
    ],
)
def test_statement_errors(change: dict[str, Any], reason: Reason, fragment: str) -> None:
    statement = allow()
    if "NotAction" in change:
        statement["NotAction"] = change.pop("NotAction")
    statement.update(change)
    with pytest.raises(KmsPolicyError) as info:
        policy(statement)
    assert info.value.reason is reason
    assert fragment in info.value.message
    assert info.value.details["where"].startswith("Statement[0]")


def test_missing_elements_and_duplicate_sids() -> None:
    for missing in ("Principal", "Action", "Resource"):
        statement = allow()
        del statement[missing]
        with pytest.raises(KmsPolicyError, match=missing):
            policy(statement)
    with pytest.raises(KmsPolicyError, match="duplicate Sid"):
        policy(allow(), allow())


# --- evaluation ------------------------------------------------------------------------------


def test_default_deny_and_explicit_deny_wins() -> None:
    p = policy(
        allow(),
        {
            "Sid": "NoParent",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "kms:*",
            "Resource": "*",
            "Condition": {"StringNotEqualsIgnoreCase": {IMG: GOOD}},
        },
    )
    assert decide(p, {}) == Decision(False, "NoParent", True)
    assert decide(p, {IMG.lower(): GOOD.upper()}) == Decision(True, "Enclave", False)
    assert decide(p, {IMG: GOOD}, principal=OTHER_ROLE) == Decision(False, None, False)


def test_principal_forms() -> None:
    root = policy(allow(Principal={"AWS": f"arn:aws:iam::{ACCOUNT}:root"}))
    bare = policy(allow(Principal={"AWS": [ACCOUNT]}))
    anyone = policy(allow(Principal="*"))
    statement = allow(NotPrincipal={"AWS": ROLE})
    del statement["Principal"]
    not_p = policy(statement)
    for p in (root, bare):
        assert decide(p, {}, ROLE).allowed
        assert decide(p, {}, OTHER_ROLE).allowed
        assert not decide(p, {}, STRANGER).allowed
    assert decide(anyone, {}, STRANGER).allowed
    assert not decide(not_p, {}, ROLE).allowed
    assert decide(not_p, {}, STRANGER).allowed
    service = policy(allow(Principal={"Service": "ec2.amazonaws.com"}))
    assert decide(service, {}, "ec2.amazonaws.com").allowed
    assert not decide(service, {}, ROLE).allowed


def test_actions_are_case_insensitive_wildcards() -> None:
    p = policy(allow(Action=["KMS:generatedatakey*", "kms:Decryp?"]))
    for action, expected in [
        ("kms:GenerateDataKey", True),
        ("kms:GenerateDataKeyPairWithoutPlaintext", True),
        ("kms:Decrypt", True),
        ("kms:Encrypt", False),
        ("kms:DecryptX", False),
    ]:
        assert evaluate(p, RequestContext(ROLE, action, {})).allowed is expected
    statement = allow(NotAction="kms:Decrypt")
    del statement["Action"]
    not_action = policy(statement)
    assert evaluate(not_action, RequestContext(ROLE, "kms:Encrypt", {})).allowed
    assert not evaluate(not_action, RequestContext(ROLE, "kms:Decrypt", {})).allowed


@pytest.mark.parametrize(
    ("operator", "value", "request_value", "expected"),
    [
        ("StringEquals", GOOD, GOOD, True),
        ("StringEquals", GOOD, GOOD.upper(), False),
        ("StringEquals", GOOD, None, False),
        ("StringEqualsIgnoreCase", GOOD, GOOD.upper(), True),
        ("StringEqualsIgnoreCase", GOOD, None, False),
        ("StringNotEquals", GOOD, None, True),  # absent key: negated operators hold
        ("StringNotEquals", GOOD, GOOD, False),
        ("StringNotEqualsIgnoreCase", GOOD, GOOD.upper(), False),
        ("StringNotEqualsIgnoreCase", GOOD, "00", True),
        ("StringLike", "5f*", GOOD, True),
        ("StringLike", "5f?", GOOD, False),
        ("StringLike", "*", None, False),
        ("StringNotLike", "5f*", GOOD, False),
        ("StringEqualsIgnoreCaseIfExists", GOOD, None, True),
        ("StringEqualsIgnoreCaseIfExists", GOOD, "00", False),
        ("ForAnyValue:StringEquals", GOOD, None, False),
        ("ForAnyValue:StringEquals", GOOD, (GOOD, "x"), True),
        ("ForAnyValue:StringEqualsIfExists", GOOD, None, True),
        ("ForAllValues:StringEquals", GOOD, None, True),  # empty set: vacuously true
        ("ForAllValues:StringEquals", GOOD, (GOOD, "x"), False),
        ("ForAllValues:StringNotEquals", GOOD, ("x", "y"), True),
        ("ArnLike", "arn:aws:iam::*:role/enclave", ROLE, True),
        ("ArnNotEquals", ROLE, ROLE, False),
        ("Bool", "true", "True", True),
        ("Bool", "false", "true", False),
        ("Null", "true", None, True),
        ("Null", "true", GOOD, False),
        ("Null", "false", GOOD, True),
    ],
)
def test_condition_operators(
    operator: str, value: str, request_value: str | tuple[str, ...] | None, expected: bool
) -> None:
    p = policy(allow({operator: {"kms:Thing": value}}))
    conditions = {} if request_value is None else {"KMS:thing": request_value}
    assert decide(p, conditions).allowed is expected


def test_values_ored_keys_and_operators_anded() -> None:
    p = policy(
        allow(
            {
                "StringEqualsIgnoreCase": {
                    IMG: [GOOD, "aa" * 48],
                    "kms:RecipientAttestation:PCR1": GOOD,
                },
                "StringEquals": {"kms:EncryptionContext:purpose": "vault"},
            }
        )
    )
    full = {
        IMG: "aa" * 48,
        "kms:RecipientAttestation:PCR1": GOOD,
        "kms:EncryptionContext:purpose": "vault",
    }
    assert decide(p, full).allowed
    for key in full:
        assert not decide(p, {k: v for k, v in full.items() if k != key}).allowed


def test_numbers_and_booleans_are_condition_text() -> None:
    p = policy(
        allow(
            {"StringEquals": {"kms:EncryptionContext:n": 3}, "Bool": {"aws:SecureTransport": True}}
        )
    )
    assert decide(p, {"kms:EncryptionContext:n": "3", "aws:SecureTransport": "true"}).allowed


def test_caller_account_and_principal_arn_are_derived() -> None:
    p = policy(
        allow(
            {"StringEquals": {"kms:CallerAccount": ACCOUNT, "aws:PrincipalArn": ROLE}},
            Principal="*",
        )
    )
    assert decide(p, {}).allowed
    assert not decide(p, {}, STRANGER).allowed
    # An explicit value in the request wins over the derived one.
    assert not decide(p, {"kms:CallerAccount": "999999999999"}).allowed


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_parser_raises_only_our_errors(data: bytes | str) -> None:
    with contextlib.suppress(Error):
        parse_policy(data)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "Statement",
                        "Effect",
                        "Principal",
                        "Action",
                        "Resource",
                        "Condition",
                        "AWS",
                        "Sid",
                        "StringEquals",
                        "kms:X",
                    ]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_structured_garbage_raises_only_our_errors(document: Any) -> None:
    try:
        parsed = parse_policy(json.dumps(document))
    except Error:
        return
    evaluate(parsed, RequestContext(ROLE, "kms:Decrypt", {"kms:X": "1"}))
