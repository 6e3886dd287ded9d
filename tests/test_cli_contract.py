"""One CLI contract for every command (issue 14, section 4; README "Exit codes").

A table of bad inputs, one or more per command, each with its documented exit
code, reason and message. Every row runs twice in process (`run_cli`): as text,
where stderr gets one line and no traceback, and with ``--json``, where stdout
holds exactly one JSON object of the one error shape (docs/cli.md).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from nitroguard._commands import COMMANDS
from nitroguard._commands._common import ExitCode, error_json, write_output
from nitroguard.attestation.policy import MaxAge
from nitroguard.eif import build_eif
from nitroguard.errors import ConfigError, Error, Reason

USAGE = ExitCode.USAGE
FAILED = ExitCode.FAILED


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """Paths the bad inputs refer to: empty, unwritable, FIFO, not-PEM, a small EIF."""
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"console=ttyS0 \xff\xfe")
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"\x00" * 4096)
    eif = tmp_path / "small.eif"
    build_eif(eif, kernel=kernel, cmdline="console=ttyS0", ramdisks=[kernel])
    return {
        "empty": str(empty),
        "fifo": str(fifo),
        "not_pem": str(not_pem),
        "cmdline": str(cmdline),
        "kernel": str(kernel),
        "eif": str(eif),
        "no_dir": str(tmp_path / "no" / "such" / "dir" / "out"),
        "state": str(tmp_path / "typo-state"),
        "tmp": str(tmp_path),
    }


# (id, argv with {placeholders}, exit code, reason, a phrase the message must contain)
BAD_INPUTS: list[tuple[str, list[str], ExitCode, str, str]] = [
    ("unknown-command", ["no-such-command"], USAGE, "invalid_argument", "invalid choice"),
    ("attest-empty", ["attest", "inspect", "{empty}"], USAGE, "unreadable_input", "empty input"),
    ("attest-missing", ["attest", "verify", "{no_dir}"], USAGE, "unreadable_input", "cannot read"),
    (
        "attest-max-age-inf",
        ["attest", "verify", "{empty}", "--max-age", "inf"],
        USAGE,
        "invalid_argument",
        "max age",
    ),
    (
        "attest-max-age-1e306",
        ["attest", "verify", "{empty}", "--max-age", "1e306"],
        USAGE,
        "invalid_argument",
        "max age",
    ),
    (
        "attest-root-not-pem",
        ["attest", "verify", "{empty}", "--root", "{not_pem}"],
        USAGE,
        "invalid_argument",
        "--root {not_pem}",
    ),
    (
        "attest-unknown-option",
        ["attest", "inspect", "x", "--bogus"],
        USAGE,
        "invalid_argument",
        "--bogus",
    ),
    ("nsm-random-huge", ["nsm", "random", "100000000"], USAGE, "invalid_argument", "at most"),
    (
        "nsm-pki-typo",
        ["nsm", "pki", "--state", "{state}", "--export-root", "-"],
        USAGE,
        "invalid_argument",
        "--init",
    ),
    (
        "nsm-pki-unwritable",
        ["nsm", "pki", "--state", "{state}", "--init", "--export-root", "{no_dir}"],
        USAGE,
        "unwritable_output",
        "cannot write {no_dir}",
    ),
    ("eif-empty", ["eif", "describe", "{empty}"], USAGE, "unreadable_input", "empty input"),
    ("eif-pcr-empty", ["eif", "pcr", "{empty}"], USAGE, "unreadable_input", "empty input"),
    (
        "eif-allow-bogus",
        ["eif", "describe", "{eif}", "--allow", "BOGUS"],
        USAGE,
        "invalid_argument",
        "BOGUS",
    ),
    (
        "eif-cmdline-not-utf8",
        [
            "eif",
            "build",
            "--kernel",
            "{kernel}",
            "--cmdline",
            "@{cmdline}",
            "--ramdisk",
            "{kernel}",
            "-o",
            "{tmp}/x.eif",
        ],
        USAGE,
        "invalid_argument",
        "not valid UTF-8",
    ),
    (
        "eif-build-unwritable",
        [
            "eif",
            "build",
            "--kernel",
            "{kernel}",
            "--cmdline",
            "console=ttyS0",
            "--ramdisk",
            "{kernel}",
            "-o",
            "{no_dir}",
        ],
        USAGE,
        "unwritable_output",
        "cannot write {no_dir}",
    ),
    ("scan-fifo", ["scan", "{fifo}"], USAGE, "invalid_argument", "not a regular file"),
    ("scan-missing", ["scan", "{no_dir}"], USAGE, "invalid_argument", "no such file"),
    ("audit-not-dir", ["audit", "--root", "{empty}"], USAGE, "invalid_argument", "not a directory"),
    ("audit-unknown-option", ["audit", "--bogus"], USAGE, "invalid_argument", "--bogus"),
    (
        "probe-unknown-attack",
        ["probe", "tcp://127.0.0.1:9", "--attacks", "nope"],
        USAGE,
        "invalid_argument",
        "unknown attack",
    ),
    (
        "serve-delay-us",
        [
            "serve",
            "leaky-compare",
            "--listen",
            "tcp://127.0.0.1:0",
            "--secret",
            "00",
            "--delay-us",
            "-5",
        ],
        USAGE,
        "invalid_argument",
        "microseconds",
    ),
    ("proxy-missing", ["proxy"], USAGE, "invalid_argument", "required"),
    ("demo-unknown-option", ["demo", "--bogus"], USAGE, "invalid_argument", "--bogus"),
    ("kms-inspect-empty", ["kms", "inspect", "{empty}"], USAGE, "unreadable_input", "empty input"),
    (
        "kms-open-key-not-pem",
        ["kms", "open", "{empty}", "--key", "{not_pem}"],
        USAGE,
        "invalid_argument",
        "PEM private key",
    ),
    (
        "kms-policy-no-eif",
        ["kms", "policy", "--principal", "arn:aws:iam::1:role/x", "--account", "1"],
        USAGE,
        "invalid_argument",
        "--eif",
    ),
    (
        "eif-verify-expect-not-json",
        ["eif", "verify", "{eif}", "--expect", "{not_pem}"],
        USAGE,
        "invalid_argument",
        "not JSON",
    ),
    (
        "health-no-pcr",
        ["health", "tcp://127.0.0.1:9", "--channel"],
        USAGE,
        "invalid_argument",
        "--pcr",
    ),
]


#: Long-running services print no result object, so they take no --json.
NO_JSON = {"serve-delay-us", "proxy-missing"}


def _fill(argv: list[str], files: dict[str, str]) -> list[str]:
    return [a.format(**files) for a in argv]


@pytest.mark.parametrize(
    ("argv", "code", "reason", "phrase"),
    [pytest.param(*row[1:], id=row[0]) for row in BAD_INPUTS],
)
def test_bad_input_has_its_documented_code_and_no_traceback(
    run_cli: Any,
    files: dict[str, str],
    request: pytest.FixtureRequest,
    argv: list[str],
    code: int,
    reason: str,
    phrase: str,
) -> None:
    args = _fill(argv, files)
    phrase = phrase.format(**files)
    text = run_cli(*args)
    assert text.code == code, text.err
    assert phrase in text.err
    assert "internal error" not in text.err
    assert text.out == ""
    if request.node.callspec.id in NO_JSON:
        return
    as_json = run_cli(*args, "--json")
    assert as_json.code == code
    body = as_json.json()  # exactly one JSON object on stdout
    assert list(body) == ["error"]
    assert set(body["error"]) == {"type", "reason", "message", "exit_code"}
    assert body["error"]["reason"] == reason
    assert body["error"]["exit_code"] == code
    assert phrase in body["error"]["message"]


def test_every_command_is_in_the_table() -> None:

    covered = {row[1][0] for row in BAD_INPUTS}
    assert set(COMMANDS) <= covered


def test_internal_error_is_one_line_naming_the_type(
    run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nitroguard._commands.scan as scan_cmd

    def boom(paths: object) -> list[object]:
        raise KeyError("surprise")

    monkeypatch.setattr(scan_cmd, "scan_paths", boom)
    res = run_cli("scan", ".")
    assert res.code == ExitCode.INTERNAL == 1
    assert res.err.strip().splitlines() == [
        "nitroguard: internal error: KeyError: 'surprise' (a bug; -vv shows the traceback)"
    ]
    body = run_cli("scan", ".", "--json").json()
    assert body == error_json(
        code=ExitCode.INTERNAL,
        reason="internal_error",
        message="KeyError: 'surprise'",
        error_type="KeyError",
    )


def test_unknown_option_prints_the_subcommands_usage(run_cli: Any) -> None:
    res = run_cli("nsm", "random", "3", "--bogus")
    assert res.code == USAGE
    assert res.err.startswith("usage: nitroguard nsm random")


def test_verbose_works_after_the_command(run_cli: Any, tmp_path: Path) -> None:
    from nitroguard._cli import build_parser

    def verbosity(*argv: str) -> int:
        args = build_parser(list(argv)).parse_args(list(argv))
        return int(args.verbose)

    assert verbosity("scan", "x") == 0
    assert verbosity("-v", "scan", "x") == 1
    assert verbosity("scan", "x", "-v") == 1
    assert verbosity("scan", "x", "-vv") == 2
    assert verbosity("nsm", "random", "3", "-v") == 1
    src = tmp_path / "a.py"
    src.write_text("x = 1\n")
    assert run_cli("scan", str(src), "-v").code == 0


def test_scan_json_findings_have_file_and_line(run_cli: Any, tmp_path: Path) -> None:
    src = tmp_path / "app.py"
    src.write_text("import hmac\n\n\ndef ok(mac, expected):\n    return mac == expected\n")
    res = run_cli("scan", str(src), "--json")
    findings = res.json()["findings"]
    assert [(f["id"], f["line"]) for f in findings] == [("SC-1", 5)]
    assert all(f["file"] == str(src) for f in findings)
    assert all(isinstance(f["line"], int) and f["line"] >= 1 for f in findings)


def test_max_age_rejects_infinite_and_huge_values() -> None:
    for bad in (float("inf"), float("nan"), 1e306, 0.0, -1.0):
        with pytest.raises(ConfigError):
            MaxAge(bad)
    assert MaxAge(300).max_age_ms == 300_000


def test_outputs_honour_the_umask(tmp_path: Path, files: dict[str, str], run_cli: Any) -> None:
    old = os.umask(0o022)
    try:
        out = tmp_path / "built.eif"
        res = run_cli(
            "eif", "build", "--kernel", files["kernel"], "--cmdline", "console=ttyS0",
            "--ramdisk", files["kernel"], "-o", str(out),
        )  # fmt: skip
        assert res.code == 0, res.err
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        write_output(str(tmp_path / "w"), b"x")
        assert stat.S_IMODE((tmp_path / "w").stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_write_output_error_is_unwritable_output(tmp_path: Path) -> None:
    with pytest.raises(Error) as info:
        write_output(str(tmp_path / "no" / "file"), b"x")
    assert info.value.reason is Reason.UNWRITABLE_OUTPUT
    assert not list(tmp_path.iterdir())


def test_attest_inspect_warns_once_and_not_for_undecodable_input(
    run_cli: Any, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.cbor"
    bad.write_bytes(b"\x84\x01")
    res = run_cli("attest", "inspect", str(bad))
    assert res.code == FAILED
    assert "UNVERIFIED" not in res.err
    assert "UNVERIFIED" not in res.out


def test_eif_progress_only_for_large_inputs_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nitroguard._commands.eif import _progress

    big = tmp_path / "big"
    with big.open("wb") as fh:
        fh.truncate(40 * 1024 * 1024)  # sparse: no 40 MiB written
    small = tmp_path / "small"
    small.write_bytes(b"x")
    _progress("eif build out.eif", [str(big)], tty=True)
    assert capsys.readouterr().err == "eif build out.eif: 40 MiB to read and hash...\n"
    _progress("eif build out.eif", [str(small)], tty=True)
    _progress("eif build out.eif", [str(big)], tty=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "command", ["attest", "nsm", "serve", "proxy", "probe", "audit", "eif", "scan", "demo"]
)
def test_real_entry_point_smoke(command: str) -> None:
    """One subprocess per command: the installed entry point starts and parses."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "nitroguard", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: nitroguard {command}")
    bad = subprocess.run(
        [sys.executable, "-m", "nitroguard", command, "--no-such-option", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert json.loads(bad.stdout)["error"]["exit_code"] == 2
