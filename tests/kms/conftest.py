"""Fixtures: an emulated NSM and the fake KMS over real HTTPS on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from nitroguard.nsm import EmulatedNsm
from nitroguard.testing import FakeKms, ephemeral_nsm

PCR0 = bytes.fromhex("aa" * 48)
ROLE = "arn:aws:iam::111122223333:role/enclave"


@pytest.fixture(scope="module")
def nsm() -> EmulatedNsm:
    return ephemeral_nsm(pcrs={0: PCR0})


@pytest.fixture(scope="module")
def fake(nsm: EmulatedNsm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeKms]:
    with FakeKms(tmp_path_factory.mktemp("kms"), roots=[nsm.pki.root_certificate]) as kms:
        yield kms


@pytest.fixture(scope="module")
def boto(fake: FakeKms) -> Any:
    return boto3.client("kms", **fake.boto3_kwargs())


def attested_policy(pcr0: bytes = PCR0, principal: str = ROLE) -> str:
    """Only an enclave with this PCR0 may Decrypt/GenerateDataKey*; the admin statement
    covers management (no Decrypt)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Admin",
                    "Effect": "Allow",
                    "Principal": {"AWS": principal},
                    "Action": [
                        "kms:DescribeKey",
                        "kms:GetKeyPolicy",
                        "kms:PutKeyPolicy",
                        "kms:Encrypt",
                    ],
                    "Resource": "*",
                },
                {
                    "Sid": "EnclaveOnly",
                    "Effect": "Allow",
                    "Principal": {"AWS": principal},
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyPair"],
                    "Resource": "*",
                    "Condition": {
                        "StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": pcr0.hex()}
                    },
                },
            ],
        }
    )


@pytest.fixture(scope="module")
def attested_key(boto: Any) -> str:
    arn: str = boto.create_key(Policy=attested_policy())["KeyMetadata"]["Arn"]
    return arn


def kms_tmp(tmp_path: Path) -> Path:
    path = tmp_path / "kms"
    path.mkdir()
    return path
