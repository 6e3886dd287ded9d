"""What `nitroguard demo` and `nitroguard serve echo|compare` run: demonstration code only.

- `story`: the end-to-end channel story (vault enclave, parent proxy, client, attacks);
- `kms`: its KMS part (the vault's master key from the fake KMS, three attacks);
- `vault`: the demo's key-value vault on `EnclaveApp` (also examples/vault_enclave.py);
- `vectors`: the report over the real AWS attestation vectors;
- `echo`, `compare`: the framed echo service and the leaky/constant-time compare
  services that `nitroguard serve` offers as probe targets.

Nothing in the library imports this package; it may use `nitroguard.testing`.
"""
