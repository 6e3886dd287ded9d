"""A key-value vault enclave on `EnclaveApp`, and a client for it.

The vault serves only authenticated clients, each in its own namespace. Make a client
key and list it in the file the image carries (so PCR2 covers the list)::

    python examples/vault_enclave.py keygen alice alice.pem >> clients.txt

Inside an enclave (production, fail closed; config from NITROGUARD_* variables)::

    NITROGUARD_CLIENT_KEYS=/app/clients.txt python examples/vault_enclave.py serve

On a laptop, against the NSM emulator (development mode: the audit only warns)::

    nitroguard nsm serve --socket /tmp/nsm.sock --pcr 0=$(printf '11%.0s' {1..48}) &
    NITROGUARD_MODE=development NITROGUARD_NSM=emulator:/tmp/nsm.sock \\
    NITROGUARD_CLIENT_KEYS=clients.txt \\
    NITROGUARD_LISTEN=tcp://127.0.0.1:5000 python examples/vault_enclave.py serve &
    python examples/vault_enclave.py client tcp://127.0.0.1:5000 alice.pem \\
        ~/.local/state/nitroguard/emulator/root.pem 0=$(printf '11%.0s' {1..48})
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cryptography import x509

# The vault `nitroguard demo` runs (src/nitroguard/_commands/_demo/vault.py): read it as
# the model of an app; it is demonstration code, not a library API.
from nitroguard._commands._demo.vault import build_vault
from nitroguard.app import AppClient, ClientKey
from nitroguard.attestation import policy
from nitroguard.channel import DocumentCheck, connect_blocking, public_key_line


def keygen(name: str, pem_path: str) -> None:
    """Write a new client key (0600) and print its trusted-keys line."""
    key = ClientKey.generate()
    fd = os.open(pem_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_pem())
    print(public_key_line(name, key))


def client(address: str, key_pem: str, root_pem: str, pcrs: list[str]) -> None:
    """Connect, verify the enclave (root + PCRs + not debug + fresh + service), use it."""
    root = x509.load_pem_x509_certificate(Path(root_pem).read_bytes())
    expected = {int(i): bytes.fromhex(v) for i, v in (p.split("=", 1) for p in pcrs)}
    check = DocumentCheck(policy.PCRs(expected), roots=[root], service="vault")
    key = ClientKey.from_pem(Path(key_pem).read_bytes())
    with connect_blocking(address, check=check) as channel:
        vault = AppClient(channel, check)
        print("authenticated as", vault.authenticate(key))
        vault.call("put", key="greeting", value=b"hello from outside")
        print("get ->", vault.call("get", key="greeting"))
        print("fresh attestation nonce ->", (vault.attest().nonce or b"").hex())


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        build_vault().run()
    elif sys.argv[1:2] == ["keygen"] and len(sys.argv) == 4:
        keygen(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["client"] and len(sys.argv) >= 6:
        client(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    else:
        sys.exit(__doc__)
