"""The parent-side proxy: ingress (TCP -> vsock) and egress (vsock -> allowlisted TCP).

A public namespace (like ``trio.lowlevel``): it only re-exports; the implementation
is in ``nitroguard.transport._proxy``. ``start_proxy(ProxyConfig(listen, to,
allow=Allowlist.parse([...])))``; see ``docs/transport.md``.
"""

from nitroguard.transport._proxy import (
    AllowEntry,
    Allowlist,
    PeerId,
    ProxyConfig,
    ProxyCounters,
    relay_path,
    resolve_upstream,
    start_proxy,
    vsock_peer_cid,
)

__all__ = [
    "AllowEntry",
    "Allowlist",
    "PeerId",
    "ProxyConfig",
    "ProxyCounters",
    "relay_path",
    "resolve_upstream",
    "start_proxy",
    "vsock_peer_cid",
]
