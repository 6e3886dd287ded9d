"""`open`: pick the NSM named by a spec, the environment, or the device.

This is the one place that turns a spec string into an `Nsm`; the CLI's ``--nsm``
and `nitroguard.app`'s ``NITROGUARD_NSM`` both go through it. It lives apart from
the `Nsm` interface so that the interface never imports its implementations.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from nitroguard.errors import ConfigError, NsmError, Reason
from nitroguard.nsm._interface import DEFAULT_DEVICE, ENV_VAR, Nsm

__all__ = ["EPHEMERAL_SPECS", "open"]

#: Specs naming an in-process emulator with a throw-away PKI (demos, audits of a
#: development machine). Never selected implicitly.
EPHEMERAL_SPECS: Final = ("ephemeral", "ephemeral-debug")

_HOW_TO_EMULATE: Final = (
    "to develop outside an enclave, start the emulator with "
    "`nitroguard nsm serve --socket /tmp/nsm.sock` and set "
    f"{ENV_VAR}=emulator:/tmp/nsm.sock (or pass --nsm emulator:/tmp/nsm.sock)"
)


def open(  # noqa: A001 - `nitroguard.nsm.open` mirrors the builtin's role for the NSM
    spec: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    device_path: str = DEFAULT_DEVICE,
    pcrs: Mapping[int, bytes] | None = None,
) -> Nsm:
    """Open the NSM selected by `spec`, the environment, or the device if present.

    Selection order: `spec` if given (``"auto"`` counts as not given); else
    ``$NITROGUARD_NSM``; else ``/dev/nsm`` if it exists. Otherwise this fails: it
    never falls back to an emulator silently, because code that believes it runs in
    an enclave must not be handed software keys (threat checklist NSM-2).

    Args:
        spec: ``"auto"``, ``"device"``, ``"device:PATH"``, ``"emulator:SOCKET_PATH"``,
            or ``"ephemeral"`` / ``"ephemeral-debug"`` (an in-process `EmulatedNsm`
            with a fresh throw-away PKI, in production or debug mode; its root is
            ``nsm.pki.root_certificate``).
        env: the environment to read (defaults to `os.environ`).
        device_path: the device node probed when nothing is selected.
        pcrs: initial PCR values of an ephemeral emulator (ignored otherwise).

    Returns:
        An open `Nsm`; close it (or use it as a context manager).

    Raises:
        ConfigError: `spec` (or the environment variable) is malformed.
        NsmError: `nsm_unavailable` when nothing is selected and there is no
            device, or the selected one cannot be opened.
    """
    source = "argument"
    if spec is None or spec == "auto":
        spec = (os.environ if env is None else env).get(ENV_VAR) or None
        source = f"${ENV_VAR}"
    if spec is None:
        if not Path(device_path).exists():
            raise NsmError(
                f"no NSM: {device_path} does not exist (not inside a Nitro Enclave?) and "
                f"${ENV_VAR} is not set; {_HOW_TO_EMULATE}",
                Reason.NSM_UNAVAILABLE,
            )
        spec = "device:" + device_path
    if spec in EPHEMERAL_SPECS:
        from nitroguard.nsm._emulator import EmulatedNsm
        from nitroguard.nsm._pki import EmulatorPki

        return EmulatedNsm(EmulatorPki.ephemeral(), debug_mode=spec == "ephemeral-debug", pcrs=pcrs)
    kind, _, rest = spec.partition(":")
    if kind == "device":
        from nitroguard.nsm._device import DeviceNsm

        return DeviceNsm(rest or device_path)
    if kind == "emulator":
        if not rest:
            raise ConfigError(
                f"NSM spec {spec!r} (from {source}) needs a socket path: emulator:PATH"
            )
        from nitroguard.nsm._socket import SocketNsm

        return SocketNsm(rest)
    raise ConfigError(
        f"NSM spec {spec!r} (from {source}) is not 'device', 'device:PATH' or 'emulator:PATH'"
    )
