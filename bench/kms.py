"""KMS benchmark: envelope opening against bare RSA-OAEP; Decrypt with and without Recipient.

1. `open_envelope` (strict BER parse + RSA-OAEP-SHA256 unwrap + AES-256-CBC + unpad) per
   second, against a bare ``private_key.decrypt(wrapped, OAEP)`` of the same wrapped key
   in the same run. Target: ratio >= 0.8 (the parse and AES must cost little next to RSA).
2. boto3 ``Decrypt`` through the fake KMS over HTTPS on loopback with a ``Recipient``
   (fresh attestation document each call, verification, BER envelope, client-side open
   through `KmsClient`) against plain ``Decrypt`` with no Recipient. Reported ratio:
   time per call with Recipient / without.

Usage: python bench/kms.py [--open N] [--calls N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import boto3
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP

from nitroguard.hazmat.cms import parse_envelope
from nitroguard.kms import Credentials, KmsClient, Recipient, open_envelope, seal_envelope
from nitroguard.testing import FakeKms, ephemeral_nsm


def rate(func: object, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        func()  # type: ignore[operator]
    return n / (time.perf_counter() - started)


def bench_open(n: int) -> float:
    key = rsa.generate_private_key(65537, 2048)
    data = seal_envelope(key.public_key(), b"k" * 32)
    wrapped = parse_envelope(data).encrypted_key
    oaep = OAEP(MGF1(hashes.SHA256()), hashes.SHA256(), None)
    ratios, opens, bares = [], [], []
    for _ in range(7):  # interleaved rounds; the median ratio resists noisy neighbours
        bare = rate(lambda: key.decrypt(wrapped, oaep), n)
        opened = rate(lambda: open_envelope(key, data), n)
        ratios.append(opened / bare)
        opens.append(opened)
        bares.append(bare)
    ratio = statistics.median(ratios)
    print(
        f"open_envelope: {statistics.median(opens):.0f}/s; bare RSA-OAEP decrypt: "
        f"{statistics.median(bares):.0f}/s; median per-round ratio {ratio:.2f} "
        f"(range {min(ratios):.2f}-{max(ratios):.2f}; target >= 0.8: "
        f"{'met' if ratio >= 0.8 else 'MISSED'})"
    )
    return ratio


def bench_decrypt(calls: int) -> float:
    nsm = ephemeral_nsm()
    ctx = {"app": "bench"}
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeKms(tmp, roots=[nsm.pki.root_certificate]) as kms,
    ):
        boto = boto3.client("kms", **kms.boto3_kwargs())
        key = boto.create_key()["KeyMetadata"]["Arn"]
        blob = boto.encrypt(KeyId=key, Plaintext=b"m" * 32, EncryptionContext=ctx)["CiphertextBlob"]
        cred = kms.credential
        client = KmsClient(
            Recipient.generate(nsm, rng_check=lambda: None),
            key_id=key,
            region=kms.region,
            endpoint_url=kms.endpoint_url,
            ca_bundle=str(kms.ca_path),
            credentials=Credentials(cred.access_key_id, cred.secret_access_key),
        )
        for _ in range(5):  # warm both connections
            boto.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)
            client.decrypt(blob, encryption_context=ctx)
        plain = rate(lambda: boto.decrypt(CiphertextBlob=blob, EncryptionContext=ctx), calls)
        attested = rate(lambda: client.decrypt(blob, encryption_context=ctx), calls)
        client.close()
        boto.close()
    ratio = plain / attested
    print(
        f"Decrypt via fake KMS: without Recipient {plain:.0f}/s, with Recipient "
        f"{attested:.0f}/s; time ratio with/without {ratio:.2f}"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--open", type=int, default=300)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    bench_open(args.open)
    bench_decrypt(args.calls)


if __name__ == "__main__":
    main()
