"""Fake /proc, /sys and /dev trees for the audit tests (imported by conftest and tests).

Each scenario is built on disk under tmp_path with real files, real relative
symlinks (like sysfs's ``class/misc/hw_random``), and real character device nodes
(``mknod``, which needs root; without it a real device node of the right kind is
symlinked in, or the test is skipped with the reason).
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from nitroguard.audit import SystemReader

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC).timestamp()

WELL_CONFIGURED_CMDLINE = (
    "reboot=k panic=30 pci=off nomodules console=ttyS0 random.trust_cpu=off "
    "random.trust_bootloader=off clocksource=kvm-clock virtio_mmio.device=4K@0xd0000000:5\n"
)
# aws-nitro-enclaves-cli blobs/x86_64/cmdline (threat-checklist S11): trust_cpu=on.
AWS_DEFAULT_CMDLINE = (
    "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux "
    "i8042.nopnp i8042.dumbkbd random.trust_cpu=on virtio_mmio.device=4K@0xd0000000:5 "
    "virtio_mmio.device=4K@0xd0001000:6\n"
)
LAPTOP_CMDLINE = "BOOT_IMAGE=/vmlinuz-6.8.0-45-generic root=UUID=1234 ro quiet splash\n"

#: An excerpt of a hardened enclave kernel's .config (KASLR on, kvm-clock, NSM).
HARDENED_CONFIG = (
    "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.6.79 Kernel Configuration\n#\n"
    "CONFIG_64BIT=y\nCONFIG_RANDOMIZE_BASE=y\nCONFIG_PARAVIRT_CLOCK=y\nCONFIG_KVM_GUEST=y\n"
    "CONFIG_NSM=y\nCONFIG_IKCONFIG_PROC=y\n# CONFIG_MODULES is not set\n"
)

MITIGATED = {
    "meltdown": "Mitigation: PTI\n",
    "spectre_v1": "Mitigation: usercopy/swapgs barriers and __user pointer sanitization\n",
    "spectre_v2": "Mitigation: Retpolines; IBPB: conditional; STIBP: disabled; RSB filling\n",
    "mds": "Mitigation: Clear CPU buffers; SMT Host state unknown\n",
    "l1tf": "Not affected\n",
}


class Tree:
    """A fake root filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def write(self, path: str, content: str | bytes) -> Path:
        target = self.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        return target

    def remove(self, path: str) -> None:
        self.path(path).unlink()

    def symlink(self, path: str, target: str) -> None:
        link = self.path(path)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)

    def chardev(self, path: str, mode: int, major: int, minor: int) -> None:
        node = self.path(path)
        node.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mknod(node, stat.S_IFCHR | mode, os.makedev(major, minor))
            os.chmod(node, mode)  # mknod applies the umask
            return
        except PermissionError:
            pass
        # Not root: link to a real host char device with the same world-access property.
        want_world = bool(mode & 0o006)
        for candidate in ("/dev/null", "/dev/tty", "/dev/mem", "/dev/kmsg", "/dev/console"):
            try:
                st = os.stat(candidate)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) and bool(st.st_mode & 0o006) == want_world:
                node.symlink_to(candidate)
                return
        pytest.skip("cannot create a character device node (not root)")

    def hwrng(self, current: str, available: str, quality: str | None = "1000\n") -> None:
        base = "/sys/devices/virtual/misc/hw_random"
        self.write(f"{base}/rng_current", current)
        self.write(f"{base}/rng_available", available)
        if quality is not None:
            self.write(f"{base}/rng_quality", quality)
        # Real sysfs: class/misc/hw_random -> ../../devices/virtual/misc/hw_random
        self.symlink("/sys/class/misc/hw_random", "../../devices/virtual/misc/hw_random")

    def clocksource(self, current: str, available: str) -> None:
        base = "/sys/devices/system/clocksource/clocksource0"
        self.write(f"{base}/current_clocksource", current)
        self.write(f"{base}/available_clocksource", available)

    def vulnerabilities(self, entries: dict[str, str]) -> None:
        for name, value in entries.items():
            self.write(f"/sys/devices/system/cpu/vulnerabilities/{name}", value)

    def memory(self, swaps: str = "", panic_on_oom: str = "1\n", overcommit: str = "0\n") -> None:
        self.write("/proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n" + swaps)
        self.write("/proc/meminfo", "MemTotal:  4000000 kB\nSwapTotal:       0 kB\n")
        self.write("/proc/sys/vm/panic_on_oom", panic_on_oom)
        self.write("/proc/sys/vm/overcommit_memory", overcommit)

    def nsm_device(self, mode: int = 0o600, minor: int = 125) -> None:
        self.chardev("/dev/nsm", mode, 10, minor)
        self.write("/sys/class/misc/nsm/dev", f"10:{minor}\n")
        self.write("/sys/bus/virtio/devices/virtio1/device", "0x0021\n")

    def kernel_config(self, text: str) -> None:
        """Write /proc/config.gz (CONFIG_IKCONFIG_PROC) from `text`."""
        self.write("/proc/config.gz", gzip.compress(text.encode()))

    def probe(self, **kwargs: object) -> SystemReader:
        defaults: dict[str, object] = {"getrandom_ready": True, "wall_clock": lambda: NOW}
        defaults.update(kwargs)
        return SystemReader(self.root, **defaults)  # type: ignore[arg-type]


