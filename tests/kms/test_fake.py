"""The fake KMS through an unmodified boto3 client over real HTTPS on loopback."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import PCR0, ROLE, attested_policy
from nitroguard.hazmat.cms import parse_envelope
from nitroguard.kms import Recipient
from nitroguard.kms._fake import FakeKmsService, default_key_policy, load_credentials
from nitroguard.nsm import EmulatedNsm
from nitroguard.testing import FakeCredential, FakeKms, ephemeral_nsm

CTX = {"app": "vault", "object": "master"}


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response: Any = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_symmetric_round_trip_with_the_default_policy(boto: Any, fake: FakeKms) -> None:
    meta = boto.create_key(Description="d")["KeyMetadata"]
    assert meta["Arn"] == f"arn:aws:kms:us-east-1:111122223333:key/{meta['KeyId']}"
    assert meta["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert (fake.state_dir / "keys" / f"{meta['KeyId']}.json").exists()
    assert boto.describe_key(KeyId=meta["Arn"])["KeyMetadata"]["KeyId"] == meta["KeyId"]
    policy = boto.get_key_policy(KeyId=meta["KeyId"], PolicyName="default")["Policy"]
    assert policy == default_key_policy("111122223333")
    assert "Enable IAM User Permissions" in policy
    blob = boto.encrypt(KeyId=meta["KeyId"], Plaintext=b"hi", EncryptionContext=CTX)
    assert blob["KeyId"] == meta["Arn"]
    out = boto.decrypt(CiphertextBlob=blob["CiphertextBlob"], EncryptionContext=CTX)
    assert out["Plaintext"] == b"hi"
    assert out["KeyId"] == meta["Arn"]


def test_kms_error_names_and_status_codes(boto: Any) -> None:
    key = boto.create_key()["KeyMetadata"]["KeyId"]
    other = boto.create_key()["KeyMetadata"]["KeyId"]
    blob = boto.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext=CTX)["CiphertextBlob"]
    cases = [
        (
            lambda: boto.decrypt(CiphertextBlob=blob, EncryptionContext={"app": "other"}),
            "InvalidCiphertextException",
        ),
        (lambda: boto.decrypt(CiphertextBlob=b"garbage" * 10), "InvalidCiphertextException"),
        (
            lambda: boto.decrypt(CiphertextBlob=blob, EncryptionContext=CTX, KeyId=other),
            "IncorrectKeyException",
        ),
        (
            lambda: boto.describe_key(KeyId="0d3b2e2a-8d6e-4a4f-9d1e-000000000000"),
            "NotFoundException",
        ),
        (lambda: boto.describe_key(KeyId="alias/x"), "NotFoundException"),
        (
            lambda: boto.put_key_policy(KeyId=key, PolicyName="default", Policy="{not json"),
            "MalformedPolicyDocumentException",
        ),
        (lambda: boto.generate_data_key(KeyId=key), "ValidationException"),
        (lambda: boto.create_key(KeySpec="RSA_2048"), "UnsupportedOperationException"),
    ]
    for call, name in cases:
        with pytest.raises(ClientError) as info:
            call()
        assert code_of(info) == (name, 400)


def test_sigv4_is_checked(fake: FakeKms) -> None:
    kwargs = fake.boto3_kwargs()
    bad_secret = boto3.client("kms", **{**kwargs, "aws_secret_access_key": "wrong"})
    with pytest.raises(ClientError) as info:
        bad_secret.generate_random(NumberOfBytes=8)
    assert code_of(info) == ("InvalidSignatureException", 403)
    unknown = boto3.client("kms", **{**kwargs, "aws_access_key_id": "AKIAUNKNOWN"})
    with pytest.raises(ClientError) as info:
        unknown.generate_random(NumberOfBytes=8)
    assert code_of(info)[0] == "UnrecognizedClientException"
    other_region = boto3.client("kms", **{**kwargs, "region_name": "eu-west-1"})
    with pytest.raises(ClientError) as info:
        other_region.generate_random(NumberOfBytes=8)
    assert code_of(info)[0] == "InvalidSignatureException"


def test_skewed_clock_expires_signatures(tmp_path: Path) -> None:
    late = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    with FakeKms(tmp_path, clock=lambda: late) as kms:
        client = boto3.client("kms", **kms.boto3_kwargs())
        with pytest.raises(ClientError, match="Signature expired"):
            client.generate_random(NumberOfBytes=8)


def test_unsigned_and_malformed_requests_sans_io(tmp_path: Path) -> None:
    service = FakeKmsService(tmp_path, [FakeCredential("AK", "SK", ROLE)])
    json_ct = {"Content-Type": "application/x-amz-json-1.1"}
    status, body = service.handle(
        "POST", "/", {**json_ct, "X-Amz-Target": "TrentService.GenerateRandom"}, b"{}"
    )
    assert (status, json.loads(body)["__type"]) == (400, "MissingAuthenticationTokenException")
    status, body = service.handle("POST", "/", {**json_ct, "X-Amz-Target": "Other.X"}, b"{}")
    assert json.loads(body)["__type"] == "UnknownOperationException"
    status, body = service.handle(
        "POST", "/", {**json_ct, "X-Amz-Target": "TrentService.ScheduleKeyDeletion"}, b"{}"
    )
    assert json.loads(body)["__type"] == "UnknownOperationException"
    status, body = service.handle(
        "POST",
        "/",
        {"Content-Type": "text/plain", "X-Amz-Target": "TrentService.GenerateRandom"},
        b"",
    )
    assert json.loads(body)["__type"] == "SerializationException"
    status, _ = service.handle("GET", "/", {}, b"")
    assert status == 404


def test_recipient_answers_only_in_the_real_ber_shape(
    boto: Any, nsm: EmulatedNsm, attested_key: str
) -> None:
    recipient = Recipient.generate(nsm, rng_check=lambda: None)
    blob = boto.encrypt(KeyId=attested_key, Plaintext=b"s" * 2500, EncryptionContext=CTX)
    reply = boto.decrypt(
        CiphertextBlob=blob["CiphertextBlob"],
        EncryptionContext=CTX,
        Recipient=recipient.parameter(),
    )
    assert "Plaintext" not in reply
    envelope = parse_envelope(reply["CiphertextForRecipient"])
    assert [len(c) for c in envelope.chunks] == [1000, 1000, 512]
    assert recipient.open(reply["CiphertextForRecipient"]) == b"s" * 2500
    pair = boto.generate_data_key_pair(
        KeyId=attested_key,
        KeyPairSpec="ECC_NIST_P256",
        EncryptionContext=CTX,
        Recipient=recipient.parameter(),
    )
    assert "PrivateKeyPlaintext" not in pair
    private = serialization.load_der_private_key(
        recipient.open(pair["CiphertextForRecipient"]), None
    )
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    random = boto.generate_random(NumberOfBytes=40, Recipient=recipient.parameter())
    assert "Plaintext" not in random
    assert len(recipient.open(random["CiphertextForRecipient"])) == 40


def test_attestation_conditions_are_absent_without_recipient(boto: Any, attested_key: str) -> None:
    blob = boto.encrypt(KeyId=attested_key, Plaintext=b"k", EncryptionContext=CTX)
    with pytest.raises(ClientError) as info:
        boto.decrypt(CiphertextBlob=blob["CiphertextBlob"], EncryptionContext=CTX)
    assert code_of(info)[0] == "AccessDeniedException"


def test_other_pcrs_and_debug_mode_are_denied(tmp_path: Path) -> None:
    good = ephemeral_nsm(pcrs={0: PCR0})
    pki = good.pki
    with FakeKms(tmp_path, roots=[pki.root_certificate]) as kms:
        client = boto3.client("kms", **kms.boto3_kwargs())
        key = client.create_key(Policy=attested_policy())["KeyMetadata"]["Arn"]
        blob = client.encrypt(KeyId=key, Plaintext=b"k", EncryptionContext=CTX)["CiphertextBlob"]
        ok = Recipient.generate(good, rng_check=lambda: None)
        reply = client.decrypt(CiphertextBlob=blob, EncryptionContext=CTX, Recipient=ok.parameter())
        assert ok.open(reply["CiphertextForRecipient"]) == b"k"
        for other in (
            EmulatedNsm(pki, pcrs={0: bytes.fromhex("bb" * 48)}),
            EmulatedNsm(pki, pcrs={0: PCR0}, debug_mode=True),
        ):
            recipient = Recipient.generate(other, rng_check=lambda: None)
            with pytest.raises(ClientError) as info:
                client.decrypt(
                    CiphertextBlob=blob, EncryptionContext=CTX, Recipient=recipient.parameter()
                )
            assert code_of(info)[0] == "AccessDeniedException"


def test_attestation_documents_are_verified(boto: Any, attested_key: str) -> None:
    blob = boto.encrypt(KeyId=attested_key, Plaintext=b"k", EncryptionContext=CTX)["CiphertextBlob"]
    stranger = ephemeral_nsm(pcrs={0: PCR0})  # another root: not trusted by the fake
    recipient = Recipient.generate(stranger, rng_check=lambda: None)
    with pytest.raises(ClientError, match="untrusted_root") as info:
        boto.decrypt(CiphertextBlob=blob, EncryptionContext=CTX, Recipient=recipient.parameter())
    assert code_of(info)[0] == "ValidationException"


def test_document_public_key_must_be_rsa_2048(boto: Any, nsm: EmulatedNsm) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    rsa3k = rsa.generate_private_key(65537, 3072).public_key()
    for key in (ec_key, rsa3k):
        spki = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        doc = nsm.get_attestation(public_key=spki)
        with pytest.raises(ClientError, match="RSA-2048"):
            boto.generate_random(
                NumberOfBytes=8,
                Recipient={
                    "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                    "AttestationDocument": doc,
                },
            )


def test_put_key_policy_and_credentials_file(tmp_path: Path, nsm: EmulatedNsm) -> None:
    path = tmp_path / "creds.json"
    path.write_text(
        json.dumps(
            [
                {"access_key_id": "AKIAADMIN", "secret_access_key": "s1", "principal": ROLE},
                {
                    "access_key_id": "AKIAOTHER",
                    "secret_access_key": "s2",
                    "principal": "arn:aws:iam::444455556666:role/outsider",
                },
            ]
        )
    )
    creds = load_credentials(path)
    with FakeKms(tmp_path / "state", credentials=creds, roots=[nsm.pki.root_certificate]) as kms:
        admin = boto3.client("kms", **kms.boto3_kwargs(creds[0]))
        outsider = boto3.client("kms", **kms.boto3_kwargs(creds[1]))
        key = admin.create_key(Policy=attested_policy())["KeyMetadata"]["KeyId"]
        with pytest.raises(ClientError) as info:
            outsider.describe_key(KeyId=key)
        assert code_of(info)[0] == "AccessDeniedException"
        with pytest.raises(ClientError) as info:
            admin.decrypt(CiphertextBlob=admin.encrypt(KeyId=key, Plaintext=b"k")["CiphertextBlob"])
        assert code_of(info)[0] == "AccessDeniedException"
        root = default_key_policy("111122223333")
        admin.put_key_policy(KeyId=key, PolicyName="default", Policy=root)
        assert admin.get_key_policy(KeyId=key)["Policy"] == root
        blob = admin.encrypt(KeyId=key, Plaintext=b"k")["CiphertextBlob"]
        assert admin.decrypt(CiphertextBlob=blob)["Plaintext"] == b"k"
    for bad in ("[]", "{}", '[{"access_key_id": "a"}]'):
        path.write_text(bad)
        with pytest.raises(Exception, match="credential"):
            load_credentials(path)


def _signed(
    service: FakeKmsService, op: str, body: dict[str, Any], **headers: str
) -> tuple[int, dict[str, Any]]:
    """Sign with botocore's own SigV4 signer and call the sans-IO service."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    data = json.dumps(body).encode()
    request = AWSRequest(
        method="POST",
        url="https://localhost/",
        data=data,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"TrentService.{op}",
            "Host": "localhost",
            **headers,
        },
    )
    SigV4Auth(BotoCredentials("AK", "SK"), "kms", "us-east-1").add_auth(request)
    status, answer = service.handle("POST", "/", dict(request.headers.items()), data)
    return status, json.loads(answer)


