"""The linter and the fake KMS agree, through real boto3 over real HTTPS.

A policy the linter fails (KMS-1) lets the fake KMS decrypt without ``Recipient``; once
fixed, the linter passes it and the fake refuses the same request.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nitroguard.findings import Status
from nitroguard.kms._lint import lint_policy

ACCOUNT = "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/enclave"
PIN = "ab" * 48
CTX = {"app": "vault"}


def _policy(root_may_use: bool, deny: bool = False) -> str:
    statements: list[dict[str, Any]] = [
        {
            "Sid": "Enable IAM User Permissions" if root_may_use else "Manage",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "kms:*" if root_may_use else ["kms:Encrypt", "kms:PutKeyPolicy"],
            "Resource": "*",
        },
        {
            "Sid": "Enclave",
            "Effect": "Allow",
            "Principal": {"AWS": ROLE},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Resource": "*",
            "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": PIN}},
        },
    ]
    if deny:
        statements.append(
            {
                "Sid": "OnlyTheImage",
                "Effect": "Deny",
                "Principal": "*",
                "Action": [
                    "kms:Decrypt",
                    "kms:GenerateDataKey*",
                    "kms:ReEncrypt*",
                    "kms:GenerateRandom",
                    "kms:DeriveSharedSecret",
                ],
                "Resource": "*",
                "Condition": {
                    "StringNotEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": PIN}
                },
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


@pytest.mark.parametrize(
    ("policy", "lint_ok"),
    [
        (_policy(root_may_use=True), False),
        (_policy(root_may_use=False), True),
        (_policy(root_may_use=True, deny=True), True),
    ],
)
def test_lint_verdict_matches_the_fake(boto: Any, policy: str, lint_ok: bool) -> None:
    kms1 = {f.id: f for f in lint_policy(policy, principals=[ROLE])}["KMS-1"]
    assert (kms1.status is Status.PASS) is lint_ok
    key = boto.create_key(Policy=policy)["KeyMetadata"]["KeyId"]
    blob = boto.encrypt(KeyId=key, Plaintext=b"secret", EncryptionContext=CTX)["CiphertextBlob"]
    if lint_ok:
        with pytest.raises(ClientError) as info:
            boto.decrypt(KeyId=key, CiphertextBlob=blob, EncryptionContext=CTX)
        assert info.value.response["Error"]["Code"] == "AccessDeniedException"
    else:
        reply = boto.decrypt(KeyId=key, CiphertextBlob=blob, EncryptionContext=CTX)
        assert reply["Plaintext"] == b"secret"