def build_well_configured(tree: Tree) -> Tree:
    """nsm-hwrng, kvm-clock, 6.6 kernel, both trust flags off, PTP, 0600 /dev/nsm."""
    tree.hwrng("nsm-hwrng\n", "nsm-hwrng \n")
    tree.write("/proc/cmdline", WELL_CONFIGURED_CMDLINE)
    tree.write("/proc/sys/kernel/osrelease", "6.6.79-nitro\n")
    tree.clocksource("kvm-clock\n", "kvm-clock tsc acpi_pm \n")
    tree.chardev("/dev/ptp0", 0o600, 248, 0)
    tree.write("/sys/class/ptp/ptp0/clock_name", "KVM virtual PTP\n")
    tree.vulnerabilities(MITIGATED)
    tree.memory()
    tree.nsm_device()
    tree.kernel_config(HARDENED_CONFIG)
    return tree


def build_aws_default(tree: Tree) -> Tree:
    """nitro-cli default blobs: 4.14.256, trust_cpu=on, out-of-tree nsm.ko (minor 147, 0666)."""
    tree.hwrng("nsm-hwrng\n", "nsm-hwrng \n", quality=None)  # no rng_quality on 4.14
    tree.write("/proc/cmdline", AWS_DEFAULT_CMDLINE)
    tree.write("/proc/sys/kernel/osrelease", "4.14.256-209.484.amzn2.x86_64\n")
    tree.clocksource("kvm-clock\n", "kvm-clock tsc \n")
    tree.vulnerabilities(MITIGATED)
    tree.memory(panic_on_oom="0\n")
    tree.nsm_device(mode=0o666, minor=147)
    return tree


def build_laptop(tree: Tree, rng: str = "virtio_rng.0\n") -> Tree:
    """A laptop or CI VM: virtio_rng (or none), tsc, no NSM."""
    tree.hwrng(rng, "virtio_rng.0 none\n" if rng != "none\n" else "none\n", quality="1024\n")
    tree.write("/proc/cmdline", LAPTOP_CMDLINE)
    tree.write("/proc/sys/kernel/osrelease", "6.8.0-45-generic\n")
    tree.clocksource("tsc\n", "tsc hpet acpi_pm \n")
    tree.vulnerabilities(
        {**MITIGATED, "spec_store_bypass": "Vulnerable\n", "itlb_multihit": "KVM: Vulnerable\n"}
    )
    tree.memory(swaps="/swap.img\tfile\t\t8388604\t\t0\t\t-2\n", panic_on_oom="0\n")
    return tree


BUILDERS: dict[str, Callable[[Tree], Tree]] = {
    "well_configured": build_well_configured,
    "aws_default": build_aws_default,
    "laptop": build_laptop,
    "laptop_none": lambda t: build_laptop(t, rng="none\n"),
}
