from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nitroguard.errors import ConfigError, Reason
from nitroguard.findings import Status
from nitroguard.scan import scan_paths, scan_source


def ids(source: str) -> list[tuple[str, Status]]:
    return [(f.id, f.status) for f in scan_source(textwrap.dedent(source), "app.py")]


class TestRecvLoops:
    def test_spinning_loop_fails(self) -> None:
        found = ids(
            """
            def read_exact(sock, n):
                buf = b""
                while len(buf) < n:
                    chunk = sock.recv(n - len(buf))
                    buf += chunk
                return buf
            """
        )
        assert found == [("VS-3", Status.FAIL)]

    def test_augmented_recv_fails(self) -> None:
        found = ids(
            """
            def read_exact(sock, n):
                buf = b""
                while len(buf) < n:
                    buf += sock.recv(n - len(buf))
                return buf
            """
        )
        assert found == [("VS-3", Status.FAIL)]

    @pytest.mark.parametrize(
        "check",
        [
            "if not chunk:\n            raise EOFError",
            "if chunk == b'':\n            break",
            "if len(chunk) == 0:\n            return None",
        ],
    )
    def test_loop_with_eof_exit_passes(self, check: str) -> None:
        source = (
            "def read_exact(sock, n):\n    buf = b''\n    while len(buf) < n:\n"
            "        chunk = sock.recv(n - len(buf))\n"
            f"        {check}\n"
            "        buf += chunk\n    return buf\n"
        )
        assert ids(source) == []

    def test_sans_io_receive_data_counts_as_eof_handling(self) -> None:
        found = ids(
            """
            while True:
                event = conn.next_event()
                if event is not NEED_DATA:
                    return event
                chunk = sock.recv(4096)
                conn.receive_data(chunk)
            """
        )
        assert found == []

    def test_walrus_in_condition_passes(self) -> None:
        assert ids("while (data := conn.recv(4096)):\n    handle(data)\n") == []

    def test_recv_into_count(self) -> None:
        found = ids(
            """
            while view:
                n = sock.recv_into(view)
                view = view[n:]
            """
        )
        assert found == [("VS-3", Status.FAIL)]


class TestOtherRules:
    def test_vsock_dgram(self) -> None:
        assert ids("import socket\ns = socket.socket(socket.AF_VSOCK, socket.SOCK_DGRAM)\n") == [
            ("VS-6", Status.WARN)
        ]
        assert ids("s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)\n") == []
        assert ids("s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n") == []

    def test_secret_comparison(self) -> None:
        assert ids("ok = expected_mac == received\n") == [("SC-1", Status.WARN)]
        assert ids("ok = req.headers['token'] != stored\n") == [("SC-1", Status.WARN)]
        assert ids("ok = hmac.compare_digest(expected_mac, received)\n") == []
        assert ids("ok = signature is None or signature == None\n") == []
        assert ids("ok = len(tag) == 16\n") == []
        assert ids("ok = stage == b'x'\n") == []  # 'stage' is not 'tag'
        assert ids("ok = auth_tag == b'x'\n") == [("SC-1", Status.WARN)]
        assert ids("ok = digest != 'SHA384'\n") == []  # an algorithm name is public
        assert ids("ok = signature_algorithm_oid == OID\n") == []
        assert ids("ok = s.type == SectionType.SIGNATURE\n") == []

    def test_randomness(self) -> None:
        assert ids("key = open('/dev/urandom', 'rb').read(32)\n") == [("RNG-4", Status.WARN)]
        assert ids("b = os.getrandom(32, os.GRND_INSECURE)\n") == [("RNG-4", Status.WARN)]
        assert ids("b = os.getrandom(32)\n") == []

    def test_clock_setting(self) -> None:
        assert ids("time.clock_settime(time.CLOCK_REALTIME, t)\n") == [("TIME-4", Status.WARN)]

    @pytest.mark.parametrize(
        "expr",
        [
            "time.localtime()",
            "time.mktime(t)",
            "datetime.datetime.now()",
            "datetime.utcnow()",
            "datetime.fromtimestamp(ts)",
            "dt.datetime.utcfromtimestamp(ts)",
        ],
    )
    def test_local_time(self, expr: str) -> None:
        assert ids(f"x = {expr}\n") == [("TIME-5", Status.WARN)]

    @pytest.mark.parametrize(
        "expr",
        [
            "datetime.now(UTC)",
            "datetime.now(tz=UTC)",
            "datetime.fromtimestamp(ts, UTC)",
            "datetime.fromtimestamp(ts, tz=UTC)",
            "time.time()",
            "time.monotonic()",
        ],
    )
    def test_aware_time_passes(self, expr: str) -> None:
        assert ids(f"x = {expr}\n") == []

    def test_caller_supplied_attestation_data(self) -> None:
        found = ids(
            """
            def attest(nsm, request):
                return nsm.get_attestation(nonce=request.nonce, public_key=request.key)
            """
        )
        assert found == [("ATT-6", Status.WARN)]
        assert (
            ids(
                """
            def attest(nsm, request):
                return nsm.get_attestation(nonce=request.nonce, public_key=OUR_KEY)
            """
            )
            == []
        )

    def test_evidence_names_file_line_and_code(self) -> None:
        (finding,) = scan_source("x = 1\nok = mac == other\n", "svc.py")
        assert finding.evidence.startswith("svc.py:2: ")
        assert finding.evidence.endswith("| ok = mac == other")
        assert "compare_digest" in finding.remediation

    def test_unparsable_source_is_skipped(self) -> None:
        (finding,) = scan_source("def (:\n", "bad.py")
        assert finding.status is Status.SKIP
        assert "bad.py:1" in finding.evidence


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_fuzz_never_raises(source: str) -> None:
    for finding in scan_source(source):
        assert finding.status in {Status.WARN, Status.FAIL, Status.SKIP}


