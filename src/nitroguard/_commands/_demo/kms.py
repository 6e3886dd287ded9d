"""The KMS part of `nitroguard demo`: the vault's master key from a (fake) KMS.

An operator creates a KMS key whose policy lets the enclave role Decrypt only with a
``Recipient`` whose PCR0/1/2 are the vault image's, and encrypts the vault's master key
under it. The vault enclave starts, and its start-up hook fetches the key through the
parent's proxy (TCP standing in for vsock) with an attested ``Recipient``: TLS ends in
the enclave, KMS answers with a ``CiphertextForRecipient`` only the enclave can open.

Then the hostile parent tries three things, each failing for its own reason:

1. it hands the enclave a ciphertext under *another* key (one the role may use without
   attestation): the ``KeyId`` pin stops it (KMS answers ``IncorrectKeyException``);
2. it runs an enclave with other PCRs, or in debug mode, and asks for the secret: the
   key policy denies it (``AccessDeniedException``);
3. it answers in KMS's place, ready to forge an envelope to the public recipient key:
   the TLS check inside the enclave refuses its certificate before a byte of the
   request is sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nitroguard._commands._demo.story import DEMO_PCRS, OTHER_PCRS, Step
from nitroguard._commands._demo.vault import build_vault
from nitroguard.app import AppConfig, EnclaveApp, Mode
from nitroguard.errors import Error, KmsError
from nitroguard.nsm import EmulatedNsm, EmulatorPki
from nitroguard.transport import parse_address
from nitroguard.transport.proxy import Allowlist, ProxyConfig, start_proxy

__all__ = ["run_kms_story"]

ACCOUNT = "111122223333"
ENCLAVE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/vault-enclave"
OPERATOR_ROLE = f"arn:aws:iam::{ACCOUNT}:role/operator"
CONTEXT = {"app": "vault", "purpose": "master-key"}


def _vault_policy() -> str:
    conditions = {f"kms:RecipientAttestation:PCR{i}": DEMO_PCRS[i].hex() for i in (0, 1, 2)}
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "OperatorManages",
                    "Effect": "Allow",
                    "Principal": {"AWS": OPERATOR_ROLE},
                    "Action": ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:Encrypt"],
                    "Resource": "*",
                },
                {
                    "Sid": "OnlyTheVaultImage",
                    "Effect": "Allow",
                    "Principal": {"AWS": ENCLAVE_ROLE},
                    "Action": "kms:Decrypt",
                    "Resource": "*",
                    "Condition": {"StringEqualsIgnoreCase": conditions},
                },
            ],
        }
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KmsError) and "code" in exc.details:
        return f"{exc.details['code']} [{exc.reason.value}]"
    if isinstance(exc, Error):
        return f"{type(exc).__name__} [{exc.reason.value}]: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


async def run_kms_story(
    pki: EmulatorPki, workdir: Path, report: Callable[[Step], None] = lambda step: None
) -> list[Step]:
    """Run the KMS steps; returns them (failed ones included). Needs ``nitroguard[kms]``."""
    quiet = [logging.getLogger(n) for n in ("nitroguard.app", "nitroguard.audit")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        # The development-mode audit is summarised by the main story already.
        logger.setLevel(max(logger.getEffectiveLevel(), logging.ERROR))
    steps: list[Step] = []

    def record(step: Step) -> None:
        steps.append(step)
        report(step)

    try:
        await _run(pki, workdir, record)
    except Exception as exc:  # noqa: BLE001 - reported as a failed step
        record(Step("KMS demo ran to completion", "no unexpected error", _describe(exc)))
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    return steps


@dataclasses.dataclass
class _Kms:
    """What the operator set up: the vault key, its ciphertext, and the parent's swap."""

    pki: EmulatorPki
    workdir: Path
    record: Callable[[Step], None]
    impostor: Any  # the FakeKms the parent runs in KMS's place
    client_args: dict[str, Any]
    master: bytes
    blob: bytes
    swapped: bytes


async def _run(pki: EmulatorPki, workdir: Path, record: Callable[[Step], None]) -> None:
    from nitroguard.kms import Credentials
    from nitroguard.testing import FakeCredential, FakeKms

    creds = [
        FakeCredential("AKIADEMOENCLAVE", os.urandom(20).hex(), ENCLAVE_ROLE),
        FakeCredential("AKIADEMOOPERATOR", os.urandom(20).hex(), OPERATOR_ROLE),
    ]
    kms = FakeKms(workdir / "kms", roots=[pki.root_certificate], credentials=creds)
    impostor = FakeKms(workdir / "impostor", credentials=creds)
    with kms, impostor:
        key_arn, master, blob, swapped = _operator_setup(kms, creds)
        host, port = kms.address
        proxy, counters = await start_proxy(
            ProxyConfig(
                listen=parse_address("tcp://127.0.0.1:0"),
                to=parse_address(f"tcp://{host}:{port}"),
                allow=Allowlist.parse([f"{host}:{port}"]),
            )
        )
        # The enclave connects to its bridge (the proxy here) but checks TLS and signs for
        # kms.<region>.amazonaws.com.
        client_args: dict[str, Any] = {
            "key_id": key_arn,
            "region": kms.region,
            "connect_to": ("127.0.0.1", proxy.address.port),
            "ca_bundle": str(kms.ca_path),
            "credentials": Credentials(creds[0].access_key_id, creds[0].secret_access_key),
        }
        story = _Kms(pki, workdir, record, impostor, client_args, master, blob, swapped)
        try:
            await _vault_fetches_its_key(story, counters)
            await _attacks(story)
        finally:
            await proxy.close()


