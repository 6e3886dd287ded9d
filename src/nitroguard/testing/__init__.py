"""nitroguard.testing: helpers for testing code built on nitroguard."""

from nitroguard.testing.nsm import emulator_ioctl, ephemeral_nsm

__all__ = ["emulator_ioctl", "ephemeral_nsm"]
