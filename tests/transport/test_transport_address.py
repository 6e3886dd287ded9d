"""Address parsing: every accepted form and a precise error for each malformed one."""

from __future__ import annotations

import pytest

from nitroguard.errors import ConfigError, Reason
from nitroguard.transport import VMADDR_CID_ANY, Address, parse_address


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("vsock://16:5000", Address("vsock", port=5000, cid=16), "vsock://16:5000"),
        ("vsock://any:5000", Address("vsock", port=5000, cid=VMADDR_CID_ANY), "vsock://any:5000"),
        ("VSOCK://ANY:1", Address("vsock", port=1, cid=VMADDR_CID_ANY), "vsock://any:1"),
        ("vsock://3:4294967295", Address("vsock", port=0xFFFF_FFFF, cid=3), "vsock://3:4294967295"),
        ("tcp://127.0.0.1:0", Address("tcp", host="127.0.0.1", port=0), "tcp://127.0.0.1:0"),
        (
            "tcp://example.com:443",
            Address("tcp", host="example.com", port=443),
            "tcp://example.com:443",
        ),
        ("tcp://[::1]:80", Address("tcp", host="::1", port=80), "tcp://[::1]:80"),
        ("tcp://[0:0::1]:80", Address("tcp", host="::1", port=80), "tcp://[::1]:80"),
        ("unix:///run/app.sock", Address("unix", path="/run/app.sock"), "unix:///run/app.sock"),
    ],
)
def test_valid(text: str, expected: Address, canonical: str) -> None:
    addr = parse_address(text)
    assert addr == expected
    assert str(addr) == canonical
    assert parse_address(str(addr)) == addr


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "expected SCHEME://"),
        ("127.0.0.1:80", "expected SCHEME://"),
        ("http://x:1", "unknown scheme 'http'"),
        ("tcp://host", "expected tcp://HOST:PORT"),
        ("tcp://:80", "expected tcp://HOST:PORT"),
        ("tcp://host:", "port '' is not a decimal number"),
        ("tcp://host:65536", "port 65536 is out of range 0..65535"),
        ("tcp://host:-1", "is not a decimal number"),
        ("tcp://host:1e3", "is not a decimal number"),
        ("tcp://ho st:1", "not a valid host name"),
        ("tcp://::1:80", "IPv6 literals must be bracketed"),
        ("tcp://[::1:80", "expected tcp://\\[IPV6\\]:PORT"),
        ("tcp://[zz::1]:80", "is not an IPv6 address"),
        ("tcp://user@host:1", "unexpected path, query or user part"),
        ("tcp://host:1/path", "unexpected path, query or user part"),
        ("vsock://16", "expected vsock://CID:PORT"),
        ("vsock://x:1", "CID 'x' is not 'any'"),
        ("vsock://4294967296:1", "CID '4294967296'"),
        ("vsock://3:4294967296", "out of range"),
        ("unix://relative.sock", "must be absolute"),
        ("unix:///a\x00b", "NUL byte"),
        ("unix:///" + "a" * 200, "longer than 107 bytes"),
    ],
)
def test_invalid(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as info:
        parse_address(text)
    assert info.value.reason is Reason.INVALID_ADDRESS


def test_not_a_string() -> None:
    with pytest.raises(ConfigError, match="must be a string") as info:
        parse_address(5000)  # type: ignore[arg-type]
    assert info.value.reason is Reason.INVALID_ADDRESS


@pytest.mark.parametrize(
    ("text", "local"),
    [
        ("tcp://127.0.0.1:1", True),
        ("tcp://127.8.9.10:1", True),
        ("tcp://[::1]:1", True),
        ("tcp://localhost:1", True),
        ("unix:///tmp/x", True),
        ("vsock://16:1", True),
        ("tcp://10.0.0.1:1", False),
        ("tcp://example.com:1", False),
    ],
)
def test_is_local(text: str, local: bool) -> None:
    assert parse_address(text).is_local is local


def test_with_port() -> None:
    assert str(parse_address("tcp://127.0.0.1:0").with_port(81)) == "tcp://127.0.0.1:81"
