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
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nitroguard.app.demo import DEMO_PCRS, OTHER_PCRS, Step
from nitroguard.app.runtime import AppConfig, EnclaveApp, Mode
from nitroguard.app.vault import build_vault
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


async def _run(pki: EmulatorPki, workdir: Path, record: Callable[[Step], None]) -> None:
    import boto3

    from nitroguard.kms import Credentials, KmsClient, Recipient, fetch_secrets
    from nitroguard.kms._fake import FakeCredential, FakeKms

    creds = [
        FakeCredential("AKIADEMOENCLAVE", os.urandom(20).hex(), ENCLAVE_ROLE),
        FakeCredential("AKIADEMOOPERATOR", os.urandom(20).hex(), OPERATOR_ROLE),
    ]
    enclave_creds = Credentials(creds[0].access_key_id, creds[0].secret_access_key)
    kms = FakeKms(workdir / "kms", roots=[pki.root_certificate], credentials=creds)
    impostor = FakeKms(workdir / "impostor", credentials=creds)
    with kms, impostor:
        operator = boto3.client("kms", **kms.boto3_kwargs(creds[1]))
        enclave_boto = boto3.client("kms", **kms.boto3_kwargs(creds[0]))
        master = os.urandom(32)
        key = operator.create_key(Policy=_vault_policy(), Description="vault master key")
        key_arn = key["KeyMetadata"]["Arn"]
        blob = operator.encrypt(KeyId=key_arn, Plaintext=master, EncryptionContext=CONTEXT)
        # A key with KMS's default policy: the enclave role may use it, no attestation.
        other = operator.create_key(Description="a key the parent can use")["KeyMetadata"]
        swapped = enclave_boto.encrypt(
            KeyId=other["Arn"], Plaintext=b"parent-chosen key".ljust(32), EncryptionContext=CONTEXT
        )
        operator.close()
        enclave_boto.close()
        host, port = kms.address
        upstream = parse_address(f"tcp://{host}:{port}")
        proxy, counters = await start_proxy(
            ProxyConfig(
                listen=parse_address("tcp://127.0.0.1:0"),
                to=upstream,
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
            "credentials": enclave_creds,
        }
        try:
            # (1) The vault fetches its master key at start-up.
            step = Step(
                "vault fetches its master key from KMS",
                "through the parent proxy, with an attested Recipient; TLS ends in the "
                "enclave; the key arrives only as a CiphertextForRecipient",
            )
            secrets: dict[str, bytes] = {}
            app: EnclaveApp = build_vault()
            app.on_start(
                fetch_secrets(secrets, {"master": (blob["CiphertextBlob"], CONTEXT)}, **client_args)
            )
            (workdir / "kms-random").touch()
            config = AppConfig(
                mode=Mode.DEVELOPMENT,
                listen=f"unix://{workdir}/kms-vault.sock",
                random_device=str(workdir / "kms-random"),
            )
            nsm = EmulatedNsm(pki, pcrs=DEMO_PCRS)
            try:
                running = await app.start(config, nsm=nsm)
                await running.close()
                got = secrets.get("master")
                step.passed = got == master
                step.observed = (
                    f"master key sha256 {hashlib.sha256(got or b'').hexdigest()[:16]}... "
                    f"({'matches' if step.passed else 'DIFFERS'}); proxy moved "
                    f"{counters.bytes_up} bytes up, {counters.bytes_down} down"
                )
            except Exception as exc:  # noqa: BLE001 - reported as a failed step
                step.observed = _describe(exc)
            record(step)

            recipient = await asyncio.to_thread(Recipient.generate, nsm, rng_check=lambda: None)
            client = KmsClient(recipient, **client_args)

            # (2) Ciphertext under another key.
            step = Step(
                "attack: parent swaps in a ciphertext under another key",
                "refused: the KeyId pin (KMS answers IncorrectKeyException)",
            )
            try:
                await asyncio.to_thread(
                    client.decrypt, swapped["CiphertextBlob"], encryption_context=CONTEXT
                )
                step.observed = "the swapped ciphertext was decrypted"
            except KmsError as exc:
                step.observed = _describe(exc)
                step.passed = exc.details.get("code") == "IncorrectKeyException"
            record(step)

            # (3) Other PCRs, and debug mode.
            for label, other_nsm in (
                ("an enclave with other PCRs", EmulatedNsm(pki, pcrs=OTHER_PCRS)),
                ("a debug-mode enclave", EmulatedNsm(pki, pcrs=DEMO_PCRS, debug_mode=True)),
            ):
                step = Step(
                    f"attack: {label} asks KMS for the master key",
                    "denied by the key policy (AccessDeniedException)",
                )
                intruder = await asyncio.to_thread(
                    Recipient.generate, other_nsm, rng_check=lambda: None
                )
                try:
                    await asyncio.to_thread(
                        KmsClient(intruder, **client_args).decrypt,
                        blob["CiphertextBlob"],
                        encryption_context=CONTEXT,
                    )
                    step.observed = "the master key was released"
                except KmsError as exc:
                    step.observed = _describe(exc)
                    step.passed = exc.details.get("code") == "AccessDeniedException"
                record(step)

            # (4) The parent answers in KMS's place.
            step = Step(
                "attack: the parent answers in KMS's place (to forge an envelope)",
                "refused by the TLS check inside the enclave; the impostor sees no request",
            )
            host2, port2 = impostor.address
            fake_proxy, _ = await start_proxy(
                ProxyConfig(
                    listen=parse_address("tcp://127.0.0.1:0"),
                    to=parse_address(f"tcp://{host2}:{port2}"),
                )
            )
            try:
                hijacked = KmsClient(
                    recipient,
                    **{**client_args, "connect_to": ("127.0.0.1", fake_proxy.address.port)},
                )
                await asyncio.to_thread(
                    hijacked.decrypt, blob["CiphertextBlob"], encryption_context=CONTEXT
                )
                step.observed = "the enclave accepted the impostor's answer"
            except KmsError as exc:
                seen = sum(impostor.service.requests.values())
                step.observed = f"{_describe(exc)}; impostor received {seen} requests"
                step.passed = exc.details.get("code") == "SSLError" and seen == 0
            finally:
                await fake_proxy.close()
            record(step)
            client.close()
        finally:
            await proxy.close()
