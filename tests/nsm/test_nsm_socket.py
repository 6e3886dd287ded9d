"""The emulator over a real Unix socket: SocketNsm, NsmServer robustness, nitroguard.nsm.open."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cbor2
import pytest
from nsm_helpers import Clock, check_document

import nitroguard.nsm
from nitroguard.errors import ConfigError, NsmError, Reason
from nitroguard.nsm import DeviceNsm, EmulatedNsm, NsmServer, SocketNsm, codec, extend
from nitroguard.testing import ephemeral_nsm


@pytest.fixture
def emulator(clock: Clock) -> EmulatedNsm:
    return ephemeral_nsm(clock=clock)


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "nsm.sock"


@pytest.fixture
def server(emulator: EmulatedNsm, sock_path: Path) -> Iterator[NsmServer]:
    with NsmServer(emulator, sock_path, idle_timeout=5.0, frame_timeout=1.0) as srv:
        yield srv


def raw_conn(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(path))
    return sock


def recv_frame(sock: socket.socket) -> bytes:
    header = _recv_all(sock, 4)
    (length,) = struct.unpack(">I", header)
    return _recv_all(sock, length)


def _recv_all(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def assert_closed_by_server(sock: socket.socket) -> None:
    """The server hung up: EOF, or a reset when it closed with our bytes unread."""
    try:
        data = sock.recv(1)
    except ConnectionResetError:
        return
    assert data == b""


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def assert_alive(path: Path) -> None:
    """A fresh client gets a correct answer: the service survived."""
    with SocketNsm(path, timeout=5) as nsm:
        assert nsm.describe_nsm().max_pcrs == 32


# ------------------------------------------------------------------ end to end


def test_socket_round_trips(server: NsmServer, sock_path: Path, emulator: EmulatedNsm) -> None:
    with SocketNsm(sock_path) as nsm:
        assert nsm.describe_nsm() == emulator.describe_nsm()
        assert nsm.extend_pcr(16, b"abc") == extend(bytes(48), b"abc")
        nsm.lock_pcr(16)
        with pytest.raises(NsmError, match="ReadOnlyIndex") as info:
            nsm.extend_pcr(16, b"abc")
        assert info.value.reason is Reason.READ_ONLY_INDEX
        nsm.lock_pcrs(18)
        assert nsm.describe_pcr(17).lock is True
        assert len(nsm.get_random(1000)) == 1000
        doc = nsm.get_attestation(user_data=b"u", nonce=b"n" * 16, public_key=b"k")
        payload = check_document(doc, emulator.pki.root_certificate, emulator._clock())
        assert list(payload["pcrs"]) == list(range(18))
        with pytest.raises(NsmError, match="over the NSM limit") as info:
            nsm.get_attestation(nonce=bytes(5000))
        assert info.value.reason is Reason.INPUT_TOO_LARGE
    # The server's state is shared by every client (one emulated enclave).
    with SocketNsm(sock_path) as other:
        assert other.describe_nsm().locked_pcrs == tuple(range(18))


def test_many_clients_and_threads(server: NsmServer, sock_path: Path) -> None:
    shared = SocketNsm(sock_path)
    errors: list[BaseException] = []

    def work(use_shared: bool) -> None:
        try:
            nsm = shared if use_shared else SocketNsm(sock_path)
            for _ in range(20):
                nsm.extend_pcr(21, b"t")
                assert len(nsm.get_random(64)) == 64
            if not use_shared:
                nsm.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i % 2 == 0,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    expected = bytes(48)
    for _ in range(8 * 20):
        expected = extend(expected, b"t")
    assert shared.describe_pcr(21).data == expected
    shared.close()


# ------------------------------------------------------------ hostile peers


def test_malformed_requests_get_device_errors(server: NsmServer, sock_path: Path) -> None:
    with raw_conn(sock_path) as sock:
        for garbage in (b"", b"\xff\xff\xff\xff", cbor2.dumps({"Nope": 1}), b"\x9f" * 100):
            sock.sendall(frame(garbage))
            assert recv_frame(sock) == codec.encode_error(codec.ErrorCode.INVALID_OPERATION)
        # The same connection still works after errors.
        sock.sendall(frame(codec.encode_request(codec.DescribePcr(16))))
        assert cbor2.loads(recv_frame(sock))["DescribePCR"]["lock"] is False
    assert_alive(sock_path)


@pytest.mark.parametrize("length", [4097, 1 << 20, 0xFFFFFFFF])
def test_oversized_request_is_refused_and_connection_closed(
    server: NsmServer, sock_path: Path, length: int
) -> None:
    with raw_conn(sock_path) as sock:
        sock.sendall(struct.pack(">I", length) + b"x" * 100)
        assert recv_frame(sock) == codec.encode_error(codec.ErrorCode.INPUT_TOO_LARGE)
        assert_closed_by_server(sock)  # hung up without reading the body
    assert_alive(sock_path)


def test_exactly_4096_byte_request_is_served(server: NsmServer, sock_path: Path) -> None:
    request = cbor2.dumps({"Attestation": {"nonce": bytes(4073)}})
    assert len(request) == 4096
    with raw_conn(sock_path) as sock:
        sock.sendall(frame(request))
        answer = cbor2.loads(recv_frame(sock))
        assert "document" in answer["Attestation"]


@pytest.mark.parametrize(
    "send",
    [
        b"",  # connect and leave
        b"\x00\x00",  # half a header
        struct.pack(">I", 100),  # header, no body
        struct.pack(">I", 100) + b"\xa1" * 50,  # half a body
        frame(codec.encode_request(codec.Attestation())),  # leave before the answer
    ],
)
def test_vanishing_peers_do_not_hurt_the_service(
    server: NsmServer, sock_path: Path, send: bytes
) -> None:
    for _ in range(5):
        sock = raw_conn(sock_path)
        sock.sendall(send)
        sock.close()
    assert_alive(sock_path)


def test_slow_peer_is_cut_at_the_frame_deadline(server: NsmServer, sock_path: Path) -> None:
    with raw_conn(sock_path) as sock:
        sock.sendall(struct.pack(">I", 50) + b"\xa1")  # then stall
        started = time.monotonic()
        assert_closed_by_server(sock)  # server closes after frame_timeout (1 s)
        assert time.monotonic() - started < 4
    assert_alive(sock_path)


def test_idle_connection_is_closed(emulator: EmulatedNsm, sock_path: Path) -> None:
    with NsmServer(emulator, sock_path, idle_timeout=0.3), raw_conn(sock_path) as sock:
        assert sock.recv(1) == b""


def test_client_survives_idle_close(emulator: EmulatedNsm, sock_path: Path) -> None:
    with NsmServer(emulator, sock_path, idle_timeout=0.2), SocketNsm(sock_path) as nsm:
        nsm.extend_pcr(16, b"a")
        time.sleep(0.6)  # the server has closed our idle connection meanwhile
        assert nsm.extend_pcr(16, b"b") == extend(extend(bytes(48), b"a"), b"b")


def test_connection_cap(emulator: EmulatedNsm, sock_path: Path) -> None:
    with NsmServer(emulator, sock_path, max_connections=2) as srv:
        first, second = raw_conn(sock_path), raw_conn(sock_path)
        for s in (first, second):  # both are being served
            s.sendall(frame(codec.encode_request(codec.DescribeNsm())))
            assert "DescribeNSM" in cbor2.loads(recv_frame(s))
        third = raw_conn(sock_path)
        assert third.recv(1) == b""  # refused: closed on accept
        assert srv.refused == 1
        first.close()
        deadline = time.monotonic() + 5
        while True:  # the slot frees once the server notices the close
            try:
                assert_alive(sock_path)
                break
            except NsmError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        second.close()
        third.close()


# ----------------------------------------------------------- client failures


def test_client_without_server(sock_path: Path) -> None:
    with pytest.raises(NsmError, match="nitroguard nsm serve --socket") as info:
        SocketNsm(sock_path)
    assert info.value.reason is Reason.NSM_UNAVAILABLE


def _fake_server(path: Path, reply: bytes, *, count: int = 1) -> threading.Thread:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def run() -> None:
        with listener:
            for _ in range(count):
                conn, _ = listener.accept()
                with conn:
                    header = _recv_all(conn, 4)
                    _recv_all(conn, struct.unpack(">I", header)[0])
                    conn.sendall(reply)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("reply", "reason", "match"),
    [
        (struct.pack(">I", 12289) + b"x", Reason.INVALID_RESPONSE, "12289-byte frame"),
        (struct.pack(">I", 0xFFFFFFFF), Reason.INVALID_RESPONSE, "over 12288"),
        (struct.pack(">I", 10) + b"abc", Reason.NSM_IO_ERROR, "closed the connection"),
        (b"\x00", Reason.NSM_IO_ERROR, "closed the connection"),
        (frame(b"\xff\xff"), Reason.INVALID_RESPONSE, "invalid NSM response"),
        (frame(cbor2.dumps({"GetRandom": {"random": b""}})), Reason.INVALID_RESPONSE, "implaus"),
    ],
)
def test_client_rejects_bad_server_replies(
    sock_path: Path, reply: bytes, reason: Reason, match: str
) -> None:
    thread = _fake_server(sock_path, reply)
    nsm = SocketNsm(sock_path, timeout=5)
    with pytest.raises(NsmError, match=match) as info:
        nsm.get_random(8)
    assert info.value.reason is reason
    nsm.close()
    thread.join(5)


def test_client_times_out(sock_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(1)
    with listener:
        nsm = SocketNsm(sock_path, timeout=0.3)
        with pytest.raises(NsmError, match="deadline") as info:
            nsm.describe_nsm()  # accepted by the kernel backlog, never answered
        assert info.value.reason is Reason.NSM_IO_ERROR
        nsm.close()
    with pytest.raises(NsmError, match="is closed") as info:
        nsm.describe_nsm()
    assert info.value.reason is Reason.NSM_UNAVAILABLE


def test_client_reconnects_after_a_server_restart(emulator: EmulatedNsm, sock_path: Path) -> None:
    srv = NsmServer(emulator, sock_path)
    srv.start()
    nsm = SocketNsm(sock_path, timeout=5)
    nsm.extend_pcr(16, b"a")
    srv.shutdown()
    assert not sock_path.exists()
    with pytest.raises(NsmError) as info:
        nsm.extend_pcr(16, b"b")
    assert info.value.reason in (Reason.NSM_IO_ERROR, Reason.NSM_UNAVAILABLE)
    with NsmServer(emulator, sock_path):
        # Not retried automatically (ExtendPCR is not idempotent): the next call reconnects.
        assert nsm.describe_pcr(16).data == extend(bytes(48), b"a")
    nsm.close()


# ---------------------------------------------------------------- binding


def test_server_refuses_to_clobber(emulator: EmulatedNsm, sock_path: Path) -> None:
    sock_path.write_text("precious")
    with pytest.raises(ConfigError, match="not a socket"):
        NsmServer(emulator, sock_path)
    assert sock_path.read_text() == "precious"
    sock_path.unlink()
    with NsmServer(emulator, sock_path):
        with pytest.raises(ConfigError, match="already listening"):
            NsmServer(emulator, sock_path)
        assert_alive(sock_path)


def test_server_replaces_a_stale_socket(emulator: EmulatedNsm, sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()  # the file stays, nobody listens
    with NsmServer(emulator, sock_path):
        assert sock_path.stat().st_mode & 0o777 == 0o600
        assert_alive(sock_path)
    assert not sock_path.exists()


def test_server_bad_path(emulator: EmulatedNsm, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot listen"):
        NsmServer(emulator, tmp_path / "missing-dir" / "nsm.sock")


# ------------------------------------------------------------------ nsm.open


def test_open_explicit_and_env(server: NsmServer, sock_path: Path) -> None:
    with nitroguard.nsm.open(f"emulator:{sock_path}", env={}) as nsm:
        assert isinstance(nsm, SocketNsm)
        assert nsm.describe_nsm().max_pcrs == 32
    with nitroguard.nsm.open(env={"NITROGUARD_NSM": f"emulator:{sock_path}"}) as nsm:
        assert isinstance(nsm, SocketNsm)
    with nitroguard.nsm.open("device:/dev/null", env={}) as nsm:
        assert isinstance(nsm, DeviceNsm)
        assert nsm.path == "/dev/null"
    with nitroguard.nsm.open(env={}, device_path="/dev/null") as nsm:
        assert isinstance(nsm, DeviceNsm)
    with nitroguard.nsm.open("device", env={}, device_path="/dev/null") as nsm:
        assert isinstance(nsm, DeviceNsm)


def test_open_never_falls_back_to_the_emulator(server: NsmServer, tmp_path: Path) -> None:
    # An emulator is running, but nothing selects it and there is no device: fail.
    missing = str(tmp_path / "nsm")
    for env in ({}, {"NITROGUARD_NSM": ""}):
        with pytest.raises(NsmError, match="nitroguard nsm serve --socket") as info:
            nitroguard.nsm.open(env=env, device_path=missing)
        assert info.value.reason is Reason.NSM_UNAVAILABLE
    # Selecting the device explicitly fails too rather than trying anything else.
    with pytest.raises(NsmError, match="cannot open the NSM device") as info:
        nitroguard.nsm.open("device", env={}, device_path=missing)
    assert info.value.reason is Reason.NSM_UNAVAILABLE


@pytest.mark.parametrize("spec", ["emulator", "emulator:", "qemu:/x", "Device", "/dev/nsm"])
def test_open_bad_spec(spec: str) -> None:
    with pytest.raises(ConfigError, match="NSM spec"):
        nitroguard.nsm.open(spec, env={})
    with pytest.raises(ConfigError, match=r"from \$NITROGUARD_NSM"):
        nitroguard.nsm.open(env={"NITROGUARD_NSM": spec})


@pytest.mark.parametrize(("spec", "debug"), [("ephemeral", False), ("ephemeral-debug", True)])
def test_open_ephemeral(spec: str, debug: bool) -> None:
    pcrs = {0: b"\x01" * 48}
    with nitroguard.nsm.open(spec, env={}, pcrs=None if debug else pcrs) as nsm:
        assert isinstance(nsm, EmulatedNsm)
        assert nsm.debug_mode is debug
        pcr0 = nsm.describe_pcr(0).data
        assert pcr0 == (b"\x00" * 48 if debug else pcrs[0])
        assert nsm.pki.root_certificate is not None


def test_open_auto_is_the_default_selection(server: NsmServer, sock_path: Path) -> None:
    with nitroguard.nsm.open("auto", env={"NITROGUARD_NSM": f"emulator:{sock_path}"}) as nsm:
        assert isinstance(nsm, SocketNsm)
    with pytest.raises(NsmError, match="does not exist") as info:
        nitroguard.nsm.open("auto", env={}, device_path="/nonexistent/nsm")
    assert info.value.reason is Reason.NSM_UNAVAILABLE
