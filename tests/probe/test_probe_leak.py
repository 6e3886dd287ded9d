"""`nitroguard probe leak` (SC-1, SC-3) against the demo services, real sockets and processes.

Margins: the leaky service runs with 250 us per matching byte, so a right
16-byte guess costs 4 ms more than a wrong first byte, far above the loopback
round trip and the scheduler's time slices even with the 2 cores saturated by
other work; with 1200 samples |t| lands in the tens or hundreds (150-230 on an
idle box) against a threshold of 4.5. The constant-time service has no
class-dependent work, so its |t| is noise (|t| > 4.5 has probability ~1e-5 per
crop under the null hypothesis).
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from collections.abc import Callable

import pytest

from nitroguard._cli import main
from nitroguard.errors import ProbeError, Reason
from nitroguard.probe import LeakConfig, run_leak
from nitroguard.probe._leak import MAX_ERRORS, analyse, collect
from nitroguard.transport import BlockingClient, parse_address

Spawn = Callable[..., tuple[subprocess.Popen[str], str]]

SECRET = "00112233445566778899aabbccddeeff"
WRONG_FIRST = "ff112233445566778899aabbccddeeff"  # no byte matches: 0 delays
WRONG_LAST = "00112233445566778899aabbccddee00"  # 15 bytes match: 15 delays, still "denied"
SAMPLES = "1200"
LEAK_DELAY_US = "250"
_SHORT = ("--samples", "400", "--warmup", "20", "--timeout", "5", "--duration", "60")


def probe_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nitroguard", "probe", *args],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )


def _start(spawn: Spawn, service: str, kind: str, unix_path: str) -> str:
    where = "tcp://127.0.0.1:0" if kind == "tcp" else f"unix://{unix_path}"
    extra = ["--delay-us", LEAK_DELAY_US] if service == "leaky-compare" else []
    _, address = spawn(
        "-m", "nitroguard", "serve", service, "--listen", where, "--secret", SECRET, *extra
    )
    return address


def _leak_json(address: str, a: str, b: str, *extra: str) -> tuple[int, dict[str, object]]:
    result = probe_cli(
        "leak", address, "--class-a", a, "--class-b", b, "--samples", SAMPLES, "--json", *extra
    )
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def _checks(report: dict[str, object]) -> dict[str, dict[str, object]]:
    checks = report["checks"]
    assert isinstance(checks, list)
    return {c["id"]: c for c in checks}


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_leaky_compare_fails_timing_and_length(
    spawn_process: Spawn, short_unix_path: str, kind: str
) -> None:
    address = _start(spawn_process, "leaky-compare", kind, short_unix_path)
    code, report = _leak_json(address, SECRET, WRONG_FIRST, "--seed", "1")
    assert code == 1
    assert set(report) == {
        "target",
        "checks",
        "passed",
        "samples",
        "errors",
        "elapsed_s",
        "notes",
    }
    assert report["target"] == address
    assert report["passed"] is False
    assert report["errors"] == {"a": 0, "b": 0}
    samples = report["samples"]
    assert isinstance(samples, dict)
    assert samples["a"] + samples["b"] == int(SAMPLES)
    sc1, sc3 = _checks(report)["SC-1"], _checks(report)["SC-3"]
    assert sc1["passed"] is False
    t = sc1["t"]
    assert t == "inf" or (isinstance(t, float) and t > 10), sc1  # A (right guess) is slower
    assert isinstance(sc1["mean_us_a"], float)
    assert isinstance(sc1["mean_us_b"], float)
    uncropped = sc1["crops"][0]  # type: ignore[index]
    assert uncropped["percentile"] == 100.0
    assert uncropped["mean_us_a"] - uncropped["mean_us_b"] > 1000, sc1  # 4 ms expected
    assert "class A is slower" in str(sc1["detail"])
    assert len(sc1["crops"]) >= 2  # type: ignore[arg-type]
    assert sc3["passed"] is False
    assert sc3["lengths"] == {"a": {"2": samples["a"]}, "b": {"6": samples["b"]}}
    assert "reply lengths differ" in str(sc3["detail"])


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_constant_compare_passes(spawn_process: Spawn, short_unix_path: str, kind: str) -> None:
    address = _start(spawn_process, "constant-compare", kind, short_unix_path)
    code, report = _leak_json(address, SECRET, WRONG_FIRST)
    checks = _checks(report)
    assert checks["SC-1"]["passed"] is True, checks["SC-1"]["detail"]
    t = checks["SC-1"]["t"]
    assert isinstance(t, float)
    assert abs(t) <= 4.5
    assert checks["SC-3"]["passed"] is True
    samples = report["samples"]
    assert isinstance(samples, dict)
    assert checks["SC-3"]["lengths"] == {"a": {"16": samples["a"]}, "b": {"16": samples["b"]}}
    assert report["passed"] is True
    assert code == 0


def test_timing_only_leak_is_caught_in_process(spawn_process: Spawn, short_unix_path: str) -> None:
    # Both guesses are wrong ("denied", 6 bytes): only the time differs (15 delays vs 0).
    address = _start(spawn_process, "leaky-compare", "unix", short_unix_path)
    config = LeakConfig(
        class_a=bytes.fromhex(WRONG_LAST),
        class_b=bytes.fromhex(WRONG_FIRST),
        samples=int(SAMPLES),
        seed=7,
    )
    report = run_leak(address, config)
    sc1, sc3 = report.checks
    assert not sc1.passed
    assert sc1.evidence["t"] == "inf" or sc1.evidence["t"] > 10, sc1.detail
    uncropped = sc1.evidence["crops"][0]
    assert uncropped["mean_us_a"] - uncropped["mean_us_b"] > 1000  # 15 x 250 us expected
    assert sc3.passed, sc3.detail
    assert sc3.detail == "every reply of both classes is 6 bytes"
    assert not report.passed
    assert report.samples[0] + report.samples[1] == int(SAMPLES)


def test_length_only_difference_on_echo(spawn_process: Spawn) -> None:
    # The echo service returns each request: 2 vs 4 bytes. SC-3 must flag it, and the
    # report must say the requests themselves differ in length.
    _, address = spawn_process("-m", "nitroguard", "serve", "echo", "--listen", "tcp://127.0.0.1:0")
    report = run_leak(address, LeakConfig(class_a=b"aa", class_b=b"aaaa", samples=200, seed=3))
    sc3 = report.checks[1]
    assert not sc3.passed
    assert set(sc3.evidence["lengths"]["a"]) == {"2"}
    assert set(sc3.evidence["lengths"]["b"]) == {"4"}
    assert any("differ in length" in n for n in report.notes)


def test_cli_in_process_text_output(
    spawn_process: Spawn, capsys: pytest.CaptureFixture[str]
) -> None:
    _, address = spawn_process(
        "-m", "nitroguard", "serve", "constant-compare", "--listen", "tcp://127.0.0.1:0",
        "--secret", SECRET,
    )  # fmt: skip
    with pytest.raises(SystemExit) as info:
        main(["probe", "leak", address, "--class-a", SECRET, "--class-b", WRONG_FIRST, *_SHORT])
    out = capsys.readouterr().out
    assert "PASS SC-3  every reply of both classes is 16 bytes" in out
    assert out.splitlines()[0].startswith("PASS SC-1  max |t| = ")
    assert f"{address}: PASSED; " in out
    assert info.value.code == 0


def test_no_server_gives_errors_not_a_hang(short_unix_path: str) -> None:
    # Nothing listens: every request fails, the run stops after MAX_ERRORS and both
    # checks fail (inconclusive / "none" lengths).
    address = parse_address(f"unix://{short_unix_path}")
    config = LeakConfig(class_a=b"a", class_b=b"b", samples=1000, warmup=0, seed=5)
    samples = collect(address, config, rng=random.Random(5))
    assert sum(samples.errors) == MAX_ERRORS
    assert f"stopped after {MAX_ERRORS} failed requests" == samples.stopped
    # No sample is never a pass (issue 14: SC-3 used to pass on "none" lengths).
    report = analyse(str(address), config, samples)
    assert not report.passed
    assert [c.passed for c in report.checks] == [False, False]
    assert "inconclusive" in report.checks[0].detail
    assert report.checks[1].detail.startswith("inconclusive: 0 and 0 replies")
    assert report.checks[1].evidence["lengths"]["a"].keys() == {"none"}
    # run_leak itself refuses first: one legitimate request gets no answer.
    with pytest.raises(ProbeError, match="cannot reach") as info:
        run_leak(f"unix://{short_unix_path}", config)
    assert info.value.reason is Reason.TARGET_UNREACHABLE


def test_duration_bounds_the_run(spawn_process: Spawn) -> None:
    _, address = spawn_process(
        "-m", "nitroguard", "serve", "leaky-compare", "--listen", "tcp://127.0.0.1:0",
        "--secret", SECRET, "--delay-us", "2000",
    )  # fmt: skip
    # Each right guess takes 16 x 2 ms: 100000 samples cannot fit in 1 s.
    config = LeakConfig(
        class_a=bytes.fromhex(SECRET), class_b=bytes.fromhex(WRONG_FIRST),
        samples=100_000, duration=1.0, warmup=0,
    )  # fmt: skip
    report = run_leak(address, config)
    assert report.elapsed < 5
    assert any("duration of 1 s reached" in n for n in report.notes)
    assert 0 < sum(report.samples) < 100_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["leak"], "probe leak needs an ADDRESS"),
        (["leak", "tcp://127.0.0.1:1", "--class-a", "00"], "needs --class-a HEX and --class-b"),
        (["leak", "tcp://127.0.0.1:1", "--class-a", "00", "--class-b", "00"], "must differ"),
        (["leak", "tcp://127.0.0.1:1", "--class-a", "zz", "--class-b", "00"], "not valid hex"),
        (
            ["leak", "tcp://127.0.0.1:1", "--class-a", "00", "--class-b", "01", "--samples", "5"],
            "samples must be",
        ),
        (
            [
                "leak",
                "tcp://127.0.0.1:1",
                "--class-a",
                "00",
                "--class-b",
                "01",
                "--attacks",
                "idle",
            ],
            "--attacks: not an option of 'nitroguard probe leak'",
        ),
        (
            ["leak", "tcp://10.255.255.1:5000", "--class-a", "00", "--class-b", "01"],
            "remote_target_refused",
        ),
        (["tcp://127.0.0.1:1", "--class-a", "00"], "--class-a: only for 'nitroguard probe leak'"),
        (["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"], "unexpected argument"),
    ],
)
def test_probe_leak_usage_errors(args: list[str], message: str) -> None:
    result = probe_cli(*args)
    assert result.returncode == 2, result
    assert message in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["leaky-compare"], "needs --secret HEX"),
        (["constant-compare", "--secret", ""], "must not be empty"),
        (["echo", "--secret", "00"], "only for leaky-compare and constant-compare"),
    ],
)
def test_serve_compare_usage_errors(args: list[str], message: str) -> None:
    service, *rest = args
    result = subprocess.run(
        [sys.executable, "-m", "nitroguard", "serve", service, "--listen", "tcp://127.0.0.1:0",
         *rest],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr


def test_compare_handlers_in_process_replies() -> None:
    # The demo handlers on a real in-process server: the reply contents and lengths.
    from nitroguard._commands._demo.compare import (
        REPLY_SIZE,
        constant_compare_handler,
        leaky_compare_handler,
    )
    from nitroguard.transport import ServerLimits, serve

    secret = bytes.fromhex(SECRET)

    async def replies(handler: object) -> list[bytes]:
        server = await serve(handler, "tcp://127.0.0.1:0", ServerLimits())  # type: ignore[arg-type]
        async with server:
            return await asyncio.to_thread(_ask, str(server.address))

    def _ask(address: str) -> list[bytes]:
        with BlockingClient(address, timeout=5) as client:
            return [client.request(g) for g in (secret, bytes.fromhex(WRONG_LAST), b"")]

    assert asyncio.run(replies(leaky_compare_handler(secret, 1e-6))) == [
        b"ok",
        b"denied",
        b"denied",
    ]
    ct = asyncio.run(replies(constant_compare_handler(secret)))
    assert [len(r) for r in ct] == [REPLY_SIZE] * 3
    assert ct[0].rstrip(b"\0") == b"ok"
    assert ct[1] == ct[2] == b"denied".ljust(REPLY_SIZE, b"\0")
