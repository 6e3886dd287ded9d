from __future__ import annotations

import subprocess
import sys

import nitroguard


def test_version_via_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nitroguard", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == f"nitroguard {nitroguard.__version__}"


def test_usage_error_exits_2() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nitroguard", "no-such-command"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 2
    assert "invalid choice" in out.stderr


def test_only_the_named_command_is_imported() -> None:
    """Start-up cost: `nitroguard scan ...` must not import the other commands."""
    code = (
        "import sys; from nitroguard._cli import build_parser; build_parser(['scan', 'x']);"
        "print(sorted(m for m in sys.modules if m.startswith('nitroguard._commands.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "['nitroguard._commands._common', 'nitroguard._commands.scan']"


def test_help_lists_every_command() -> None:
    from nitroguard._cli import build_parser
    from nitroguard._commands import COMMANDS

    text = build_parser().format_help()
    for name in COMMANDS:
        assert name in text


def test_closed_stdout_is_not_a_traceback() -> None:
    """`nitroguard ... | head` closes the pipe early: no BrokenPipeError traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nitroguard", "scan", __file__, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the first write
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err
