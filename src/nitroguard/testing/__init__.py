"""nitroguard.testing."""
