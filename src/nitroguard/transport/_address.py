"""Transport addresses: ``vsock://CID:PORT``, ``tcp://HOST:PORT``, ``unix:///path``.

Parsing is strict: anything that is not exactly one of the three forms is a
`ConfigError` with reason ``invalid_address`` and a message that says what is
wrong, so a typo in a deployment never silently binds the wrong socket.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Final, Literal, final

from nitroguard.errors import ConfigError, Reason

__all__ = ["VMADDR_CID_ANY", "Address", "AddressKind", "parse_address"]

AddressKind = Literal["tcp", "unix", "vsock"]

#: ``vsock://any:PORT`` binds every CID (``VMADDR_CID_ANY``).
VMADDR_CID_ANY: Final = 0xFFFF_FFFF
_U32_MAX: Final = 0xFFFF_FFFF
# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
_UNIX_PATH_MAX: Final = 107
_HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9\-.]{0,251}[A-Za-z0-9])?$")
_DIGITS = re.compile(r"^[0-9]{1,10}$")


def _bad(text: str, why: str) -> ConfigError:
    return ConfigError(f"invalid address {text!r}: {why}", Reason.INVALID_ADDRESS, address=text)


@final
@dataclass(frozen=True, slots=True)
class Address:
    """A parsed transport address. Build it with `parse_address`.

    Attributes:
        kind: ``"tcp"``, ``"unix"`` or ``"vsock"``.
        host: TCP host name or IP literal (``""`` otherwise).
        port: TCP or vsock port (0 for unix; 0 means "pick one" when binding TCP).
        path: Unix socket path (``""`` otherwise).
        cid: vsock context id (`VMADDR_CID_ANY` for ``any``; 0 otherwise).
    """

    kind: AddressKind
    host: str = ""
    port: int = 0
    path: str = ""
    cid: int = 0

    def __str__(self) -> str:
        if self.kind == "tcp":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"tcp://{host}:{self.port}"
        if self.kind == "unix":
            return f"unix://{self.path}"
        cid = "any" if self.cid == VMADDR_CID_ANY else str(self.cid)
        return f"vsock://{cid}:{self.port}"

    @property
    def is_local(self) -> bool:
        """True for unix, vsock and loopback TCP addresses (the probe's safe targets)."""
        if self.kind != "tcp":
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def with_port(self, port: int) -> Address:
        """A copy with another port (used to report the port chosen for port 0)."""
        return Address(self.kind, self.host, port, self.path, self.cid)


def _port(text: str, raw: str, *, maximum: int) -> int:
    if not _DIGITS.match(raw):
        raise _bad(text, f"port {raw!r} is not a decimal number")
    value = int(raw)
    if value > maximum:
        raise _bad(text, f"port {value} is out of range 0..{maximum}")
    return value


def parse_address(text: str) -> Address:
    """Parse ``vsock://CID:PORT``, ``vsock://any:PORT``, ``tcp://HOST:PORT`` or ``unix:///path``.

    TCP hosts may be names, IPv4 literals or bracketed IPv6 literals
    (``tcp://[::1]:5000``). vsock CIDs and ports are unsigned 32-bit numbers.
    Unix paths must be absolute and fit in ``sun_path``.

    Args:
        text: the address string.

    Returns:
        The parsed `Address`.

    Raises:
        ConfigError: reason ``invalid_address``, with the precise problem.
    """
    if not isinstance(text, str):
        raise ConfigError(
            f"address must be a string, not {type(text).__name__}", Reason.INVALID_ADDRESS
        )
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise _bad(
            text, "expected SCHEME://..., one of vsock://CID:PORT, tcp://HOST:PORT, unix:///path"
        )
    scheme = scheme.lower()
    if scheme == "unix":
        if not rest.startswith("/"):
            raise _bad(text, "unix socket path must be absolute (unix:///path)")
        if "\x00" in rest:
            raise _bad(text, "unix socket path contains a NUL byte")
        if len(rest.encode("utf-8", "surrogateescape")) > _UNIX_PATH_MAX:
            raise _bad(text, f"unix socket path is longer than {_UNIX_PATH_MAX} bytes")
        return Address("unix", path=rest)
    if scheme not in ("tcp", "vsock"):
        raise _bad(text, f"unknown scheme {scheme!r}; expected vsock, tcp or unix")
    if any(c in rest for c in "/?#@") and not rest.startswith("["):
        raise _bad(text, "unexpected path, query or user part; expected HOST:PORT")
    if scheme == "vsock":
        cid_raw, sep, port_raw = rest.rpartition(":")
        if not sep or not cid_raw:
            raise _bad(text, "expected vsock://CID:PORT")
        if cid_raw.lower() == "any":
            cid = VMADDR_CID_ANY
        elif _DIGITS.match(cid_raw) and int(cid_raw) <= _U32_MAX:
            cid = int(cid_raw)
        else:
            raise _bad(text, f"CID {cid_raw!r} is not 'any' or a number in 0..{_U32_MAX}")
        return Address("vsock", port=_port(text, port_raw, maximum=_U32_MAX), cid=cid)
    # tcp
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0 or rest[end + 1 : end + 2] != ":":
            raise _bad(text, "expected tcp://[IPV6]:PORT")
        host, port_raw = rest[1:end], rest[end + 2 :]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise _bad(text, f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port_raw = rest.rpartition(":")
        if not sep or not host:
            raise _bad(text, "expected tcp://HOST:PORT")
        if ":" in host:
            raise _bad(text, "IPv6 literals must be bracketed: tcp://[::1]:PORT")
        if not _HOST_RE.match(host):
            raise _bad(text, f"{host!r} is not a valid host name or IPv4 address")
    return Address("tcp", host=host, port=_port(text, port_raw, maximum=65535))


def has_vsock() -> bool:
    """True when this Python and kernel expose ``AF_VSOCK``."""
    return hasattr(socket, "AF_VSOCK")
