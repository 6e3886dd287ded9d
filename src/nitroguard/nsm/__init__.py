"""nitroguard.nsm."""