def test_validation_errors_sans_io(tmp_path: Path, nsm: EmulatedNsm) -> None:
    service = FakeKmsService(
        tmp_path, [FakeCredential("AK", "SK", ROLE)], roots=[nsm.pki.root_certificate]
    )
    _, created = _signed(service, "CreateKey", {})
    key = created["KeyMetadata"]["KeyId"]
    doc = base64.b64encode(nsm.get_attestation(public_key=b"not a key")).decode()
    cases = [
        ("GenerateRandom", {"NumberOfBytes": 0}, "ValidationException"),
        ("GenerateRandom", {"NumberOfBytes": 8, "Recipient": "x"}, "ValidationException"),
        (
            "GenerateRandom",
            {"NumberOfBytes": 8, "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_1"}},
            "ValidationException",
        ),
        (
            "GenerateRandom",
            {
                "NumberOfBytes": 8,
                "Recipient": {
                    "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                    "AttestationDocument": "!!",
                },
            },
            "SerializationException",
        ),
        (
            "GenerateRandom",
            {
                "NumberOfBytes": 8,
                "Recipient": {
                    "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                    "AttestationDocument": doc,
                },
            },
            "ValidationException",
        ),
        ("GenerateDataKeyPair", {"KeyId": key, "KeyPairSpec": "SM2"}, "ValidationException"),
        ("GenerateDataKey", {"KeyId": key, "KeySpec": "AES_512"}, "ValidationException"),
        ("GenerateDataKey", {"KeyId": key, "NumberOfBytes": 5000}, "ValidationException"),
        (
            "Encrypt",
            {"KeyId": key, "Plaintext": base64.b64encode(bytes(5000)).decode()},
            "ValidationException",
        ),
        (
            "Encrypt",
            {"KeyId": key, "Plaintext": "AA==", "EncryptionContext": {"a": 1}},
            "ValidationException",
        ),
        ("Encrypt", {"Plaintext": "AA=="}, "ValidationException"),
        (
            "Decrypt",
            {"CiphertextBlob": "AA==", "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"},
            "IncorrectKeyException",
        ),
        ("DescribeKey", {"KeyId": "arn:aws:kms:eu-west-1:1:key/x"}, "NotFoundException"),
        ("DescribeKey", {"KeyId": "not-a-uuid"}, "NotFoundException"),
        ("GetKeyPolicy", {"KeyId": key, "PolicyName": "other"}, "NotFoundException"),
        (
            "PutKeyPolicy",
            {"KeyId": key, "PolicyName": "other", "Policy": "{}"},
            "ValidationException",
        ),
        ("PutKeyPolicy", {"KeyId": key, "Policy": ""}, "ValidationException"),
    ]
    for op, body, name in cases:
        status, answer = _signed(service, op, body)
        assert (op, answer["__type"]) == (op, name), answer
        assert status == 400
    # The generic RSA_2048 pair and GenerateDataKey by NumberOfBytes work without Recipient.
    status, pair = _signed(
        service, "GenerateDataKeyPair", {"KeyId": key, "KeyPairSpec": "RSA_2048"}
    )
    assert status == 200
    assert "PrivateKeyPlaintext" in pair
    status, data_key = _signed(service, "GenerateDataKey", {"KeyId": key, "NumberOfBytes": 24})
    assert len(base64.b64decode(data_key["Plaintext"])) == 24
    # Extra unsigned headers are fine; a corrupted key file is a KMS-style 500.
    status, answer = _signed(service, "DescribeKey", {"KeyId": key}, **{"X-Test": "1"})
    assert status == 200
    (tmp_path / "keys" / f"{key}.json").write_text("{broken")
    status, answer = _signed(service, "DescribeKey", {"KeyId": key})
    assert (status, answer["__type"]) == (500, "KMSInternalException")


