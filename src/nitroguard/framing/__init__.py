"""nitroguard.framing."""
