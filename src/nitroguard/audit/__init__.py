"""nitroguard.audit."""
