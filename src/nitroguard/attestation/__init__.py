"""Verify AWS Nitro Enclaves attestation documents, strictly, against a pinned root.

Relying-party quickstart::

    import secrets
    from nitroguard.attestation import Verifier, policy

    nonce = secrets.token_bytes(32)            # send it to the enclave
    verifier = Verifier()                      # pinned AWS Nitro Enclaves Root-G1
    doc = verifier.verify(
        data,                                  # the COSE_Sign1 bytes the enclave returned
        policy.AllOf([
            policy.PCRs({0: expected_pcr0, 1: expected_pcr1, 2: expected_pcr2}),
            policy.Nonce(nonce),
            policy.MaxAge(300),
        ]),
    )
    doc.public_key                             # now bound to that enclave image

Failures raise `nitroguard.errors.VerificationError` (or its subclass `PolicyError`)
with a stable `reason` and ``details["step"]``. See `STEPS` for
the numbered steps and `step_label` to name the step an error came from.

Layout: `_document` (parse), `_verifier` (the numbered pipeline), `_roots` (pinned
roots), `_policy` (policies). `policy` is a public, logic-free namespace module over
`_policy`, so both ``from nitroguard.attestation import policy`` and
``from nitroguard.attestation.policy import Policy`` work. This file only re-exports.
"""

from nitroguard.attestation import policy
from nitroguard.attestation._document import MAX_DOCUMENT_SIZE, AttestationDocument
from nitroguard.attestation._policy import Policy
from nitroguard.attestation._roots import (
    AWS_ROOT_G1_SHA256,
    aws_root,
    fingerprint,
    load_pem_roots,
)
from nitroguard.attestation._verifier import (
    STEPS,
    VerifiedDocument,
    Verifier,
    step_label,
    verify,
)

__all__ = [
    "AWS_ROOT_G1_SHA256",
    "MAX_DOCUMENT_SIZE",
    "STEPS",
    "AttestationDocument",
    "Policy",
    "VerifiedDocument",
    "Verifier",
    "aws_root",
    "fingerprint",
    "load_pem_roots",
    "policy",
    "step_label",
    "verify",
]
