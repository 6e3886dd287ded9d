"""nitroguard.transport."""
