"""`nitroguard kms inspect | open | fake serve`."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import ROLE
from nitroguard._cli import main
from nitroguard.kms import seal_envelope

KEY = rsa.generate_private_key(65537, 2048)
INSPECT_KEYS = [
    "recipient_key_id",
    "key_encryption",
    "content_encryption",
    "encrypted_key_bytes",
    "iv",
    "content_chunks",
    "content_bytes",
]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.mark.vectors
def test_inspect_real_reply_json(kms_vectors_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = kms_vectors_dir / "kms_ciphertext_for_recipient_1.ber"
    code, out, _ = run(["kms", "inspect", str(path), "--json"], capsys)
    assert code == 0
    info = json.loads(out)
    assert list(info) == INSPECT_KEYS
    assert info["key_encryption"] == "RSAES_OAEP_SHA_256"
    assert info["content_encryption"] == "AES_256_CBC"
    assert info["encrypted_key_bytes"] == 256
    assert len(info["recipient_key_id"]) == 64


def test_open_detects_raw_base64_and_hex(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(
        KEY.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    data = seal_envelope(KEY.public_key(), b"secret" * 300)
    for name, blob in (
        ("raw.ber", data),
        ("b64.txt", base64.b64encode(data) + b"\n"),
        ("hex.txt", data.hex().encode()),
    ):
        (tmp_path / name).write_bytes(blob)
        code, out, _ = run(
            ["kms", "open", str(tmp_path / name), "--key", str(key), "--json"], capsys
        )
        assert code == 0
        assert json.loads(out) == {"plaintext": (b"secret" * 300).hex()}
    code, out, _ = run(["kms", "inspect", str(tmp_path / "b64.txt")], capsys)
    assert code == 0
    assert "content_chunks: 2" in out
    code, out, _ = run(["kms", "open", str(tmp_path / "hex.txt"), "--key", str(key)], capsys)
    assert out.strip() == (b"secret" * 300).hex()


def test_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(
        rsa.generate_private_key(65537, 2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    env = tmp_path / "env.ber"
    env.write_bytes(seal_envelope(KEY.public_key(), b"x"))
    code, _, err = run(["kms", "open", str(env), "--key", str(other)], capsys)
    assert code == 1
    assert "decryption_failed" in err
    (tmp_path / "trailing.ber").write_bytes(env.read_bytes() + b"\x00")
    code, _, err = run(["kms", "inspect", str(tmp_path / "trailing.ber")], capsys)
    assert (code, "trailing_bytes" in err) == (1, True)
    (tmp_path / "text.txt").write_text("this is not an envelope!")
    assert run(["kms", "inspect", str(tmp_path / "text.txt")], capsys)[0] in (1, 2)
    assert run(["kms", "inspect", str(tmp_path / "missing")], capsys)[0] == 2
    assert run(["kms", "open", str(env)], capsys)[0] == 2  # --key is required
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert run(["kms", "open", str(env), "--key", str(ec_key)], capsys)[0] == 2
    assert run(["kms", "open", str(env), "--key", str(env)], capsys)[0] == 2


def test_fake_serve_subprocess_with_boto3(tmp_path: Path) -> None:
    state = tmp_path / "state"
    creds = tmp_path / "creds.json"
    creds.write_text(
        json.dumps([{"access_key_id": "AKIACLI", "secret_access_key": "s", "principal": ROLE}])
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nitroguard",
            "kms",
            "fake",
            "serve",
            "--listen",
            "tcp://127.0.0.1:0",
            "--state",
            str(state),
            "--credentials",
            str(creds),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on https://127.0.0.1:")
        url = line.split()[-1]
        client = boto3.client(
            "kms",
            region_name="us-east-1",
            endpoint_url=url,
            verify=str(state / "ca.pem"),
            aws_access_key_id="AKIACLI",
            aws_secret_access_key="s",  # noqa: S106 - the fake's test credential
        )
        key = client.create_key()["KeyMetadata"]["KeyId"]
        blob = client.encrypt(KeyId=key, Plaintext=b"cli")["CiphertextBlob"]
        assert client.decrypt(CiphertextBlob=blob)["Plaintext"] == b"cli"
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_fake_serve_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["kms", "fake", "serve", "--state", str(tmp_path)]
    assert run([*base, "--listen", "unix:///tmp/x"], capsys)[0] == 2
    (tmp_path / "bad.pem").write_text("nope")
    assert (
        run([*base, "--listen", "tcp://127.0.0.1:0", "--root", str(tmp_path / "bad.pem")], capsys)[
            0
        ]
        == 2
    )
    (tmp_path / "c.json").write_text("[]")
    assert (
        run(
            [*base, "--listen", "tcp://127.0.0.1:0", "--credentials", str(tmp_path / "c.json")],
            capsys,
        )[0]
        == 2
    )
