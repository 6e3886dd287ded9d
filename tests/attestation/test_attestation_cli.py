"""`nitroguard attest` and `nitroguard demo` through real subprocesses."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from nitroguard.testing import AwsLikePki

SIGNAL = "real/signal_2023-05-24.cbor"
SIGNAL_AT = "2023-05-24T18:37:46Z"
DEBUG = "real/signal_debug_2023-05-17.cbor"
DEBUG_AT = "2023-05-17T22:51:49Z"


def run(
    *args: str,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nitroguard", *args],
        input=stdin.decode("latin-1") if stdin is not None else None,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=cwd,
        env=env,
    )


def run_json(*args: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    proc = run(*args, "--json", **kwargs)
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def vec(attestation_vectors_dir: Path) -> Path:
    return attestation_vectors_dir


@pytest.mark.vectors
class TestVerify:
    def test_verified_json_schema(self, vec: Path) -> None:
        code, out = run_json("attest", "verify", str(vec / SIGNAL), "--at", SIGNAL_AT)
        assert code == 0
        assert out["verified"] is True
        assert out["reason"] is None
        assert isinstance(out["message"], str)
        doc = out["document"]
        assert set(doc) == {
            "module_id",
            "timestamp",
            "digest",
            "pcrs",
            "public_key",
            "user_data",
            "nonce",
            "certificate",
        }
        assert doc["timestamp"] == 1684948068582
        assert doc["digest"] == "SHA384"
        assert doc["pcrs"]["0"].startswith("28de6557")
        assert doc["user_data"] == "09f27d4cdf9fe7c8771001180528023080a305"
        assert doc["nonce"] is None
        assert len(bytes.fromhex(doc["public_key"])) == 32
        assert set(doc["certificate"]) == {"subject", "not_before", "not_after"}
        assert doc["certificate"]["subject"].startswith("CN=i-09b153b9b6859a1de-enc")

    def test_text_output(self, vec: Path) -> None:
        proc = run("attest", "verify", str(vec / SIGNAL), "--at", "1684953466000")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("VERIFIED")
        assert "pinned AWS Nitro Enclaves Root-G1" in proc.stdout

    def test_base64_hex_and_stdin(self, vec: Path, tmp_path: Path) -> None:
        raw = (vec / SIGNAL).read_bytes()
        b64 = tmp_path / "doc.b64"
        b64.write_bytes(base64.encodebytes(raw))
        hexfile = tmp_path / "doc.hex"
        hexfile.write_text(raw.hex() + "\n")
        for path in (b64, hexfile):
            assert run("attest", "verify", str(path), "--at", SIGNAL_AT).returncode == 0
        proc = run("attest", "verify", "-", "--at", SIGNAL_AT, stdin=base64.b64encode(raw))
        assert proc.returncode == 0, proc.stderr

    def test_rejected_today(self, vec: Path) -> None:
        code, out = run_json("attest", "verify", str(vec / SIGNAL))
        assert code == 1
        assert out["verified"] is False
        assert out["reason"] == "expired_certificate"
        assert out["step"] == "chain"
        proc = run("attest", "verify", str(vec / SIGNAL))
        assert proc.returncode == 1
        assert "step 5 (chain)" in proc.stdout
        assert "expired_certificate" in proc.stdout

    def test_debug(self, vec: Path) -> None:
        code, out = run_json("attest", "verify", str(vec / DEBUG), "--at", DEBUG_AT)
        assert (code, out["reason"], out["step"]) == (1, "debug_mode", "policy")
        proc = run("attest", "verify", str(vec / DEBUG), "--at", DEBUG_AT, "--allow-debug")
        assert proc.returncode == 0
        assert "DEBUG-MODE" in proc.stdout

    def test_policies(self, vec: Path) -> None:
        base = ("attest", "verify", str(vec / SIGNAL), "--at", SIGNAL_AT)
        pcr0 = (
            "28de6557cce896cf8c580d8674fbc13c45c1a7636545ef02"
            "2a01007336b8752b9a1cd9ce69df2ecacc7696a1203b45c2"
        )
        assert run(*base, "--pcr", f"0={pcr0}", "--pcr", f"3={'00' * 48}").returncode == 0
        code, out = run_json(*base, "--pcr", f"0={'11' * 48}")
        assert (code, out["reason"]) == (1, "pcr_mismatch")
        code, out = run_json(*base, "--pcr", f"20={'11' * 48}")
        assert (code, out["reason"]) == (1, "pcr_missing")
        code, out = run_json(*base, "--nonce", "00" * 16)
        assert (code, out["reason"]) == (1, "nonce_mismatch")
        assert run(*base, "--user-data", "09f27d4cdf9fe7c8771001180528023080a305").returncode == 0
        code, out = run_json(*base, "--user-data", "00")
        assert (code, out["reason"]) == (1, "user_data_mismatch")
        code, out = run_json(*base, "--public-key", "00")
        assert (code, out["reason"]) == (1, "public_key_mismatch")
        # The document is about 1.5 h old at verify_at.
        code, out = run_json(*base, "--max-age", "60")
        assert (code, out["reason"]) == (1, "stale_document")
        assert run(*base, "--max-age", "7200").returncode == 0

    def test_negatives(self, vec: Path) -> None:
        code, out = run_json(
            "attest", "verify", str(vec / "negative/derived_trailing_byte.cbor"), "--at", SIGNAL_AT
        )
        assert (code, out["reason"], out["step"]) == (1, "trailing_bytes", "cose")
        assert out["document"] is None
        code, out = run_json(
            "attest",
            "verify",
            str(vec / "negative/signal_pcr_bitflip.cbor"),
            "--at",
            DEBUG_AT,
            "--allow-debug",
        )
        assert (code, out["reason"], out["step"]) == (1, "bad_signature", "signature")

    @pytest.mark.parametrize(
        "extra",
        [
            ("--nonce", "00" * 15),
            ("--nonce", "zz"),
            ("--pcr", "0"),
            ("--pcr", "x=00"),
            ("--pcr", "0=00"),
            ("--pcr", f"0={'00' * 48}", "--pcr", f"0={'00' * 48}"),
            ("--at", "yesterday"),
            ("--max-age", "0"),
            ("--root", "/nonexistent.pem"),
            ("--bogus",),
        ],
    )
    def test_usage_errors_exit_2(self, vec: Path, extra: tuple[str, ...]) -> None:
        proc = run("attest", "verify", str(vec / SIGNAL), "--at", SIGNAL_AT, *extra)
        assert proc.returncode == 2, (extra, proc.stdout, proc.stderr)
        assert proc.stderr

    def test_root_pem_that_is_not_a_certificate(self, vec: Path, tmp_path: Path) -> None:
        bad = tmp_path / "bad.pem"
        bad.write_text("not a pem\n")
        proc = run("attest", "verify", str(vec / SIGNAL), "--root", str(bad))
        assert proc.returncode == 2
        assert "PEM" in proc.stderr


class TestInputs:
    def test_unreadable_file_exits_2(self, tmp_path: Path) -> None:
        proc = run("attest", "verify", str(tmp_path / "missing.cbor"))
        assert proc.returncode == 2
        assert "cannot read" in proc.stderr
        empty = tmp_path / "empty"
        empty.write_bytes(b"")
        assert run("attest", "inspect", str(empty)).returncode == 2

    def test_garbage_is_rejected_with_1(self, tmp_path: Path) -> None:
        junk = tmp_path / "junk.bin"
        junk.write_bytes(b"\x84\x01\x02")
        code, out = run_json("attest", "verify", str(junk))
        assert (code, out["reason"], out["step"]) == (1, "malformed_cbor", "cose")

    def test_oversized_document(self, tmp_path: Path) -> None:
        big = tmp_path / "big.bin"
        big.write_bytes(b"\x84" + b"\x00" * 20000)
        code, out = run_json("attest", "verify", str(big))
        assert (code, out["reason"], out["step"]) == (1, "too_large", "size")

    def test_missing_action(self) -> None:
        proc = run("attest")
        assert proc.returncode == 2


class TestCustomRoot:
    def test_root_option(self, tmp_path: Path) -> None:
        at = dt.datetime(2026, 2, 2, 2, 2, tzinfo=dt.UTC)
        pki = AwsLikePki.build(at)
        doc = tmp_path / "doc.cbor"
        doc.write_bytes(pki.document(nonce=b"N" * 32))
        pem = tmp_path / "root.pem"
        pem.write_bytes(pki.root.cert.public_bytes(Encoding.PEM))
        other = tmp_path / "other.pem"
        other.write_bytes(AwsLikePki.build(at).root.cert.public_bytes(Encoding.PEM))
        iso = at.isoformat()
        code, out = run_json("attest", "verify", str(doc), "--at", iso)
        assert (code, out["reason"], out["step"]) == (1, "untrusted_root", "root")
        code, out = run_json(
            "attest",
            "verify",
            str(doc),
            "--at",
            iso,
            "--root",
            str(pem),
            "--nonce",
            (b"N" * 32).hex(),
        )
        assert code == 0
        assert out["document"]["nonce"] == (b"N" * 32).hex()
        # Several --root options: any one of them may anchor the chain.
        code, _ = run_json(
            "attest", "verify", str(doc), "--at", iso, "--root", str(other), "--root", str(pem)
        )
        assert code == 0


class TestInspect:
    def test_inspect_says_unverified(self, tmp_path: Path) -> None:
        at = dt.datetime(2026, 2, 2, 2, 2, tzinfo=dt.UTC)
        pki = AwsLikePki.build(at)
        doc = tmp_path / "doc.cbor"
        doc.write_bytes(pki.document(user_data=b"hello"))
        proc = run("attest", "inspect", str(doc))
        assert proc.returncode == 0
        assert proc.stdout.startswith("UNVERIFIED")
        # The warning once (issue 14): on stdout with the result, not repeated on stderr.
        assert proc.stdout.count("UNVERIFIED: decoded without") == 1
        assert "UNVERIFIED" not in proc.stderr
        assert "68656c6c6f" in proc.stdout
        code, out = run_json("attest", "inspect", str(doc))
        assert code == 0
        assert out["verified"] is False
        assert out["decoded"] is True
        assert "UNVERIFIED" in out["warning"]
        assert out["document"]["user_data"] == "68656c6c6f"
        assert len(out["cabundle"]) == 4

    def test_inspect_certificate_with_invalid_version(self, tmp_path: Path) -> None:
        at = dt.datetime(2026, 2, 2, 2, 2, tzinfo=dt.UTC)
        pki = AwsLikePki.build(at)
        leaf = pki.leaf.der.replace(bytes.fromhex("a003020102"), bytes.fromhex("a003020142"), 1)
        doc = tmp_path / "doc.cbor"
        doc.write_bytes(pki.document(certificate=leaf))
        code, out = run_json("attest", "inspect", str(doc))
        assert code == 0
        assert out["document"]["certificate"]["subject"] is None
        assert "version" in out["document"]["certificate"]["error"]
        proc = run("attest", "verify", str(doc), "--at", at.isoformat(), "--root", "/dev/null")
        assert proc.returncode == 2
        assert "PEM" in proc.stderr

    def test_inspect_malformed(self, tmp_path: Path) -> None:
        junk = tmp_path / "junk.bin"
        junk.write_bytes(b"\x84\x40\xa0\x40\x40")
        code, out = run_json("attest", "inspect", str(junk))
        assert (code, out["decoded"], out["reason"]) == (1, False, "unsupported_algorithm")
        proc = run("attest", "inspect", str(junk))
        assert proc.returncode == 1
        assert "MALFORMED" in proc.stdout

    @pytest.mark.vectors
    def test_inspect_expired_real_document(self, vec: Path) -> None:
        # Inspection never checks time or trust: an expired document still decodes.
        code, out = run_json("attest", "inspect", str(vec / DEBUG))
        assert code == 0
        assert out["document"]["pcrs"]["0"] == "00" * 48


@pytest.mark.vectors
class TestDemo:
    def test_demo_from_repo_root(self, vec: Path) -> None:
        env = {**os.environ, "NITROGUARD_SHARED": str(vec.parent.parent)}
        proc = run("demo", "--vectors", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "vectors behaved as expected: OK" in proc.stdout
        assert "debug_mode" in proc.stdout
        code, out = run_json("demo", "--vectors", str(vec))
        assert code == 0
        assert out["ok"] is True
        assert out["held"] == out["total"] >= 15

    def test_demo_relative_to_cwd(self, vec: Path, tmp_path: Path) -> None:
        # `make demo` runs from the repo root; the vectors are in ../shared.
        env = {k: v for k, v in os.environ.items() if k != "NITROGUARD_SHARED"}
        repo_dir = tmp_path / "repo"
        repo_dir.mkdir()
        (tmp_path / "shared").symlink_to(vec.parent.parent)
        proc = run("demo", "--vectors", cwd=repo_dir, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert str(tmp_path / "shared") in proc.stdout

    def test_demo_fails_when_an_expectation_does_not_hold(self, vec: Path, tmp_path: Path) -> None:
        entries = [
            {
                "file": str(vec / "negative/signal_pcr_bitflip.cbor"),
                "verify_at": DEBUG_AT,
                "expect": "accept",
                "debug": True,
            },
        ]
        (tmp_path / "vectors.json").write_text(json.dumps(entries))
        proc = run("demo", "--vectors", str(tmp_path))
        assert proc.returncode == 1
        assert "UNEXPECTED" in proc.stdout
        assert "FAILED" in proc.stdout

    def test_demo_without_vectors_exits_2(self, tmp_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "NITROGUARD_SHARED"}
        proc = run("demo", "--vectors", cwd=tmp_path, env=env)
        assert proc.returncode == 2
        assert "vectors.json" in proc.stderr