def _operator_setup(kms: Any, creds: list[Any]) -> tuple[str, bytes, bytes, bytes]:
    """The operator's key, the master key's ciphertext, and a ciphertext under another key."""
    import boto3

    operator = boto3.client("kms", **kms.boto3_kwargs(creds[1]))
    enclave_boto = boto3.client("kms", **kms.boto3_kwargs(creds[0]))
    master = os.urandom(32)
    key = operator.create_key(Policy=_vault_policy(), Description="vault master key")
    key_arn: str = key["KeyMetadata"]["Arn"]
    blob = operator.encrypt(KeyId=key_arn, Plaintext=master, EncryptionContext=CONTEXT)
    # A key with KMS's default policy: the enclave role may use it, no attestation.
    other = operator.create_key(Description="a key the parent can use")["KeyMetadata"]
    swapped = enclave_boto.encrypt(
        KeyId=other["Arn"], Plaintext=b"parent-chosen key".ljust(32), EncryptionContext=CONTEXT
    )
    operator.close()
    enclave_boto.close()
    return key_arn, master, blob["CiphertextBlob"], swapped["CiphertextBlob"]


async def _vault_fetches_its_key(story: _Kms, counters: Any) -> None:
    """(1) The vault fetches its master key at start-up."""
    from nitroguard.kms import fetch_secrets

    step = Step(
        "vault fetches its master key from KMS",
        "through the parent proxy, with an attested Recipient; TLS ends in the "
        "enclave; the key arrives only as a CiphertextForRecipient",
    )
    secrets: dict[str, bytes] = {}
    app: EnclaveApp = build_vault()
    app.on_start(fetch_secrets(secrets, {"master": (story.blob, CONTEXT)}, **story.client_args))
    (story.workdir / "kms-random").touch()
    config = AppConfig(
        mode=Mode.DEVELOPMENT,
        listen=f"unix://{story.workdir}/kms-vault.sock",
        random_device=str(story.workdir / "kms-random"),
    )
    try:
        running = await app.start(config, nsm=EmulatedNsm(story.pki, pcrs=DEMO_PCRS))
        await running.close()
        got = secrets.get("master")
        step.passed = got == story.master
        step.observed = (
            f"master key sha256 {hashlib.sha256(got or b'').hexdigest()[:16]}... "
            f"({'matches' if step.passed else 'DIFFERS'}); proxy moved "
            f"{counters.bytes_up} bytes up, {counters.bytes_down} down"
        )
    except Exception as exc:  # noqa: BLE001 - reported as a failed step
        step.observed = _describe(exc)
    story.record(step)


async def _decrypt_refused(
    story: _Kms, step: Step, client: Any, blob: bytes, *, code: str, released: str
) -> None:
    """Ask KMS (through `client`) to decrypt `blob`: the step passes if KMS answers `code`."""
    try:
        await asyncio.to_thread(client.decrypt, blob, encryption_context=CONTEXT)
        step.observed = released
    except KmsError as exc:
        step.observed = _describe(exc)
        step.passed = exc.details.get("code") == code
    story.record(step)


async def _attacks(story: _Kms) -> None:
    from nitroguard.kms import KmsClient, Recipient

    nsm = EmulatedNsm(story.pki, pcrs=DEMO_PCRS)
    recipient = await asyncio.to_thread(Recipient.generate, nsm, rng_check=lambda: None)
    client = KmsClient(recipient, **story.client_args)
    # (2) Ciphertext under another key.
    step = Step(
        "attack: parent swaps in a ciphertext under another key",
        "refused: the KeyId pin (KMS answers IncorrectKeyException)",
    )
    await _decrypt_refused(
        story,
        step,
        client,
        story.swapped,
        code="IncorrectKeyException",
        released="the swapped ciphertext was decrypted",
    )
    # (3) Other PCRs, and debug mode.
    for label, other_nsm in (
        ("an enclave with other PCRs", EmulatedNsm(story.pki, pcrs=OTHER_PCRS)),
        ("a debug-mode enclave", EmulatedNsm(story.pki, pcrs=DEMO_PCRS, debug_mode=True)),
    ):
        step = Step(
            f"attack: {label} asks KMS for the master key",
            "denied by the key policy (AccessDeniedException)",
        )
        intruder = await asyncio.to_thread(Recipient.generate, other_nsm, rng_check=lambda: None)
        intruding = KmsClient(intruder, **story.client_args)
        await _decrypt_refused(
            story,
            step,
            intruding,
            story.blob,
            code="AccessDeniedException",
            released="the master key was released",
        )
    await _impostor(story, recipient)
    client.close()


async def _impostor(story: _Kms, recipient: Any) -> None:
    """(4) The parent answers in KMS's place."""
    from nitroguard.kms import KmsClient

    step = Step(
        "attack: the parent answers in KMS's place (to forge an envelope)",
        "refused by the TLS check inside the enclave; the impostor sees no request",
    )
    host, port = story.impostor.address
    fake_proxy, _ = await start_proxy(
        ProxyConfig(
            listen=parse_address("tcp://127.0.0.1:0"), to=parse_address(f"tcp://{host}:{port}")
        )
    )
    try:
        hijacked = KmsClient(
            recipient, **{**story.client_args, "connect_to": ("127.0.0.1", fake_proxy.address.port)}
        )
        await asyncio.to_thread(hijacked.decrypt, story.blob, encryption_context=CONTEXT)
        step.observed = "the enclave accepted the impostor's answer"
    except KmsError as exc:
        seen = sum(story.impostor.service.requests.values())
        step.observed = f"{_describe(exc)}; impostor received {seen} requests"
        step.passed = exc.details.get("code") == "SSLError" and seen == 0
    finally:
        await fake_proxy.close()
    story.record(step)
