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
with a stable `reason` and ``details["step"]``. See `nitroguard.attestation.verifier`
for the numbered steps.
"""

from nitroguard.attestation import policy
from nitroguard.attestation.document import AttestationDocument
from nitroguard.attestation.roots import AWS_ROOT_G1_SHA256, aws_root
from nitroguard.attestation.verifier import STEPS, VerifiedDocument, Verifier, verify

__all__ = [
    "AWS_ROOT_G1_SHA256",
    "STEPS",
    "AttestationDocument",
    "VerifiedDocument",
    "Verifier",
    "aws_root",
    "policy",
    "verify",
]
