"""`nitroguard health`: attested checks, readiness window, the HTTP endpoint, the CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fleet_helpers import GOOD_PCRS, OTHER_PCR0, free_port, http_get, running_enclave

from nitroguard.attestation import load_pem_roots, policy
from nitroguard.channel import ClientKey, TrustedKeys
from nitroguard.errors import ConfigError, Reason
from nitroguard.fleet import (
    HealthMonitor,
    new_registry,
    parse_http_listen,
    render,
    sanitize_enclave_metrics,
    start_http,
)

PCR_ARGS = [arg for i, v in GOOD_PCRS.items() for arg in ("--pcr", f"{i}={v.hex()}")]


def monitor_for(enclave_address: str, root: Path, **kw: object) -> HealthMonitor:
    pcrs = dict(GOOD_PCRS)
    pcrs.update(kw.pop("pcrs", {}))  # type: ignore[call-overload]
    return HealthMonitor(
        enclave_address,
        policy.PCRs(pcrs),
        roots=list(load_pem_roots(root.read_bytes())),
        service=kw.pop("service", "fleet-test"),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


class TestMonitor:
    def test_good_enclave_is_ready_and_reexports_counters(self, tmp_path: Path) -> None:
        now = [100.0]
        with running_enclave(tmp_path) as enc:
            mon = monitor_for(enc.address, enc.root_pem, interval=5.0, clock=lambda: now[0])
            assert not mon.ready()  # no check yet
            result = mon.check_once()
            assert result.ok, result.message
            assert result.reason is None
            # The round trip is the app's own `metrics` operation: counters came back.
            assert set(result.enclave_metrics) >= {"requests", "nsm_calls", "kms_calls"}
            assert result.enclave_metrics["requests"] == 1
            assert mon.ready()
            now[0] += 10.0  # exactly two intervals: still ready
            assert mon.ready()
            now[0] += 0.5  # beyond two intervals without a new success: not ready
            assert not mon.ready()
            assert mon.check_once().enclave_metrics["requests"] == 2
            assert mon.ready()
            text = render_monitor(mon)
            assert 'nitroguard_health_checks_total{reason="",result="ok"} 2.0' in text
            assert "enclave_requests_total 2.0" in text
            assert "nitroguard_health_ready 1.0" in text
            assert 'nitroguard_attestation_verifications_total{reason="",result="ok"} 2.0' in text

    def test_wrong_image_is_not_ready(self, tmp_path: Path) -> None:
        with running_enclave(tmp_path) as enc:
            mon = monitor_for(enc.address, enc.root_pem, pcrs={0: OTHER_PCR0})
            result = mon.check_once()
            assert not result.ok
            assert result.reason is Reason.PCR_MISMATCH, result.message
            assert not mon.ready()
            text = render_monitor(mon)
            assert 'nitroguard_health_checks_total{reason="pcr_mismatch",result="fail"} 1.0' in text
            verif = "nitroguard_attestation_verifications_total"
            assert f'{verif}{{reason="pcr_mismatch",result="fail"}} 1.0' in text
            assert "nitroguard_health_ready 0.0" in text

    def test_debug_enclave_is_not_ready(self, tmp_path: Path) -> None:
        with running_enclave(tmp_path, debug_mode=True) as enc:
            result = monitor_for(enc.address, enc.root_pem).check_once()
            assert not result.ok
            assert result.reason is Reason.DEBUG_MODE, result.message

    def test_stale_document_is_not_ready(self, tmp_path: Path) -> None:
        with running_enclave(tmp_path) as enc:
            later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
            mon = monitor_for(enc.address, enc.root_pem, max_age=60.0, wall_clock=lambda: later)
            result = mon.check_once()
            assert not result.ok
            assert result.reason is Reason.STALE_DOCUMENT, result.message

    def test_enclave_without_metrics_is_still_ready(self, tmp_path: Path) -> None:
        with running_enclave(tmp_path, metrics=False) as enc:
            result = monitor_for(enc.address, enc.root_pem).check_once()
            assert result.ok, result.message
            assert dict(result.enclave_metrics) == {}

    def test_metrics_for_the_operator_only(self, tmp_path: Path) -> None:
        # The app opens `metrics` to one principal: the sidecar reads the counters only
        # with that principal's key; anonymously it is still ready but gets none.
        operator = ClientKey.generate()
        trusted = TrustedKeys({"operator": operator.public_key})
        with running_enclave(tmp_path, metrics_allow={"operator"}, trusted_keys=trusted) as enc:
            anonymous = monitor_for(enc.address, enc.root_pem).check_once()
            assert anonymous.ok, anonymous.message
            assert dict(anonymous.enclave_metrics) == {}
            authed = monitor_for(enc.address, enc.root_pem, client_key=operator).check_once()
            assert authed.ok, authed.message
            assert authed.enclave_metrics["requests"] >= 1
            stranger = monitor_for(
                enc.address, enc.root_pem, client_key=ClientKey.generate()
            ).check_once()
            assert not stranger.ok
            assert stranger.reason is Reason.UNTRUSTED_CLIENT

    def test_wrong_service_name_is_not_ready(self, tmp_path: Path) -> None:
        with running_enclave(tmp_path) as enc:
            result = monitor_for(enc.address, enc.root_pem, service="other-app").check_once()
            assert not result.ok
            assert result.reason is Reason.SERVICE_MISMATCH, result.message

    def test_nothing_listening(self) -> None:
        port = free_port()
        mon = HealthMonitor(f"tcp://127.0.0.1:{port}", policy.PCRs(GOOD_PCRS), timeout=2.0)
        result = mon.check_once()
        assert not result.ok
        assert result.reason is not None
        assert result.to_json()["ready"] is False

    def test_a_bug_in_a_policy_does_not_stop_the_checks(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        class Broken:
            def verify(self, doc: object, *, at: object) -> None:
                raise RuntimeError("policy bug")

        with running_enclave(tmp_path) as enc:
            mon = HealthMonitor(
                enc.address,
                Broken(),  # type: ignore[arg-type]
                roots=list(load_pem_roots(enc.root_pem.read_bytes())),
                service="fleet-test",
            )
            result = mon.check_once()
        assert not result.ok
        assert result.reason is Reason.INTERNAL_ERROR
        assert "health check raised" in caplog.text

    @pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
    def test_bad_interval(self, bad: float) -> None:
        with pytest.raises(ConfigError):
            HealthMonitor("tcp://127.0.0.1:1", policy.PCRs(GOOD_PCRS), interval=bad)


def render_monitor(mon: HealthMonitor) -> str:
    registry = new_registry()
    mon.register(registry)
    return render(registry).decode()


class TestEnclaveCounters:
    def test_app_counts_handler_errors_and_kms(self, tmp_path: Path) -> None:
        from nitroguard.app import AppClient, AppError
        from nitroguard.channel._blocking import connect_blocking

        with running_enclave(tmp_path) as enc:
            mon = monitor_for(enc.address, enc.root_pem)
            with connect_blocking(enc.address, check=mon._check) as channel:
                client = AppClient(channel, mon._check)
                client.call("kms")
                with pytest.raises(AppError, match="no arguments") as info:
                    client.call("metrics", extra=1)
                assert info.value.reason is Reason.INVALID_ARGUMENT
            # The handler bug drops the channel (the transport closes the connection).
            with (
                pytest.raises(Exception),  # noqa: B017,PT011
                connect_blocking(enc.address, check=mon._check) as channel,
            ):
                AppClient(channel, mon._check).call("boom")
            counters = mon.check_once().enclave_metrics
            assert counters["kms_calls"] == 1
            assert counters["handler_errors"] == 1
            assert counters["error_replies"] == 1

    def test_unknown_counter_name_is_refused(self) -> None:
        from nitroguard.app import EnclaveApp

        with pytest.raises(ConfigError, match="unknown app counter"):
            EnclaveApp().count("anything_goes")

    def test_sanitize_bounds_what_the_enclave_sends(self) -> None:
        raw = {f"c{i}": i for i in range(200)}
        raw.update({"Bad-Name": 1, "neg": -1, "flag": True, "big": 1 << 70, "ok": 3})
        clean = sanitize_enclave_metrics(raw)
        assert len(clean) == 64
        assert all(name.startswith("c") for name in clean)
        assert sanitize_enclave_metrics({"ok": 3, "Bad-Name": 1, "neg": -1, "flag": True}) == {
            "ok": 3
        }
        assert sanitize_enclave_metrics([1, 2]) == {}


class TestHttpEndpoint:
    def test_routes_and_refusals(self) -> None:
        async def main() -> None:
            state = {"ready": False}

            def readyz() -> tuple[int, str, bytes]:
                return (
                    (200, "text/plain", b"ready\n")
                    if state["ready"]
                    else (503, "text/plain", b"no\n")
                )

            server = await start_http(
                {"/readyz": readyz}, parse_http_listen("http://127.0.0.1:0"), head_timeout=1.0
            )
            port = server.address.port
            try:
                get = lambda *a, **k: asyncio.to_thread(http_get, port, *a, **k)  # noqa: E731
                assert await get("/readyz") == (503, b"no\n")
                state["ready"] = True
                assert await get("/readyz") == (200, b"ready\n")
                assert await get("/readyz?verbose=1") == (200, b"ready\n")
                assert (await get("/readyz", "HEAD"))[1] == b""
                assert (await get("/nope"))[0] == 404
                assert (await get("/readyz", "POST"))[0] == 405
                assert (await get("", raw=b"garbage\r\n\r\n"))[0] == 400
                # An oversized head gets no answer, and the connection is closed.
                assert await get("", raw=b"GET / HTTP/1.1\r\nX: " + b"a" * 10000) == (0, b"")
                # A client that never finishes its head is cut off by the head timeout.
                t0 = time.monotonic()
                assert await get("", raw=b"GET /readyz HTTP/1.1\r\n") == (0, b"")
                assert time.monotonic() - t0 < 5
            finally:
                await server.close()

        asyncio.run(asyncio.wait_for(main(), 60))

    @pytest.mark.parametrize("text", ["unix:///tmp/x", "vsock://3:80", "ftp://h:1"])
    def test_listen_must_be_tcp(self, text: str) -> None:
        with pytest.raises(ConfigError):
            parse_http_listen(text)


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nitroguard", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class TestCli:
    def test_one_shot_exit_codes(self, tmp_path: Path) -> None:
        with running_enclave(tmp_path) as enc:
            ok = run_cli(
                "health",
                enc.address,
                "--channel",
                "--service",
                "fleet-test",
                "--root",
                str(enc.root_pem),
                *PCR_ARGS,
                "--json",
            )
            assert ok.returncode == 0, ok.stderr
            assert json.loads(ok.stdout)["ready"] is True
            bad = run_cli(
                "health",
                enc.address,
                "--channel",
                "--service",
                "fleet-test",
                "--root",
                str(enc.root_pem),
                "--pcr",
                f"0={OTHER_PCR0.hex()}",
            )
            assert bad.returncode == 1
            assert "pcr_mismatch" in bad.stdout
        usage = run_cli("health", "tcp://127.0.0.1:1", "--channel", "--service", "fleet-test")
        assert usage.returncode == 2
        assert "--pcr" in usage.stderr
        no_channel = run_cli("health", "tcp://127.0.0.1:1", *PCR_ARGS)
        assert no_channel.returncode == 2

    def test_sidecar_readyz_livez_metrics(self, tmp_path: Path) -> None:
        with running_enclave(tmp_path) as enc:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "nitroguard",
                    "health",
                    enc.address,
                    "--channel",
                    "--service",
                    "fleet-test",
                    "--root",
                    str(enc.root_pem),
                    *PCR_ARGS,
                    "--interval",
                    "0.5",
                    "--serve",
                    "http://127.0.0.1:0",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                assert line.startswith("serving on tcp://127.0.0.1:"), line
                port = int(line.rsplit(":", 1)[1])
                deadline = time.monotonic() + 20
                while http_get(port, "/readyz")[0] != 200:
                    assert time.monotonic() < deadline, "never became ready"
                    time.sleep(0.1)
                assert http_get(port, "/livez") == (200, b"alive\n")
                status, body = http_get(port, "/metrics")
                assert status == 200
                assert b'nitroguard_health_checks_total{reason="",result="ok"}' in body
                assert b"enclave_requests_total" in body
            finally:
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=20)
            assert proc.returncode == 0, err
