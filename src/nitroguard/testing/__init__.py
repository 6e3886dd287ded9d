"""nitroguard.testing: helpers for testing code built on nitroguard."""

from nitroguard.kms._fake import FakeCredential, FakeKms
from nitroguard.testing.nsm import emulator_ioctl, ephemeral_nsm

__all__ = ["FakeCredential", "FakeKms", "emulator_ioctl", "ephemeral_nsm"]
