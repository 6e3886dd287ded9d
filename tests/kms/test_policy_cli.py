"""`nitroguard kms policy` and `nitroguard kms lint`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nitroguard._cli import main

ACCOUNT = "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/enclave"
SIGNED = "v4-signed-es384-2ramdisks.eif"
UNSIGNED = "v1-unsigned-2ramdisks.eif"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def generate(eifs: list[Path], capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    args = ["kms", "policy", "--principal", ROLE, "--account", ACCOUNT, *extra]
    for eif in eifs:
        args += ["--eif", str(eif)]
    code, out, err = run(args, capsys)
    assert code == 0, err
    return out


def test_policy_then_lint_round_trip(
    eif_vectors_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eif = eif_vectors_dir / SIGNED
    out = generate([eif], capsys, "--encryption-context", "purpose=vault")
    policy = json.loads(out)
    assert policy["Statement"][1]["Condition"]["StringEquals"] == {
        "kms:EncryptionContext:purpose": "vault"
    }
    path = tmp_path / "policy.json"
    path.write_text(out)
    code, out, _ = run(["kms", "lint", str(path), "--eif", str(eif), "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["summary"] == {"pass": 8, "warn": 0, "fail": 0, "skip": 0}
    # Human output: one line per check and a summary.
    code, out, _ = run(["kms", "lint", str(path), "--strict"], capsys)
    assert code == 0
    assert "PASS  KMS-1" in out
    assert "summary: 7 pass, 0 warn, 0 fail, 1 skip" in out


def test_policy_json_rolling_upgrade(
    eif_vectors_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eifs = [eif_vectors_dir / UNSIGNED, eif_vectors_dir / "v2-unsigned-1ramdisk.eif"]
    report = json.loads(generate(eifs, capsys, "--json", "--encryption-context", "a=b"))
    assert set(report) == {"policy", "images", "comment", "findings", "summary"}
    assert "rolling upgrade" in report["comment"]
    assert [i["path"] for i in report["images"]] == [str(e) for e in eifs]
    assert report["summary"]["fail"] == 0
    assert [f["id"] for f in report["findings"] if f["status"] == "warn"] == ["KMS-5"]


def test_policy_text_reports_warnings_on_stderr(
    eif_vectors_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = f"arn:aws:iam::{ACCOUNT}:role/Admin"
    args = ["kms", "policy", "--eif", str(eif_vectors_dir / UNSIGNED), "--principal", ROLE]
    code, out, err = run([*args, "--account", ACCOUNT, "--pcr", "0", "--admin", admin], capsys)
    assert code == 0
    policy = json.loads(out)
    assert policy["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:role/Admin"}
    assert "warn KMS-6" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pcr", "8"], "unsigned image"),
        (["--encryption-context", "novalue"], "KEY=VALUE"),
        (["--encryption-context", "a=1", "--encryption-context", "a=2"], "given twice"),
    ],
)
def test_policy_usage_errors(
    eif_vectors_dir: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = ["kms", "policy", "--eif", str(eif_vectors_dir / UNSIGNED), "--principal", ROLE]
    code, _, err = run([*args, "--account", ACCOUNT, *extra], capsys)
    assert code == 2
    assert message in err


def test_policy_unreadable_eif(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.eif"
    bad.write_bytes(b"not an eif")
    code, _, err = run(
        ["kms", "policy", "--eif", str(bad), "--principal", ROLE, "--account", ACCOUNT], capsys
    )
    assert code == 1
    assert "nitroguard:" in err


def test_lint_default_policy_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inner = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    path = tmp_path / "get-key-policy.json"
    path.write_text(json.dumps({"Policy": json.dumps(inner), "PolicyName": "default"}))
    code, out, _ = run(["kms", "lint", str(path), "--principal", ROLE, "--json"], capsys)
    assert code == 1
    findings = {f["id"]: f for f in json.loads(out)["findings"]}
    assert findings["KMS-1"]["status"] == "fail"
    assert "Enable IAM User Permissions" in findings["KMS-1"]["evidence"]
    assert findings["KMS-1"]["remediation"]
    code, out, _ = run(["kms", "lint", str(path)], capsys)
    assert code == 1
    assert "FAIL  KMS-1" in out
    assert "fix: " in out


def test_lint_invalid_json_is_a_finding_and_warnings_need_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"Statement": [')
    code, out, _ = run(["kms", "lint", str(path), "--json"], capsys)
    assert code == 1
    assert json.loads(out)["findings"][7]["status"] == "fail"
    warn_only = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": ROLE},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {
                    "StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": "ab" * 48}
                },
            }
        ]
    }
    path.write_text(json.dumps(warn_only))
    assert run(["kms", "lint", str(path)], capsys)[0] == 0
    assert run(["kms", "lint", str(path), "--strict"], capsys)[0] == 1


def test_lint_unreadable_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["kms", "lint", str(tmp_path / "missing.json")], capsys)
    assert code == 2
    assert "cannot read" in err