def test_malformed_authorization_headers(tmp_path: Path) -> None:
    service = FakeKmsService(tmp_path, [FakeCredential("AK", "SK", ROLE)])
    base = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "TrentService.GenerateRandom",
    }
    sig = "0" * 64

    def auth(scope: str, signed: str = "host;x-amz-date") -> str:
        return f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders={signed}, Signature={sig}"

    full = "AK/20260101/us-east-1/kms/aws4_request"
    for header, extra in (
        ("Basic abc", {}),
        (auth("AK/20260101/us-east-1/kms"), {}),
        (auth(full, "x-amz-date;host"), {}),
        (auth(full), {"Host": "h"}),
        (auth(full), {"Host": "h", "X-Amz-Date": "yesterday"}),
    ):
        status, body = service.handle(
            "POST", "/", {**base, **extra, "Authorization": header}, b"{}"
        )
        assert json.loads(body)["__type"] == "IncompleteSignatureException", header
    status, body = service.handle("POST", "/", {**base, "Authorization": "x"}, b"{}")
    assert status == 400
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps([{"access_key_id": "a", "secret_access_key": "b", "principal": "me"}])
    )
    with pytest.raises(Exception, match="IAM ARN"):
        load_credentials(path)
    with pytest.raises(Exception, match="credentials"):
        load_credentials(tmp_path / "missing.json")


def test_image_sha384_is_pcr0(boto: Any, nsm: EmulatedNsm) -> None:
    policy = json.loads(attested_policy())
    condition = policy["Statement"][1]["Condition"]["StringEqualsIgnoreCase"]
    condition["kms:RecipientAttestation:ImageSha384"] = condition.pop(
        "kms:RecipientAttestation:PCR0"
    ).upper()
    key = boto.create_key(Policy=json.dumps(policy))["KeyMetadata"]["Arn"]
    blob = boto.encrypt(KeyId=key, Plaintext=b"img", EncryptionContext=CTX)["CiphertextBlob"]
    good = Recipient.generate(nsm, rng_check=lambda: None)
    reply = boto.decrypt(CiphertextBlob=blob, EncryptionContext=CTX, Recipient=good.parameter())
    assert good.open(reply["CiphertextForRecipient"]) == b"img"
    other = Recipient.generate(
        EmulatedNsm(nsm.pki, pcrs={0: bytes(range(48))}), rng_check=lambda: None
    )
    with pytest.raises(ClientError, match="AccessDeniedException"):
        boto.decrypt(CiphertextBlob=blob, EncryptionContext=CTX, Recipient=other.parameter())
