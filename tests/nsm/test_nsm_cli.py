"""`nitroguard nsm ...` as real subprocesses against a real `nitroguard nsm serve`."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from nsm_helpers import check_document

from nitroguard.nsm import SocketNsm, extend

PCR0 = bytes(range(48))


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NITROGUARD_NSM"}
    env.update(extra)
    return env


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nitroguard", "nsm", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env if env is not None else cli_env(),
        check=False,
    )


class Served:
    def __init__(self, proc: subprocess.Popen[str], sock: Path, state: Path) -> None:
        self.proc, self.sock, self.state = proc, sock, state
        self.spec = f"emulator:{sock}"


def start_server(tmp_path: Path, *extra: str) -> Served:
    sock, state = tmp_path / "nsm.sock", tmp_path / "state"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nitroguard",
            "nsm",
            "serve",
            "--socket",
            str(sock),
            "--state",
            str(state),
            "--init",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until ready (or EOF if it died)
    if line != f"listening on unix://{sock}\n":
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"server did not start: {line!r} {err}")
    return Served(proc, sock, state)


def stop(served: Served, sig: int = signal.SIGTERM) -> tuple[int, str]:
    served.proc.send_signal(sig)
    _, err = served.proc.communicate(timeout=20)
    return served.proc.returncode, err


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    srv = start_server(tmp_path, "--pcr", f"0={PCR0.hex()}", "--instance-id", "i-0123456789abcdef0")
    yield srv
    if srv.proc.poll() is None:
        stop(srv)


def test_cli_against_served_emulator(served: Served, tmp_path: Path) -> None:
    spec = served.spec
    out = run("--nsm", spec, "describe", "--json")
    assert out.returncode == 0, out.stderr
    described = json.loads(out.stdout)
    assert described["version"] == "1.0.0"
    assert described["locked_pcrs"] == list(range(16))
    assert described["module_id"].startswith("i-0123456789abcdef0-enc")

    text = run("--nsm", spec, "describe")
    assert "locked_pcrs: 0-15" in text.stdout

    out = run("--nsm", spec, "pcr", "0")
    assert out.stdout == f"PCR0 locked {PCR0.hex()}\n"
    out = run("--nsm", spec, "extend", "16", "0b00374863ff5c65")
    assert out.stdout.strip() == (
        "b33da05a0fdb71627c8c68fc4232281fc440edd6f0ac7467fa497bbb907db32d"
        "957b5fd393845fa02c264ad5ea233888"
    )
    assert run("--nsm", spec, "lock", "16").returncode == 0
    again = run("--nsm", spec, "lock", "16")
    assert again.returncode == 1
    assert "[read_only_index]" in again.stderr
    bad = run("--nsm", spec, "pcr", "40")
    assert bad.returncode == 1
    assert "[invalid_index]" in bad.stderr
    assert run("--nsm", spec, "lock-range", "18").returncode == 0
    pcr = json.loads(run("--nsm", spec, "pcr", "17", "--json").stdout)
    assert pcr == {"index": 17, "lock": True, "data": "00" * 48}
    random = run("--nsm", spec, "random", "300")
    assert len(bytes.fromhex(random.stdout.strip())) == 300

    # The environment variable selects the emulator too.
    env_out = run("describe", "--json", env=cli_env(NITROGUARD_NSM=spec))
    assert json.loads(env_out.stdout)["module_id"] == described["module_id"]

    root_file = tmp_path / "root.pem"
    exported = run("pki", "--state", str(served.state), "--export-root", str(root_file))
    assert exported.returncode == 0, exported.stderr
    assert "NOT AWS" in exported.stderr
    root = x509.load_pem_x509_certificate(root_file.read_bytes())

    doc_file = tmp_path / "doc.cbor"
    out = run(
        "--nsm",
        spec,
        "attest",
        "--nonce",
        "00" * 32,
        "--user-data",
        "cafe",
        "--public-key",
        "beef",
        "-o",
        str(doc_file),
    )
    assert out.returncode == 0, out.stderr
    payload = check_document(doc_file.read_bytes(), root, _now())
    assert payload["nonce"] == bytes(32)
    assert payload["user_data"] == b"\xca\xfe"
    assert payload["public_key"] == b"\xbe\xef"
    assert list(payload["pcrs"]) == list(range(18))
    assert payload["pcrs"][0] == PCR0
    assert payload["pcrs"][16] == extend(bytes(48), bytes.fromhex("0b00374863ff5c65"))

    js = json.loads(run("--nsm", spec, "attest", "--json").stdout)
    doc = base64.b64decode(js["document"])
    assert js["bytes"] == len(doc)
    assert check_document(doc, root, _now())["nonce"] is None
    hex_out = run("--nsm", spec, "attest")
    check_document(bytes.fromhex(hex_out.stdout.strip()), root, _now())

    code, err = stop(served)
    assert code == 0, err
    assert "emulator stopped" in err
    assert not served.sock.exists()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_exits_cleanly_on_signals(tmp_path: Path, sig: int) -> None:
    srv = start_server(tmp_path, "--debug-mode")
    with SocketNsm(srv.sock) as nsm:
        assert nsm.describe_pcr(0).data == bytes(48)
    code, err = stop(srv, sig)
    assert code == 0, err
    assert not srv.sock.exists()


def test_serve_survives_hostile_clients(served: Served) -> None:
    import socket
    import struct

    for payload in (b"\xff" * 10, struct.pack(">I", 1 << 30), struct.pack(">I", 9) + b"ab"):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(served.sock))
            s.sendall(payload)
    with SocketNsm(served.sock) as nsm:
        assert nsm.describe_nsm().max_pcrs == 32
    assert served.proc.poll() is None


def test_state_dir_root_is_stable_across_restarts(tmp_path: Path) -> None:
    first = start_server(tmp_path)
    with SocketNsm(first.sock) as nsm:
        doc1 = nsm.get_attestation()
    assert stop(first)[0] == 0
    second = start_server(tmp_path)
    with SocketNsm(second.sock) as nsm:
        doc2 = nsm.get_attestation()
    assert stop(second)[0] == 0
    root = x509.load_pem_x509_certificate((tmp_path / "state" / "root.pem").read_bytes())
    check_document(doc1, root, _now())
    check_document(doc2, root, _now())


def test_no_nsm_selected_fails_with_instructions(tmp_path: Path) -> None:
    if Path("/dev/nsm").exists():
        pytest.skip("this machine has a real NSM")
    out = run("describe")
    assert out.returncode == 1
    assert "nitroguard nsm serve --socket" in out.stderr
    assert "[nsm_unavailable]" in out.stderr


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--nsm", "bogus", "describe"], "NSM spec 'bogus'"),
        (["serve", "--socket", "S", "--pcr", "16=" + "00" * 48], "boot PCR index"),
        (["serve", "--socket", "S", "--pcr", "0=zz"], "not valid hex"),
        (["serve", "--socket", "S", "--pcr", "0"], "N=HEX"),
        (["serve", "--socket", "S", "--pcr", "0=00"], "must be 48 bytes"),
        (["serve", "--socket", "S", "--instance-id", "host-1"], "instance id"),
        (["extend", "16", "xyz"], "not valid hex"),
        (["pcr", "-1"], "must be in"),
        (["random", "abc"], "not an integer"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], match: str) -> None:
    env = cli_env(
        NITROGUARD_NSM="emulator:" + str(tmp_path / "none.sock"),
        XDG_STATE_HOME=str(tmp_path / "xdg"),
    )
    args = [a.replace("S", str(tmp_path / "s.sock")) if a == "S" else a for a in args]
    out = run(*args, env=env)
    assert out.returncode == 2, out.stderr
    assert match in out.stderr


# ------------------------------------------------ the same CLI, in-process (coverage)


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from nitroguard._cli import main

    with pytest.raises(SystemExit) as info:
        main(["nsm", *args])
    out, err = capsys.readouterr()
    code = info.value.code
    assert isinstance(code, int)
    return code, out, err


def test_cli_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    from nitroguard.nsm import NsmServer
    from nitroguard.testing import ephemeral_nsm

    emulator = ephemeral_nsm()
    sock = tmp_path / "s.sock"
    with NsmServer(emulator, sock):
        spec = ["--nsm", f"emulator:{sock}"]
        assert _main(capsys, *spec, "describe")[1].startswith("version:     1.0.0")
        assert json.loads(_main(capsys, *spec, "describe", "--json")[1])["max_pcrs"] == 32
        assert _main(capsys, *spec, "pcr", "16")[1] == f"PCR16 unlocked {'00' * 48}\n"
        value = extend(bytes(48), b"\x01")
        assert _main(capsys, *spec, "extend", "16", "01")[1] == value.hex() + "\n"
        js = json.loads(_main(capsys, *spec, "extend", "16", "01", "--json")[1])
        assert js["data"] == extend(value, b"\x01").hex()
        assert _main(capsys, *spec, "lock", "16")[2] == "PCR16 locked\n"
        code, _, err = _main(capsys, *spec, "lock", "16")
        assert code == 1
        assert "[read_only_index]" in err
        assert _main(capsys, *spec, "lock-range", "0")[2] == "nothing to lock\n"
        assert _main(capsys, *spec, "lock-range", "20")[2] == "PCRs 0-19 locked\n"
        assert "locked_pcrs: 0-19" in _main(capsys, *spec, "describe")[1]
        assert len(bytes.fromhex(_main(capsys, *spec, "random", "40")[1].strip())) == 40
        assert len(json.loads(_main(capsys, *spec, "random", "3", "--json")[1])["random"]) == 6
        out_file = tmp_path / "d.cbor"
        code, out, err = _main(capsys, *spec, "attest", "--nonce", "aa" * 16, "-o", str(out_file))
        assert code == 0
        assert f"to {out_file}" in err
        payload = check_document(out_file.read_bytes(), emulator.pki.root_certificate, _now())
        assert payload["nonce"] == b"\xaa" * 16
        assert list(payload["pcrs"]) == list(range(20))
        code, _, err = _main(capsys, *spec, "attest", "-o", str(tmp_path / "no" / "d"))
        assert code == 2  # an unwritable output is a usage error, for every command
        assert "cannot write" in err
        assert "[unwritable_output]" in err
    code, _, err = _main(capsys, *spec, "describe")
    assert code == 1
    assert "[nsm_unavailable]" in err

    state = tmp_path / "state"
    code, out, err = _main(capsys, "pki", "--state", str(state), "--export-root", "-")
    assert code == 2  # a typo must not mint a new root
    assert "--init" in err
    assert not state.exists()
    code, out, err = _main(capsys, "pki", "--state", str(state), "--init", "--export-root", "-")
    assert code == 0
    assert out.startswith("-----BEGIN CERTIFICATE-----")
    assert "NOT AWS" in err
    code, _, err = _main(capsys, "pki", "--state", str(state), "--export-root", str(tmp_path))
    assert code == 2
    assert "[unwritable_output]" in err

    # serve, stopped by a SIGTERM delivered to this process.
    sock2 = tmp_path / "t.sock"
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    code, out, err = _main(
        capsys, "serve", "--socket", str(sock2), "--state", str(state), "--pcr", f"1={'11' * 48}"
    )
    timer.join()
    assert code == 0
    assert out == f"listening on unix://{sock2}\n"
    assert "emulator stopped" in err
    assert not sock2.exists()
    code, _, err = _main(capsys, "serve", "--socket", str(sock2), "--state", str(tmp_path / "typo"))
    assert code == 2  # the same rule as pki: no silent new root
    assert "--init" in err
    assert not (tmp_path / "typo").exists()
    code, _, err = _main(capsys, "serve", "--socket", str(sock2), "--max-connections", "0")
    assert code == 2
    assert "--max-connections" in err
    code, _, err = _main(capsys, "serve", "--socket", "s", "--pcr", "1=00", "--pcr", "1=00")
    assert code == 2
    assert "given twice" in err
    code, _, err = _main(capsys, "serve", "--socket", "s", "--pcr", "x=00")
    assert code == 2
    assert "bad index" in err
