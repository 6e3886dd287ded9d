"""Key-policy linter (KMS-1..KMS-8) and generator.

Each case is a policy shaped like one in AWS's documentation or in a public enclave
project (written out here in our own words and values), linted, fixed and re-linted.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nitroguard.errors import ConfigError
from nitroguard.findings import Finding, Status
from nitroguard.kms import RequestContext, evaluate, parse_policy
from nitroguard.kms._generate import generate_policy
from nitroguard.kms._lint import USE_ACTIONS, ImagePcrs, lint_policy

ACCOUNT = "111122223333"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/enclave"
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/KeyAdmin"
GOOD = "3c" * 48
NEW = "d4" * 48
ZERO = "0" * 96
IMG = "kms:RecipientAttestation:ImageSha384"
PCR0 = "kms:RecipientAttestation:PCR0"
USE = ["kms:Decrypt", "kms:GenerateDataKey*", "kms:GenerateRandom"]
CONTEXT = {"StringEquals": {"kms:EncryptionContext:purpose": "vault"}}


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Id": "test", "Statement": list(statements)}


def enclave(condition: dict[str, Any], *, sid: str = "EnclaveUse", **extra: Any) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"AWS": ROLE},
        "Action": USE,
        "Resource": "*",
        "Condition": condition,
        **extra,
    }


def pinned(value: str = GOOD) -> dict[str, Any]:
    return {"StringEqualsIgnoreCase": {IMG: value, PCR0: value}, **CONTEXT}


ADMINS = {
    "Sid": "Allow access for Key Administrators",
    "Effect": "Allow",
    "Principal": {"AWS": ADMIN},
    "Action": ["kms:Describe*", "kms:Put*", "kms:Enable*", "kms:Disable*", "kms:Get*"],
    "Resource": "*",
}
IAM_ROOT = {
    "Sid": "Enable IAM User Permissions",
    "Effect": "Allow",
    "Principal": {"AWS": ROOT},
    "Action": "kms:*",
    "Resource": "*",
}
DENY_OTHER_IMAGES = {
    "Sid": "DenyOtherImages",
    "Effect": "Deny",
    "Principal": "*",
    "Action": [*USE, "kms:ReEncrypt*", "kms:DeriveSharedSecret"],
    "Resource": "*",
    "Condition": {"StringNotEqualsIgnoreCase": {IMG: GOOD}},
}
CLEAN = doc(ADMINS, enclave(pinned()))


def by_id(findings: list[Finding]) -> dict[str, Finding]:
    return {f.id: f for f in findings}


def lint(document: dict[str, Any] | str, **kw: Any) -> dict[str, Finding]:
    text = document if isinstance(document, str) else json.dumps(document)
    findings = lint_policy(text, **kw)
    assert [f.id for f in findings] == [f"KMS-{i}" for i in range(1, 9)]
    return by_id(findings)


def worst(findings: dict[str, Finding]) -> set[str]:
    return {f.id for f in findings.values() if f.status in (Status.FAIL, Status.WARN)}


def test_clean_policy_has_nothing_above_pass() -> None:
    assert worst(lint(CLEAN)) == set()


# KMS-1: AWS's default key policy ("Enable IAM User Permissions": kms:* for the root)
# next to an attested enclave statement, as in the Nitro Enclaves getting-started guide.
def test_kms1_default_root_statement_then_fixed() -> None:
    findings = lint(doc(IAM_ROOT, enclave(pinned())))
    kms1 = findings["KMS-1"]
    assert kms1.status is Status.FAIL
    assert "statement Enable IAM User Permissions has no kms:RecipientAttestation" in kms1.evidence
    assert "a request without Recipient may call kms:Decrypt" in kms1.evidence
    assert findings["KMS-4"].status is Status.FAIL  # root may also PutKeyPolicy
    # Fix 1: administrators manage, they do not use.
    assert worst(lint(doc(ADMINS, enclave(pinned())))) == set()
    # Fix 2: keep the root statement, but a Deny closes the hole (KMS-1 clears).
    fixed = lint(doc(IAM_ROOT, enclave(pinned()), DENY_OTHER_IMAGES))
    assert fixed["KMS-1"].status is Status.PASS
    assert "closed by Deny DenyOtherImages" in fixed["KMS-1"].evidence
    # ... though root may still rewrite the policy.
    assert fixed["KMS-4"].status is Status.FAIL


def test_kms1_a_weak_deny_does_not_clear() -> None:
    weak = copy.deepcopy(DENY_OTHER_IMAGES)
    weak["Condition"] = {"StringNotEqualsIgnoreCaseIfExists": {IMG: GOOD}}
    assert lint(doc(IAM_ROOT, enclave(pinned()), weak))["KMS-1"].status is Status.PASS
    # A Deny that an attacker-chosen encryption context dodges does not clear it.
    dodgeable = copy.deepcopy(DENY_OTHER_IMAGES)
    dodgeable["Condition"] = {
        "StringNotEqualsIgnoreCase": {IMG: GOOD},
        "StringEquals": {"kms:EncryptionContext:tier": "prod"},
    }
    kms1 = lint(doc(IAM_ROOT, enclave(pinned()), dodgeable))["KMS-1"]
    assert kms1.status is Status.FAIL


def test_kms1_pinning_only_the_kernel_is_no_pin() -> None:
    only_pcr1 = {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR1": GOOD}, **CONTEXT}
    kms1 = lint(doc(ADMINS, enclave(only_pcr1)))["KMS-1"]
    assert kms1.status is Status.FAIL
    assert "pins nothing that identifies the image" in kms1.evidence
    assert "a document from another image" in kms1.evidence


def test_kms1_reencrypt_grant() -> None:
    reencrypt = {
        "Sid": "AllowReEncrypt",
        "Effect": "Allow",
        "Principal": {"AWS": ROLE},
        "Action": "kms:ReEncrypt*",
        "Resource": "*",
    }
    kms1 = lint(doc(ADMINS, enclave(pinned()), reencrypt))["KMS-1"]
    assert kms1.status is Status.FAIL
    assert "kms:ReEncryptFrom" in kms1.evidence


# KMS-2: soft operators, as in the enclave SDK's issue threads (StringLike with a
# wildcard, IfExists) and in policies that try ForAnyValue.
@pytest.mark.parametrize(
    ("condition", "bypass"),
    [
        ({"StringLike": {IMG: "3c3c*"}}, False),
        ({"StringLike": {IMG: "*"}}, True),
        ({"StringEqualsIgnoreCaseIfExists": {IMG: GOOD}}, True),
        ({"StringNotEquals": {IMG: ZERO}}, True),
        ({"ForAllValues:StringEqualsIgnoreCase": {IMG: GOOD}}, True),
        ({"ForAnyValue:StringEqualsIgnoreCase": {IMG: GOOD}}, False),
    ],
)
def test_kms2_soft_operators_then_fixed(condition: dict[str, Any], bypass: bool) -> None:
    findings = lint(doc(ADMINS, enclave({**condition, **CONTEXT})))
    kms2 = findings["KMS-2"]
    assert kms2.status is Status.FAIL
    operator = next(iter(condition))
    assert f'"{operator}"' in kms2.evidence
    assert "statement EnclaveUse" in kms2.evidence
    assert (" may call kms:" in kms2.evidence) is bypass
    # Fixed: the exact operator.
    assert lint(CLEAN)["KMS-2"].status is Status.PASS
    # Or closed by a correct Deny.
    closed = lint(doc(ADMINS, enclave({**condition, **CONTEXT}), DENY_OTHER_IMAGES))
    assert closed["KMS-2"].status is Status.PASS
    assert "closed by Deny DenyOtherImages" in closed["KMS-2"].evidence


# KMS-3: the all-zero PCR0 copied from a debug-mode run, and a truncated value.
@pytest.mark.parametrize(("value", "why"), [(ZERO, "all zeros"), (GOOD[:64], "not 96 hex")])
def test_kms3_zero_or_short_values_then_fixed(value: str, why: str) -> None:
    kms3 = lint(doc(ADMINS, enclave(pinned(value))))["KMS-3"]
    assert kms3.status is Status.FAIL
    assert why in kms3.evidence
    assert "statement EnclaveUse" in kms3.evidence
    assert lint(CLEAN)["KMS-3"].status is Status.PASS
    assert lint(doc(ADMINS))["KMS-3"].status is Status.SKIP


# KMS-4: the enclave role may also create grants (grants bypass key-policy conditions).
def test_kms4_user_may_create_grants_then_fixed() -> None:
    grants = {
        "Sid": "AllowGrants",
        "Effect": "Allow",
        "Principal": {"AWS": ROLE},
        "Action": ["kms:CreateGrant", "kms:ListGrants"],
        "Resource": "*",
        "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
    }
    kms4 = lint(doc(ADMINS, enclave(pinned()), grants))["KMS-4"]
    assert kms4.status is Status.FAIL
    assert f"{ROLE} may use the key" in kms4.evidence
    assert "kms:CreateGrant (statement AllowGrants)" in kms4.evidence
    deny = {
        "Sid": "NoGrants",
        "Effect": "Deny",
        "Principal": {"AWS": ROLE},
        "Action": "kms:CreateGrant",
        "Resource": "*",
    }
    assert lint(doc(ADMINS, enclave(pinned()), grants, deny))["KMS-4"].status is Status.PASS


# KMS-5: a rolling upgrade (old and new image) left in place.
def test_kms5_several_values_then_fixed() -> None:
    both = {"StringEqualsIgnoreCase": {IMG: [GOOD, NEW], PCR0: [GOOD, NEW]}, **CONTEXT}
    findings = lint(doc(ADMINS, enclave(both)))
    assert worst(findings) == {"KMS-5"}
    assert findings["KMS-5"].status is Status.WARN
    assert "allows 2 values" in findings["KMS-5"].evidence
    assert worst(lint(CLEAN)) == set()


# KMS-6: the AWS documentation example pins PCR0 but binds no encryption context.
def test_kms6_no_encryption_context_then_fixed() -> None:
    findings = lint(doc(ADMINS, enclave({"StringEqualsIgnoreCase": {IMG: GOOD, PCR0: GOOD}})))
    assert worst(findings) == {"KMS-6"}
    assert "statement(s) EnclaveUse" in findings["KMS-6"].evidence
    assert lint(CLEAN)["KMS-6"].status is Status.PASS


# KMS-7: the policy pins an image that is not the one deployed.
def test_kms7_images(eif_vectors_dir: Path) -> None:
    from nitroguard.eif import measure

    path = eif_vectors_dir / "v4-signed-es384-2ramdisks.eif"
    pcrs = {int(k[3:]): v for k, v in measure(path).as_hex().items()}
    image = ImagePcrs(str(path), pcrs)
    kms7 = lint(CLEAN, images=[image])["KMS-7"]
    assert kms7.status is Status.FAIL
    assert "none of" in kms7.evidence
    assert lint(CLEAN)["KMS-7"].status is Status.SKIP
    fixed = doc(ADMINS, enclave(pinned(pcrs[0])))
    assert lint(fixed, images=[image])["KMS-7"].status is Status.PASS
    other = ImagePcrs("other.eif", {0: NEW, 1: NEW, 2: NEW})
    both = lint(fixed, images=[image, other])["KMS-7"]
    assert both.status is Status.PASS
    assert "not allowed: other.eif" in both.evidence
    assert lint(doc(IAM_ROOT), images=[image])["KMS-7"].status is Status.FAIL


# KMS-8: what KMS would refuse.
@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"Version": "2012-10-17", "Statement": [', "malformed_policy_json"),
        (json.dumps(doc({**ADMINS, "Effect": "Permit"})), "unknown_effect"),
        (
            json.dumps(doc(enclave({"StringEqualsIgnoreCaseIfExist": {IMG: GOOD}}))),
            "invalid_policy_condition",
        ),
    ],
)
def test_kms8_invalid_then_fixed(text: str, reason: str) -> None:
    findings = lint(text)
    assert findings["KMS-8"].status is Status.FAIL
    assert reason in findings["KMS-8"].evidence
    assert all(findings[f"KMS-{i}"].status is Status.SKIP for i in range(1, 8))
    assert lint(CLEAN)["KMS-8"].status is Status.PASS


def test_get_key_policy_output_and_extra_principal() -> None:
    wrapped = json.dumps({"Policy": json.dumps(doc(IAM_ROOT)), "PolicyName": "default"})
    assert lint(wrapped)["KMS-1"].status is Status.FAIL
    # A principal only named on the command line is still probed.
    anyone = doc({**IAM_ROOT, "Principal": "*", "Action": "kms:Decrypt"})
    kms1 = lint(anyone, principals=["arn:aws:iam::999988887777:role/x"])["KMS-1"]
    assert "arn:aws:iam::999988887777:role/x" in kms1.evidence or "anyone" in kms1.evidence


# --- generator -------------------------------------------------------------------------------


def _images(eif_vectors_dir: Path, *names: str) -> list[ImagePcrs]:
    from nitroguard.eif import measure

    out = []
    for name in names:
        path = eif_vectors_dir / name
        out.append(ImagePcrs(name, {int(k[3:]): v for k, v in measure(path).as_hex().items()}))
    return out


def test_generated_policy_passes_its_own_linter(eif_vectors_dir: Path) -> None:
    images = _images(eif_vectors_dir, "v4-signed-es384-2ramdisks.eif")
    policy = generate_policy(
        images, principal=ROLE, account=ACCOUNT, encryption_context={"purpose": "vault"}
    )
    condition = policy["Statement"][1]["Condition"]
    assert set(condition["StringEqualsIgnoreCase"]) == {
        IMG,
        PCR0,
        "kms:RecipientAttestation:PCR1",
        "kms:RecipientAttestation:PCR2",
        "kms:RecipientAttestation:PCR8",
    }
    assert condition["StringEqualsIgnoreCase"][IMG] == images[0].pcrs[0]
    assert condition["StringEquals"] == {"kms:EncryptionContext:purpose": "vault"}
    findings = lint(policy, principals=[ROLE], images=images)
    assert worst(findings) == set()
    assert {f.status for f in findings.values()} == {Status.PASS}
    # Without an encryption context only KMS-6 warns.
    bare = generate_policy(images, principal=ROLE, account=ACCOUNT)
    assert worst(lint(bare, principals=[ROLE], images=images)) == {"KMS-6"}


def test_generated_rolling_upgrade(eif_vectors_dir: Path) -> None:
    images = _images(eif_vectors_dir, "v1-unsigned-2ramdisks.eif", "v2-unsigned-1ramdisk.eif")
    policy = generate_policy(
        images, principal=ROLE, account=ACCOUNT, encryption_context={"purpose": "vault"}
    )
    assert "RollingUpgrade" in policy["Statement"][1]["Sid"]
    assert "rolling-upgrade-2-images" in policy["Id"]
    values = policy["Statement"][1]["Condition"]["StringEqualsIgnoreCase"][IMG]
    assert values == [images[0].pcrs[0], images[1].pcrs[0]]
    assert (
        "kms:RecipientAttestation:PCR8"
        not in policy["Statement"][1]["Condition"]["StringEqualsIgnoreCase"]
    )
    findings = lint(policy, principals=[ROLE], images=images)
    assert worst(findings) == {"KMS-5"}
    assert "not allowed" not in findings["KMS-7"].evidence


def test_generated_policy_in_the_evaluator(eif_vectors_dir: Path) -> None:
    images = _images(eif_vectors_dir, "v4-signed-es384-2ramdisks.eif")
    policy = parse_policy(
        json.dumps(generate_policy(images, principal=ROLE, account=ACCOUNT, pcrs=[0]))
    )
    good = images[0].conditions()
    assert evaluate(policy, RequestContext(ROLE, "kms:Decrypt", good)).allowed
    assert evaluate(policy, RequestContext(ROLE, "kms:DeriveSharedSecret", good)).allowed
    assert not evaluate(policy, RequestContext(ROLE, "kms:Decrypt", {})).allowed
    denied = evaluate(policy, RequestContext(ROLE, "kms:PutKeyPolicy", {}))
    assert denied.explicit_deny
    assert evaluate(policy, RequestContext(ROOT, "kms:PutKeyPolicy", {})).allowed
    assert not evaluate(policy, RequestContext(ROOT, "kms:Decrypt", good)).allowed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"account": "12"}, "12 digits"),
        ({"principal": ROOT}, "IAM role ARN"),
        ({"principal": "arn:aws:iam::999999999999:role/x"}, "not in account"),
        ({"pcrs": [8]}, "unsigned image"),
        ({"pcrs": [40]}, "out of range"),
        ({"encryption_context": {"": "x"}}, "encryption context"),
        ({"admins": [ROLE]}, "cannot also be an administrator"),
        ({"admins": ["bob"]}, "administrator must be"),
    ],
)
def test_generator_refuses(eif_vectors_dir: Path, kwargs: dict[str, Any], message: str) -> None:
    images = _images(eif_vectors_dir, "v1-unsigned-2ramdisks.eif")
    args: dict[str, Any] = {"principal": ROLE, "account": ACCOUNT, **kwargs}
    with pytest.raises(ConfigError, match=message):
        generate_policy(images, **args)
    with pytest.raises(ConfigError, match="at least one image"):
        generate_policy([], principal=ROLE, account=ACCOUNT)


# --- the linter and the evaluator agree ------------------------------------------------------

_PRINCIPALS = [
    ROLE,
    ROOT,
    f"arn:aws:iam::{ACCOUNT}:role/parent",
    "arn:aws:iam::444455556666:role/x",
]
_OPERATORS = [
    "StringEquals",
    "StringEqualsIgnoreCase",
    "StringLike",
    "StringNotEquals",
    "StringNotEqualsIgnoreCase",
    "StringEqualsIgnoreCaseIfExists",
    "StringNotEqualsIgnoreCaseIfExists",
    "ForAnyValue:StringEqualsIgnoreCase",
    "ForAllValues:StringEqualsIgnoreCase",
]
_KEYS = [
    IMG,
    PCR0,
    "kms:RecipientAttestation:PCR1",
    "kms:RecipientAttestation:PCR2",
    "kms:RecipientAttestation:PCR3",
    "kms:EncryptionContext:purpose",
]
_VALUES = [GOOD, GOOD.upper(), ZERO, "3c*", "*", "vault"]

statements = st.fixed_dictionaries(
    {
        "Effect": st.sampled_from(["Allow", "Deny"]),
        "Principal": st.sampled_from(["*", {"AWS": ROLE}, {"AWS": ROOT}, {"AWS": [ROLE, ACCOUNT]}]),
        "Action": st.sampled_from(
            [
                "kms:*",
                "kms:Decrypt",
                "kms:GenerateDataKey*",
                "kms:ReEncrypt*",
                ["kms:Decrypt", "kms:PutKeyPolicy"],
            ]
        ),
        "Resource": st.just("*"),
        "Condition": st.dictionaries(
            st.sampled_from(_OPERATORS),
            st.dictionaries(
                st.sampled_from(_KEYS),
                st.lists(st.sampled_from(_VALUES), min_size=1, max_size=2),
                min_size=1,
                max_size=2,
            ),
            max_size=2,
        ),
    }
)
attacks = st.fixed_dictionaries(
    {
        "principal": st.sampled_from(_PRINCIPALS),
        "action": st.sampled_from(USE_ACTIONS),
        "pcr1": st.sampled_from([None, GOOD, "ab" * 48]),
        "pcr3": st.sampled_from([None, GOOD, "ab" * 48]),
        "purpose": st.sampled_from([None, "vault", "other", "3c"]),
        "other_image": st.booleans(),
    }
)


def _attack(spec: dict[str, Any]) -> RequestContext:
    conditions: dict[str, str] = {}
    if spec["other_image"]:
        other = "ef" * 48
        conditions = {IMG: other, PCR0: other, "kms:RecipientAttestation:PCR2": other}
        conditions["kms:RecipientAttestation:PCR8"] = other
        for index in (1, 3):
            if spec[f"pcr{index}"] is not None:
                conditions[f"kms:RecipientAttestation:PCR{index}"] = spec[f"pcr{index}"]
    if spec["purpose"] is not None:
        conditions["kms:EncryptionContext:purpose"] = spec["purpose"]
    return RequestContext(spec["principal"], spec["action"], conditions)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(statements, min_size=1, max_size=3), st.lists(attacks, min_size=1, max_size=8))
def test_linter_and_evaluator_agree(raw: list[dict[str, Any]], specs: list[dict[str, Any]]) -> None:
    """When the linter finds no bypass (KMS-1 and KMS-2 pass), no request without
    Recipient or from another image is allowed by the evaluator; and when the evaluator
    allows such a request, the linter reports KMS-1 or KMS-2."""
    for i, statement in enumerate(raw):
        statement["Sid"] = f"S{i}"
        if not statement["Condition"]:
            del statement["Condition"]
    text = json.dumps(doc(*raw))
    findings = by_id(lint_policy(text, principals=_PRINCIPALS))
    policy = parse_policy(text)
    clean = findings["KMS-1"].status is Status.PASS and findings["KMS-2"].status is Status.PASS
    for spec in specs:
        request = _attack(spec)
        decision = evaluate(policy, request)
        if decision.allowed:
            assert not clean, (request, decision, findings["KMS-1"], findings["KMS-2"])
