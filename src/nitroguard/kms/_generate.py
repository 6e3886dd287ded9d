"""Write a KMS key policy that pins an enclave image, from measurements nitroguard took.

The policy (``docs/kms.md``, "Key policies"):

- ``KeyAdministration``: the administrators (default: the account root, which delegates to
  IAM) manage the key but cannot use it, create grants or replicate it;
- ``EnclaveDecrypt`` / ``EnclaveGenerateRandom``: the enclave role may call
  ``Decrypt``, ``GenerateDataKey*``, ``GenerateRandom`` and ``DeriveSharedSecret`` only
  with ``StringEqualsIgnoreCase`` on ``kms:RecipientAttestation:ImageSha384`` and the
  chosen PCRs (and, when asked, ``StringEquals`` on ``kms:EncryptionContext:<key>`` for
  the operations that take a context);
- ``EnclaveRoleCannotChangeAccess``: a Deny so that the enclave role, which the account
  root statement also covers, can never rewrite the policy or hand out grants.

With several images (a rolling upgrade) each condition lists every image's value, and
the Sid says so: remove the old image once the deploy is done (KMS-5 warns until then).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from nitroguard.errors import ConfigError
from nitroguard.kms._lint import ImagePcrs

__all__ = ["ADMIN_MANAGE_ACTIONS", "DEFAULT_PCRS", "generate_policy"]

#: PCRs pinned by default (PCR8 is added when every image is signed).
DEFAULT_PCRS = (0, 1, 2)
#: What administrators may do: manage, but not use, grant or replicate.
ADMIN_MANAGE_ACTIONS = (
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListAliases",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:RevokeGrant",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
)
_CONTEXT_USE = ("kms:Decrypt", "kms:GenerateDataKey*")
_OTHER_USE = ("kms:GenerateRandom", "kms:DeriveSharedSecret")
_ACCESS_CHANGES = ("kms:PutKeyPolicy", "kms:CreateGrant", "kms:ReplicateKey")
_ACCOUNT = re.compile(r"^\d{12}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:[!-~]+$")
_CONTEXT_KEY = re.compile(r"^[!-~]{1,128}$")


def generate_policy(
    images: Sequence[ImagePcrs],
    *,
    principal: str,
    account: str,
    pcrs: Sequence[int] | None = None,
    encryption_context: Mapping[str, str] | None = None,
    admins: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A key policy (JSON-ready) that lets only the given images use the key.

    Args:
        images: the measured images (one, or several during a rolling upgrade).
        principal: the enclave's IAM role ARN (the parent instance's role).
        account: the 12-digit account that owns the key.
        pcrs: the PCRs to pin besides ImageSha384 (default 0, 1, 2, plus 8 when every
            image is signed).
        encryption_context: key/value pairs every Decrypt/GenerateDataKey* must carry.
        admins: administrator principals (default ``arn:aws:iam::ACCOUNT:root``).

    Raises:
        ConfigError: no image, a bad ARN or account, PCR8 asked for an unsigned image,
            an unknown PCR index or an invalid encryption-context pair.
    """
    admin_list, chosen, context = _checked(
        images, principal, account, pcrs, encryption_context, admins
    )

    attestation: dict[str, list[str] | str] = {}

    def values(index: int) -> list[str] | str:
        found = list(dict.fromkeys(image.pcrs[index].lower() for image in images))
        return found[0] if len(found) == 1 else found

    attestation["kms:RecipientAttestation:ImageSha384"] = values(0)
    for index in chosen:
        attestation[f"kms:RecipientAttestation:PCR{index}"] = values(index)
    rolling = len(images) > 1
    suffix = (
        f"RollingUpgradeAllows{len(images)}ImagesRemoveTheOldOnesAfterTheDeploy" if rolling else ""
    )
    decrypt_condition: dict[str, Any] = {"StringEqualsIgnoreCase": dict(attestation)}
    if context:
        decrypt_condition["StringEquals"] = {
            f"kms:EncryptionContext:{k}": v for k, v in sorted(context.items())
        }
    statements: list[dict[str, Any]] = [
        {
            "Sid": "KeyAdministration",
            "Effect": "Allow",
            "Principal": {"AWS": admin_list[0] if len(admin_list) == 1 else admin_list},
            "Action": list(ADMIN_MANAGE_ACTIONS),
            "Resource": "*",
        },
        {
            "Sid": "EnclaveDecrypt" + suffix,
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": list(_CONTEXT_USE),
            "Resource": "*",
            "Condition": decrypt_condition,
        },
        {
            "Sid": "EnclaveGenerateRandom" + suffix,
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": list(_OTHER_USE),
            "Resource": "*",
            "Condition": {"StringEqualsIgnoreCase": dict(attestation)},
        },
        {
            "Sid": "EnclaveRoleCannotChangeAccess",
            "Effect": "Deny",
            "Principal": {"AWS": principal},
            "Action": list(_ACCESS_CHANGES),
            "Resource": "*",
        },
    ]
    policy_id = "nitroguard-enclave-key"
    if rolling:
        policy_id += f"-rolling-upgrade-{len(images)}-images"
    return {"Version": "2012-10-17", "Id": policy_id, "Statement": statements}


def _checked(  # noqa: PLR0917 - private helper with one caller
    images: Sequence[ImagePcrs],
    principal: str,
    account: str,
    pcrs: Sequence[int] | None,
    encryption_context: Mapping[str, str] | None,
    admins: Sequence[str] | None,
) -> tuple[list[str], list[int], dict[str, str]]:
    """Validate `generate_policy`'s arguments; return (admins, PCR indexes, context)."""
    if not images:
        raise ConfigError("at least one image is needed")
    if not _ACCOUNT.match(account):
        raise ConfigError(f"account must be 12 digits, got {account!r}")
    if not _ROLE_ARN.match(principal) or principal.endswith(":root"):
        raise ConfigError(f"principal must be the enclave's IAM role ARN, got {principal!r}")
    if principal.split(":")[4] != account:
        raise ConfigError(f"principal {principal!r} is not in account {account}")
    admin_list = list(admins) if admins else [f"arn:aws:iam::{account}:root"]
    for admin in admin_list:
        if admin == principal:
            raise ConfigError("the enclave role cannot also be an administrator")
        if not _ROLE_ARN.match(admin):
            raise ConfigError(f"administrator must be an IAM ARN, got {admin!r}")
    signed = all(8 in image.pcrs for image in images)
    if pcrs is None:
        chosen = [*DEFAULT_PCRS, 8] if signed else list(DEFAULT_PCRS)
    else:
        chosen = sorted(set(pcrs))
    for index in chosen:
        if not 0 <= index <= 31:
            raise ConfigError(f"PCR index out of range: {index}")
        missing = [image.name for image in images if index not in image.pcrs]
        if missing:
            why = " (unsigned image)" if index == 8 else ""
            raise ConfigError(f"PCR{index} is not measured for {', '.join(missing)}{why}")
    context = dict(encryption_context or {})
    for key, value in context.items():
        if not _CONTEXT_KEY.match(key) or not value or len(value) > 1024:
            raise ConfigError(f"invalid encryption context pair {key!r}={value!r}")
    return admin_list, chosen, context
