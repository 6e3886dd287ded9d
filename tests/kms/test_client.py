"""KmsClient against the fake KMS: pins, refusals, the proxy path and start-up secrets."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import PCR0, ROLE, attested_policy
from nitroguard.app import AppConfig, EnclaveApp, Mode
from nitroguard.errors import ConfigError, KmsError, Reason
from nitroguard.kms import Credentials, CredentialsBox, KmsClient, Recipient, fetch_secrets
from nitroguard.nsm import EmulatedNsm
from nitroguard.testing import FakeKms
from nitroguard.transport import parse_address
from nitroguard.transport.proxy import Allowlist, ProxyConfig, start_proxy

CTX = {"app": "vault", "object": "master"}


@pytest.fixture(scope="module")
def recipient(nsm: EmulatedNsm) -> Recipient:
    return Recipient.generate(nsm, rng_check=lambda: None)


def client_for(fake: FakeKms, recipient: Recipient, key: str, **kw: Any) -> KmsClient:
    cred = fake.credential
    return KmsClient(
        recipient,
        key_id=key,
        region=fake.region,
        endpoint_url=kw.pop("endpoint_url", fake.endpoint_url),
        ca_bundle=str(fake.ca_path),
        credentials=Credentials(cred.access_key_id, cred.secret_access_key),
        **kw,
    )


def test_decrypt_and_generate_through_the_recipient(
    fake: FakeKms, boto: Any, recipient: Recipient, attested_key: str
) -> None:
    blob = boto.encrypt(KeyId=attested_key, Plaintext=b"master", EncryptionContext=CTX)
    client = client_for(fake, recipient, attested_key)
    assert client.decrypt(blob["CiphertextBlob"], encryption_context=CTX) == b"master"
    data_key = client.generate_data_key(encryption_context=CTX)
    assert len(data_key.plaintext) == 32
    assert "plaintext" not in repr(data_key)
    # The stored blob decrypts to the same key (through the recipient again).
    again = client.decrypt(data_key.ciphertext_blob, encryption_context=CTX)
    assert again == data_key.plaintext
    pair = client.generate_data_key_pair(encryption_context=CTX)
    assert pair.private_key_der.startswith(b"\x30")
    assert len(client.generate_random(32)) == 32
    # Bare key id pins work too.
    bare = client_for(fake, recipient, attested_key.rsplit("/", 1)[1])
    assert bare.decrypt(blob["CiphertextBlob"], encryption_context=CTX) == b"master"


def test_encryption_context_is_required_unless_opted_out_by_name(
    fake: FakeKms, boto: Any, recipient: Recipient
) -> None:
    key = boto.create_key()["KeyMetadata"]["Arn"]  # default policy: no attestation gate
    client = client_for(fake, recipient, key)
    blob = boto.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    with pytest.raises(ConfigError) as info:
        client.decrypt(blob)
    assert info.value.reason is Reason.MISSING_ENCRYPTION_CONTEXT
    with pytest.raises(ConfigError):
        client.generate_data_key()
    assert client.decrypt(blob, unsafe_no_encryption_context=True) == b"x"


def test_aliases_and_bad_arguments_are_refused(fake: FakeKms, recipient: Recipient) -> None:
    with pytest.raises(ConfigError, match="alias"):
        client_for(fake, recipient, "alias/vault")
    with pytest.raises(ConfigError):
        KmsClient(object(), key_id="k", region="r")  # type: ignore[arg-type]
    client = client_for(fake, recipient, "0d3b2e2a-8d6e-4a4f-9d1e-000000000000")
    with pytest.raises(ConfigError):
        client.generate_random(0)
    with pytest.raises(ConfigError):
        client.decrypt(b"x", encryption_context={"a": 1})  # type: ignore[dict-item]


def test_a_ciphertext_under_another_key_is_caught(
    fake: FakeKms, boto: Any, recipient: Recipient, attested_key: str
) -> None:
    other = boto.create_key()["KeyMetadata"]["Arn"]
    swapped = boto.encrypt(KeyId=other, Plaintext=b"parent's", EncryptionContext=CTX)
    client = client_for(fake, recipient, attested_key)
    # KMS itself refuses: KeyId is always sent.
    with pytest.raises(KmsError) as info:
        client.decrypt(swapped["CiphertextBlob"], encryption_context=CTX)
    assert info.value.reason is Reason.KMS_REQUEST_FAILED
    assert info.value.details["code"] == "IncorrectKeyException"

    # And the reply's KeyId is checked even if the request lost its KeyId on the way.
    def drop_key_id(params: dict[str, Any], **_: Any) -> None:
        del params["KeyId"]

    client._client.meta.events.register("provide-client-params.kms.Decrypt", drop_key_id)
    with pytest.raises(KmsError) as info:
        client.decrypt(swapped["CiphertextBlob"], encryption_context=CTX)
    assert info.value.reason is Reason.KEY_ID_MISMATCH


def test_plaintext_replies_are_refused(tmp_path: Path, nsm: EmulatedNsm) -> None:
    # A moto-like double that ignores Recipient and answers with the plaintext.
    with FakeKms(tmp_path, roots=[nsm.pki.root_certificate]) as kms:
        kms.service.unsafe_ignore_recipient = True
        boto = boto3.client("kms", **kms.boto3_kwargs())
        key = boto.create_key()["KeyMetadata"]["Arn"]
        blob = boto.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext=CTX)["CiphertextBlob"]
        client = client_for(kms, Recipient.generate(nsm, rng_check=lambda: None), key)
        for call in (
            lambda: client.decrypt(blob, encryption_context=CTX),
            lambda: client.generate_data_key(encryption_context=CTX),
            lambda: client.generate_data_key_pair(encryption_context=CTX),
            lambda: client.generate_random(8),
        ):
            with pytest.raises(KmsError) as info:
                call()
            assert info.value.reason is Reason.PLAINTEXT_IN_REPLY


def test_tls_through_the_parent_proxy_and_an_impostor_fails(
    fake: FakeKms, boto: Any, recipient: Recipient, attested_key: str, tmp_path: Path
) -> None:
    blob = boto.encrypt(KeyId=attested_key, Plaintext=b"via proxy", EncryptionContext=CTX)

    async def main() -> None:
        host, port = fake.address
        # TCP stands in for vsock: enclave bridge -> parent proxy (allowlist) -> KMS.
        proxy, counters = await start_proxy(
            ProxyConfig(
                listen=parse_address("tcp://127.0.0.1:0"),
                to=parse_address(f"tcp://{host}:{port}"),
                allow=Allowlist.parse([f"{host}:{port}"]),
            )
        )
        try:
            # Connect to the bridge, but TLS and SigV4 for kms.us-east-1.amazonaws.com.
            client = client_for(
                fake,
                recipient,
                attested_key,
                endpoint_url=None,
                connect_to=("127.0.0.1", proxy.address.port),
            )
            plain = await asyncio.to_thread(
                client.decrypt, blob["CiphertextBlob"], encryption_context=CTX
            )
            assert plain == b"via proxy"
            assert counters.bytes_up > 0
            assert counters.bytes_down > 0
            client.close()
        finally:
            await proxy.close()

    asyncio.run(main())
    # The parent answers in KMS's place with its own TLS identity: refused by TLS.
    with FakeKms(tmp_path) as impostor:
        client = client_for(fake, recipient, attested_key, endpoint_url=impostor.endpoint_url)
        with pytest.raises(KmsError) as info:
            client.decrypt(blob["CiphertextBlob"], encryption_context=CTX)
        assert info.value.details["code"] == "SSLError"
        assert impostor.service.requests == {}
    # A certificate from a trusted CA but for another name: refused by the host-name check.
    with FakeKms(tmp_path / "eu", region="eu-west-1") as elsewhere:
        client = KmsClient(
            recipient,
            key_id=attested_key,
            region="us-east-1",
            ca_bundle=str(elsewhere.ca_path),
            connect_to=elsewhere.address,
            credentials=Credentials("AKIAANY", "any"),
        )
        with pytest.raises(KmsError, match=re.escape("'kms.us-east-1.amazonaws.com'")):
            client.generate_random(8)
        with pytest.raises(ConfigError):
            KmsClient(
                recipient,
                key_id=attested_key,
                region="us-east-1",
                endpoint_url="https://x",
                connect_to=("127.0.0.1", 1),
            )


def test_enclave_app_fetches_its_secret_at_start(
    fake: FakeKms, boto: Any, nsm: EmulatedNsm, attested_key: str, tmp_path: Path
) -> None:
    blob = boto.encrypt(KeyId=attested_key, Plaintext=b"M" * 32, EncryptionContext=CTX)
    cred = fake.credential
    secrets: dict[str, bytes] = {}
    app = EnclaveApp("vault")
    box = CredentialsBox()
    box.install(app, allow={"operator"})
    app.on_start(
        fetch_secrets(
            secrets,
            {"master": (blob["CiphertextBlob"], CTX)},
            key_id=attested_key,
            region=fake.region,
            endpoint_url=fake.endpoint_url,
            ca_bundle=str(fake.ca_path),
            credentials=Credentials(cred.access_key_id, cred.secret_access_key),
        )
    )
    (tmp_path / "random").touch()
    config = AppConfig(
        mode=Mode.DEVELOPMENT, listen="tcp://127.0.0.1:0", random_device=str(tmp_path / "random")
    )

    async def main() -> None:
        running = await app.start(config, nsm=nsm)
        await running.close()

    asyncio.run(main())
    assert secrets == {"master": b"M" * 32}


def test_pushed_credentials(fake: FakeKms, recipient: Recipient, attested_key: str) -> None:
    app = EnclaveApp("vault")
    box = CredentialsBox()
    box.install(app, allow={"operator"})
    client = client_for(fake, recipient, attested_key)
    box.subscribe(client.set_credentials)
    op, allow = app._ops["kms_credentials"]
    assert allow == {"operator"}

    def push(args: dict[str, Any]) -> Any:
        return op(args, None)

    with pytest.raises(ConfigError):
        asyncio.run(push({"access_key_id": "a", "password": "p"}))
    with pytest.raises(ConfigError):
        asyncio.run(push({"access_key_id": "a", "secret_access_key": ""}))
    asyncio.run(push({"access_key_id": "AKIAWRONG", "secret_access_key": "SECRETVALUE"}))
    assert box.current is not None
    assert "SECRETVALUE" not in repr(box.current)
    with pytest.raises(KmsError) as info:
        client.generate_random(8)
    assert info.value.details["code"] == "UnrecognizedClientException"
    good = fake.credential
    asyncio.run(
        push({"access_key_id": good.access_key_id, "secret_access_key": good.secret_access_key})
    )
    assert len(client.generate_random(8)) == 8


def test_policy_fixture_is_pinned_to_the_test_pcr0() -> None:
    assert PCR0.hex() in attested_policy()


def _agreement_policy() -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Admin",
                    "Effect": "Allow",
                    "Principal": {"AWS": ROLE},
                    "Action": ["kms:DescribeKey", "kms:GetPublicKey", "kms:Encrypt"],
                    "Resource": "*",
                },
                {
                    "Sid": "EnclaveDerives",
                    "Effect": "Allow",
                    "Principal": {"AWS": ROLE},
                    "Action": "kms:DeriveSharedSecret",
                    "Resource": "*",
                    "Condition": {
                        "StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": PCR0.hex()}
                    },
                },
            ],
        }
    )


def test_derive_shared_secret_through_the_recipient(
    fake: FakeKms, boto: Any, recipient: Recipient
) -> None:
    meta = boto.create_key(
        KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT", Policy=_agreement_policy()
    )["KeyMetadata"]
    assert meta["KeyAgreementAlgorithms"] == ["ECDH"]
    kms_public = serialization.load_der_public_key(
        boto.get_public_key(KeyId=meta["KeyId"])["PublicKey"]
    )
    assert isinstance(kms_public, ec.EllipticCurvePublicKey)
    peer = ec.generate_private_key(ec.SECP256R1())
    peer_der = peer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    client = client_for(fake, recipient, meta["Arn"])
    assert client.derive_shared_secret(peer_der) == peer.exchange(ec.ECDH(), kms_public)
    # Without Recipient the attestation condition is absent: denied.
    with pytest.raises(ClientError, match="AccessDeniedException"):
        boto.derive_shared_secret(
            KeyId=meta["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=peer_der
        )
    # A key-agreement key cannot encrypt; a P-384 peer does not fit a P-256 key.
    with pytest.raises(ClientError, match="InvalidKeyUsageException"):
        boto.encrypt(KeyId=meta["KeyId"], Plaintext=b"x")
    other_curve = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(KmsError, match="ValidationException"):
        client.derive_shared_secret(
            other_curve.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
