"""SystemReader: bounded, non-blocking, never crashing (kernel parsers: test_kernel_facts)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from audit_trees import Tree, build_well_configured
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nitroguard.audit import DEFAULT, SystemReader, run
from nitroguard.findings import Status

# --- SystemReader ---------------------------------------------------------------------


def test_read_keeps_raw_text_and_trims_value(tree: Tree) -> None:
    tree.write("/proc/cmdline", "quiet \n")
    read = tree.probe().read("/proc/cmdline")
    assert read.raw == "quiet \n"
    assert read.value == "quiet"
    assert read.error is None
    assert read.describe() == "/proc/cmdline = 'quiet \\n'"


def test_read_absent_file(tree: Tree) -> None:
    read = tree.probe().read("/proc/cmdline")
    assert read.raw is None
    assert read.absent
    assert read.describe() == "/proc/cmdline: absent"


def test_read_through_a_file_in_the_path_is_absent(tree: Tree) -> None:
    tree.write("/proc", "a file where a directory should be")
    assert tree.probe().read("/proc/cmdline").error == "absent"


def test_read_refuses_a_fifo_without_blocking(tree: Tree) -> None:
    fifo = tree.path("/proc/cmdline")
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(tree.probe().read("/proc/cmdline")))
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "reading a FIFO blocked"
    assert result[0].error == "not a regular file"  # type: ignore[attr-defined]


def test_read_refuses_oversized_files(tree: Tree) -> None:
    tree.write("/proc/cmdline", "x" * 5000)
    read = SystemReader(tree.root, max_read=4096).read("/proc/cmdline")
    assert read.raw is None
    assert read.error == "larger than 4096 bytes"


def test_read_refuses_a_directory(tree: Tree) -> None:
    tree.path("/proc/cmdline").mkdir(parents=True)
    assert tree.probe().read("/proc/cmdline").error == "not a regular file"


_READ_AS_NOBODY = """
import os, sys
from nitroguard.audit import SystemReader
probe = SystemReader(sys.argv[1])
os.setgroups([]); os.setgid(65534); os.setuid(65534)
print(probe.read("/proc/readable").value, probe.read("/proc/cmdline").error)
"""


def test_read_permission_denied(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        tree = Tree(tmp_path)
        tree.write("/proc/cmdline", "quiet\n").chmod(0)
        assert SystemReader(tmp_path).read("/proc/cmdline").error == "permission denied"
        return
    # Root bypasses file permissions: read as an unprivileged user instead, from a
    # directory that user can traverse (pytest's tmp_path is private to root).
    root = Path(tempfile.mkdtemp(prefix="nitroguard-audit-"))
    try:
        root.chmod(0o755)
        tree = Tree(root)
        tree.write("/proc/readable", "yes\n").chmod(0o644)
        tree.write("/proc/cmdline", "quiet\n").chmod(0)
        (root / "proc").chmod(0o755)
        out = subprocess.run(
            [sys.executable, "-c", _READ_AS_NOBODY, str(root)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        shutil.rmtree(root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["yes", "permission", "denied"]


def test_invalid_utf8_is_replaced_not_raised(tree: Tree) -> None:
    tree.write("/proc/cmdline", b"quiet \xff\xfe\n")
    assert tree.probe().read("/proc/cmdline").value == "quiet \ufffd\ufffd"


def test_probe_paths_must_be_absolute_and_normalised(tree: Tree) -> None:
    probe = tree.probe()
    with pytest.raises(ValueError, match="absolute and normalised"):
        probe.read("proc/cmdline")
    with pytest.raises(ValueError, match="absolute and normalised"):
        probe.read("/proc/../../etc/passwd")


def test_node_kinds(tree: Tree) -> None:
    tree.chardev("/dev/nsm", 0o600, 10, 125)
    tree.write("/dev/file", "")
    probe = tree.probe()
    nsm = probe.node("/dev/nsm")
    assert nsm is not None
    assert nsm.kind == "char"
    assert probe.node("/dev/file") is not None
    assert probe.node("/dev/file").kind == "file"  # type: ignore[union-attr]
    assert probe.node("/dev").kind == "dir"  # type: ignore[union-attr]
    assert probe.node("/dev/missing") is None
    fifo = tree.path("/dev/fifo")
    os.mkfifo(fifo)
    assert probe.node("/dev/fifo").kind == "other"  # type: ignore[union-attr]


def test_listdir(tree: Tree) -> None:
    tree.vulnerabilities({"b": "x", "a": "y"})
    probe = tree.probe()
    assert probe.listdir("/sys/devices/system/cpu/vulnerabilities") == ["a", "b"]
    assert probe.listdir("/nope") is None


def test_snapshot_probe_does_not_borrow_host_facts(tmp_path: Path) -> None:
    probe = SystemReader(tmp_path)
    assert not probe.live
    assert probe.getrandom_ready() is None
    assert probe.wall_time() is None
    release, source = probe.kernel_release()
    assert release is None
    assert source == "/proc/sys/kernel/osrelease: absent"


def test_live_probe_reads_the_host() -> None:
    probe = SystemReader("/")
    assert probe.live
    assert probe.kernel_release() == (os.uname().release, "uname -r")
    assert probe.getrandom_ready() in (True, False)
    wall = probe.wall_time()
    assert wall is not None
    assert abs(wall - time.time()) < 60


def test_injected_facts(tmp_path: Path) -> None:
    probe = SystemReader(
        tmp_path,
        kernel_release="6.6.1",
        getrandom_ready=False,
        wall_clock=lambda: 42.0,
        monotonic_clock=lambda: 7.0,
    )
    assert probe.kernel_release() == ("6.6.1", "injected")
    assert probe.getrandom_ready() is False
    assert probe.wall_time() == 42.0
    assert probe.monotonic() == 7.0
    assert repr(probe) == f"SystemReader(root={str(tmp_path)!r})"


# --- whole-audit fuzz: arbitrary file contents never crash a check --------------------------

_FILES = [
    "/sys/devices/virtual/misc/hw_random/rng_current",
    "/sys/devices/virtual/misc/hw_random/rng_available",
    "/sys/devices/virtual/misc/hw_random/rng_quality",
    "/proc/cmdline",
    "/proc/sys/kernel/osrelease",
    "/sys/devices/system/clocksource/clocksource0/current_clocksource",
    "/sys/devices/system/clocksource/clocksource0/available_clocksource",
    "/sys/devices/system/cpu/vulnerabilities/spectre_v2",
    "/proc/swaps",
    "/proc/meminfo",
    "/proc/sys/vm/panic_on_oom",
    "/proc/sys/vm/overcommit_memory",
    "/sys/class/misc/nsm/dev",
    "/sys/bus/virtio/devices/virtio0/device",
    "/sys/class/ptp/ptp0/clock_name",
    "/proc/config.gz",  # MEM-3: raw bytes here are (almost always) not gzip
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.dictionaries(st.sampled_from(_FILES), st.binary(max_size=300), max_size=len(_FILES)))
def test_fuzz_file_contents_never_crash(tmp_path: Path, contents: dict[str, bytes]) -> None:
    root = tmp_path / f"fuzz{len(list(tmp_path.iterdir()))}"
    root.mkdir()
    tree = Tree(root)
    build_well_configured(tree)
    for path, data in contents.items():
        tree.write(path, data)
    findings = run(tree.probe())
    assert [f.id for f in findings] == [c.id for c in DEFAULT]
    for finding in findings:
        assert finding.status in Status
        assert finding.evidence
        if finding.status in (Status.WARN, Status.FAIL):
            assert finding.remediation, finding
