"""A key-value vault enclave on `EnclaveApp`, and a client for it.

Inside an enclave (production, fail closed; config from NITROGUARD_* variables)::

    python examples/vault_enclave.py serve

On a laptop, against the NSM emulator (development mode: the audit only warns)::

    nitroguard nsm serve --socket /tmp/nsm.sock --pcr 0=$(printf '11%.0s' {1..48}) &
    NITROGUARD_MODE=development NITROGUARD_NSM=emulator:/tmp/nsm.sock \\
    NITROGUARD_LISTEN=tcp://127.0.0.1:5000 python examples/vault_enclave.py serve &
    python examples/vault_enclave.py client tcp://127.0.0.1:5000 \\
        ~/.local/state/nitroguard/emulator/root.pem 0=$(printf '11%.0s' {1..48})
"""

from __future__ import annotations

import sys
from pathlib import Path

from cryptography import x509

from nitroguard.app import AppClient
from nitroguard.app.vault import build_vault
from nitroguard.attestation import policy
from nitroguard.channel import DocumentCheck, connect_blocking


def client(address: str, root_pem: str, pcrs: list[str]) -> None:
    """Connect, verify the enclave (root + PCRs + not debug + fresh), use the vault."""
    root = x509.load_pem_x509_certificate(Path(root_pem).read_bytes())
    expected = {int(i): bytes.fromhex(v) for i, v in (p.split("=", 1) for p in pcrs)}
    check = DocumentCheck(policy.PCRs(expected), roots=[root])
    with connect_blocking(address, check=check) as channel:
        vault = AppClient(channel, check)
        vault.call("put", key="greeting", value=b"hello from outside")
        print("get ->", vault.call("get", key="greeting"))
        print("fresh attestation nonce ->", (vault.attest().nonce or b"").hex())


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        build_vault().run()
    elif sys.argv[1:2] == ["client"] and len(sys.argv) >= 5:
        client(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(__doc__)
