"""nitroguard.nsm: the Nitro Secure Module, on real hardware or emulated.

- `Nsm`: the interface (`Nsm.open()` picks the device or a served emulator).
- `DeviceNsm`: ``/dev/nsm`` inside an enclave.
- `EmulatedNsm`: an in-process software NSM with the device's semantics, signing
  attestation documents with an `EmulatorPki` whose root is never AWS's.
- `SocketNsm`: a client for an emulator served by ``nitroguard nsm serve``.
"""

from nitroguard.nsm.codec import NsmDescription, PcrDescription
from nitroguard.nsm.device import DeviceNsm
from nitroguard.nsm.emulator import EmulatedNsm
from nitroguard.nsm.interface import Nsm
from nitroguard.nsm.pki import EmulatorPki
from nitroguard.nsm.socket import NsmServer, SocketNsm

__all__ = [
    "DeviceNsm",
    "EmulatedNsm",
    "EmulatorPki",
    "Nsm",
    "NsmDescription",
    "NsmServer",
    "PcrDescription",
    "SocketNsm",
]
