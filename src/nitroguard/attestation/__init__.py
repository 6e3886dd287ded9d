"""nitroguard.attestation."""
