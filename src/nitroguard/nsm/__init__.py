"""nitroguard.nsm: the Nitro Secure Module, on real hardware or emulated.

- `open`: picks the device, a served emulator or an ephemeral one from a spec.
- `Nsm`: the interface; `Attesting`, `RandomSource` and `Describing` are the narrow
  roles consumers type their NSM parameter with (`Nsm` implements all three;
  `ReadOnlyNsm` is the three together).
- `DeviceNsm`: ``/dev/nsm`` inside an enclave.
- `EmulatedNsm`: an in-process software NSM with the device's semantics, signing
  attestation documents with an `EmulatorPki` whose root is never AWS's.
- `SocketNsm` / `NsmServer`: the emulator served over a Unix socket.
- `codec`: the request/response CBOR codec every implementation shares.

Implementation lives in the ``_``-modules; this file only re-exports.
"""

from nitroguard.nsm import codec
from nitroguard.nsm._codec import NsmDescription, PcrDescription
from nitroguard.nsm._device import NSM_IOCTL_RAW, DeviceNsm, pack_message, unpack_message
from nitroguard.nsm._emulator import DEFAULT_IMAGE_PCRS, EmulatedNsm, extend
from nitroguard.nsm._interface import (
    DEFAULT_DEVICE,
    ENV_VAR,
    MAX_RANDOM_BYTES,
    Attesting,
    Describing,
    IoctlFunc,
    Nsm,
    RandomSource,
    ReadOnlyNsm,
)
from nitroguard.nsm._open import EPHEMERAL_SPECS, open  # noqa: A004
from nitroguard.nsm._pki import EmulatorPki
from nitroguard.nsm._socket import NsmServer, SocketNsm

__all__ = [
    "DEFAULT_DEVICE",
    "DEFAULT_IMAGE_PCRS",
    "ENV_VAR",
    "EPHEMERAL_SPECS",
    "MAX_RANDOM_BYTES",
    "NSM_IOCTL_RAW",
    "Attesting",
    "Describing",
    "DeviceNsm",
    "EmulatedNsm",
    "EmulatorPki",
    "IoctlFunc",
    "Nsm",
    "NsmDescription",
    "NsmServer",
    "PcrDescription",
    "RandomSource",
    "ReadOnlyNsm",
    "SocketNsm",
    "codec",
    "extend",
    "open",
    "pack_message",
    "unpack_message",
]
