"""nitroguard.kms: attested secrets from AWS KMS.

- `Recipient`: the enclave's RSA-2048 key, made once per boot after the RNG checks,
  attested by the NSM; it gives boto3's ``Recipient`` parameter and opens replies.
- `KmsClient` (extra ``nitroguard[kms]``): Decrypt, GenerateDataKey(Pair),
  GenerateRandom with the Recipient always sent, the key pinned, plaintext replies
  refused and an encryption context required.
- `open_envelope` / `seal_envelope`: KMS's ``CiphertextForRecipient`` envelope
  (strict parser in `nitroguard.hazmat.cms`).
- `parse_policy` / `evaluate`: KMS key policies, parsed strictly and evaluated as KMS
  does (`KeyPolicy`, `RequestContext`, `Decision`); the fake KMS and the linter share them.

See ``docs/kms.md``. The fake KMS for tests is `nitroguard.testing.FakeKms`.
"""

from nitroguard.hazmat.cms import Envelope, parse_envelope
from nitroguard.kms._app import CredentialsBox, fetch_secrets
from nitroguard.kms._client import Credentials, DataKey, DataKeyPair, KmsClient
from nitroguard.kms._envelope import (
    KEY_ENCRYPTION_ALGORITHM,
    Recipient,
    key_identifier,
    open_envelope,
    seal_envelope,
)
from nitroguard.kms._policy import Decision, KeyPolicy, RequestContext, evaluate, parse_policy

__all__ = [
    "KEY_ENCRYPTION_ALGORITHM",
    "Credentials",
    "CredentialsBox",
    "DataKey",
    "DataKeyPair",
    "Decision",
    "Envelope",
    "KeyPolicy",
    "KmsClient",
    "Recipient",
    "RequestContext",
    "evaluate",
    "fetch_secrets",
    "key_identifier",
    "open_envelope",
    "parse_envelope",
    "parse_policy",
    "seal_envelope",
]
