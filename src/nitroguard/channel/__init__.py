"""nitroguard.channel."""
