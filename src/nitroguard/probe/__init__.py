"""nitroguard.probe."""
