"""nitroguard.eif."""