class TestPaths:
    def test_missing_path(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="no such file") as info:
            scan_paths([tmp_path / "nope"])
        assert info.value.reason is Reason.INVALID_ARGUMENT

    def test_directory_recursion_skips_hidden(self, tmp_path: Path) -> None:
        (tmp_path / "pkg").mkdir()
        (tmp_path / "pkg" / "a.py").write_text("ok = token == x\n")
        (tmp_path / ".venv").mkdir()
        (tmp_path / ".venv" / "b.py").write_text("ok = token == x\n")
        found = scan_paths([tmp_path])
        assert [f.id for f in found] == ["SC-1"]
        assert "pkg/a.py" in found[0].evidence

    def test_our_own_source_has_no_failures(self) -> None:
        src = Path(__file__).resolve().parents[2] / "src" / "nitroguard"
        failures = [f for f in scan_paths([src]) if f.status is Status.FAIL]
        assert failures == []


@pytest.fixture
def scan_cli(run_cli: Any) -> Any:
    def run(*args: str) -> Any:
        return run_cli("scan", *args)

    return run


class TestCli:
    def test_json_and_exit_codes(self, tmp_path: Path, scan_cli: Any) -> None:
        bad = tmp_path / "bad.py"
        bad.write_text("while True:\n    c = s.recv(10)\n    out.append(c)\n")
        out = scan_cli(str(bad), "--json")
        assert out.returncode == 1
        report = json.loads(out.stdout)
        assert report["summary"]["fail"] == 1
        assert report["findings"][0]["id"] == "VS-3"
        warn = tmp_path / "warn.py"
        warn.write_text("ok = mac == x\n")
        assert scan_cli(str(warn)).returncode == 0
        strict = scan_cli(str(warn), "--strict")
        assert strict.returncode == 1
        assert "SC-1" in strict.stdout

    def test_missing_path_is_usage_error(self, tmp_path: Path, scan_cli: Any) -> None:
        out = scan_cli(str(tmp_path / "missing.py"))
        assert out.returncode == 2
        assert "no such file" in out.stderr


def test_catches_the_naive_example_server() -> None:
    """examples/naive_server.py carries the aws-nitro-enclaves-cli PR 609 recv-loop bug."""
    example = Path(__file__).resolve().parents[2] / "examples" / "naive_server.py"
    found = [(f.id, f.status) for f in scan_paths([example])]
    assert ("VS-3", Status.FAIL) in found
