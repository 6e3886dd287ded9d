"""MEM-3 in the enclave audit: ``nokaslr`` and CONFIG_RANDOMIZE_BASE from /proc/config.gz."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from audit_trees import HARDENED_CONFIG, Tree, build_well_configured
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nitroguard._kernel import kaslr_disabled, parse_cmdline, parse_kernel_config
from nitroguard.audit import SystemReader, run
from nitroguard.audit._system import MAX_GZIP_SIZE
from nitroguard.findings import Finding, Status

MakeTree = Callable[[str], Tree]

NO_KASLR_CONFIG = HARDENED_CONFIG.replace(
    "CONFIG_RANDOMIZE_BASE=y", "# CONFIG_RANDOMIZE_BASE is not set"
)


def mem3(tree: Tree) -> Finding:
    (finding,) = run(tree.probe(), only=["MEM-3"])
    return finding


def test_randomize_base_y_passes_and_reports_evidence(make_tree: MakeTree) -> None:
    found = mem3(make_tree("well_configured"))
    assert found.status is Status.PASS
    assert found.remediation == ""
    assert "/proc/cmdline: no nokaslr" in found.evidence
    assert (
        "/proc/config.gz (7 options): CONFIG_RANDOMIZE_BASE=y, CONFIG_PARAVIRT_CLOCK=y, "
        "CONFIG_KVM_GUEST=y, CONFIG_NSM=y"
    ) in found.evidence


def test_randomize_base_not_set_warns(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    tree.kernel_config(NO_KASLR_CONFIG)
    found = mem3(tree)
    assert found.status is Status.WARN
    assert "CONFIG_RANDOMIZE_BASE is not set" in found.evidence
    assert "KASLR absent" in found.evidence
    assert "CONFIG_RANDOMIZE_BASE=y" in found.remediation
    assert "PCR0 and PCR1 move" in found.remediation


def test_missing_clock_options_are_reported(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    tree.kernel_config("CONFIG_RANDOMIZE_BASE=y\n# CONFIG_PARAVIRT_CLOCK is not set\n")
    found = mem3(tree)
    assert found.status is Status.PASS
    assert "CONFIG_PARAVIRT_CLOCK is not set, CONFIG_KVM_GUEST absent, CONFIG_NSM absent" in (
        found.evidence
    )
    assert "TIME-2 kernel side: CONFIG_PARAVIRT_CLOCK, CONFIG_KVM_GUEST not =y" in found.evidence


@pytest.mark.parametrize("cmdline", ["quiet nokaslr\n", "quiet -- nokaslr\n"])
def test_nokaslr_fails_even_with_kaslr_config(make_tree: MakeTree, cmdline: str) -> None:
    tree = make_tree("well_configured")
    tree.write("/proc/cmdline", cmdline)
    found = mem3(tree)
    assert found.status is Status.FAIL
    assert "/proc/cmdline has nokaslr" in found.evidence
    assert "PCR0 and PCR1 move" in found.remediation


def test_nokaslr_fails_without_config(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    tree.remove("/proc/config.gz")
    tree.write("/proc/cmdline", "nokaslr\n")
    assert mem3(tree).status is Status.FAIL


def test_missing_config_skips_plainly(make_tree: MakeTree) -> None:
    tree = make_tree("well_configured")
    tree.remove("/proc/config.gz")
    found = mem3(tree)
    assert found.status is Status.SKIP
    assert "/proc/config.gz: absent" in found.evidence
    assert "without CONFIG_IKCONFIG_PROC" in found.evidence


def _bomb(size: int) -> bytes:
    # Streamed so the test itself does not hold the decompressed bytes.
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"CONFIG_X=y\n" * 10_000
    parts = [comp.compress(block) for _ in range(size // len(block) + 1)]
    return b"".join(parts) + comp.flush()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (_bomb(64 * 1024 * 1024), f"decompresses to more than {MAX_GZIP_SIZE} bytes; refused"),
        (b"CONFIG_RANDOMIZE_BASE=y\n", "not valid gzip: Error -3 while decompressing data"),
        (gzip.compress(b"CONFIG_RANDOMIZE_BASE=y\n")[:-6], "not valid gzip: truncated stream"),
        (gzip.compress(b"CONFIG_RANDOMIZE_BASE=y\n") + b"xx", "not valid gzip: 2 bytes after"),
        (b"", "not valid gzip: truncated stream"),
        (b"\0" * (1024 * 1024 + 1), "larger than 1048576 bytes"),
    ],
    ids=["bomb", "plain-text", "truncated", "trailing", "empty", "too-large-compressed"],
)
def test_bad_config_gz_is_refused_precisely(make_tree: MakeTree, data: bytes, error: str) -> None:
    tree = make_tree("well_configured")
    tree.write("/proc/config.gz", data)
    read = tree.probe().read_gzip("/proc/config.gz")
    assert read.raw is None
    assert read.error is not None
    assert read.error.startswith(error), read.error
    found = mem3(tree)
    assert found.status is Status.WARN
    assert error in found.evidence
    assert found.remediation.startswith("Kernel config unreadable.")


def test_bomb_is_64_mib_but_compressed_small() -> None:
    data = _bomb(64 * 1024 * 1024)
    assert len(data) < 1024 * 1024  # so the refusal above is the decompressed cap


def test_exactly_at_the_cap_is_accepted(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    tree.write("/proc/config.gz", gzip.compress(b"#" * 100))
    probe = SystemReader(tmp_path)
    assert probe.read_gzip("/proc/config.gz", max_size=100).raw == "#" * 100
    refused = probe.read_gzip("/proc/config.gz", max_size=99)
    assert refused.error == "decompresses to more than 99 bytes; refused"


def test_outside_an_enclave_skips_with_would(make_tree: MakeTree) -> None:
    tree = make_tree("laptop")
    tree.kernel_config(NO_KASLR_CONFIG)
    found = mem3(tree)
    assert found.status is Status.SKIP
    assert found.evidence.startswith("outside a Nitro Enclave (would warn): ")


def test_kernel_config_parser() -> None:
    text = '# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="x y"\ngarbage\nCONFIG_A=m\n'
    assert parse_kernel_config(text) == {"CONFIG_A": "m", "CONFIG_B": None, "CONFIG_C": '"x y"'}


@pytest.mark.parametrize(
    ("cmdline", "why"),
    [
        ("quiet", None),
        ("kaslr", None),
        ('"nokaslr"', "nokaslr"),
        ("a -- nokaslr", "nokaslr (after --, but the x86 boot code still honours it)"),
    ],
)
def test_kaslr_disabled(cmdline: str, why: str | None) -> None:
    assert kaslr_disabled(parse_cmdline(cmdline)) == why


@settings(max_examples=80, deadline=None)
@given(
    st.text(max_size=400) | st.text(alphabet="CONFIG_RANDOMIZE_BASE=yn# isnotet\n", max_size=200)
)
def test_fuzz_kernel_config_parser(text: str) -> None:
    parsed = parse_kernel_config(text)
    assert all(name.startswith("CONFIG_") for name in parsed)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=400), st.booleans())
def test_fuzz_config_gz_never_crashes(tmp_path: Path, payload: bytes, compress: bool) -> None:
    root = tmp_path / f"fuzz{len(list(tmp_path.iterdir()))}"
    root.mkdir()
    tree = Tree(root)
    build_well_configured(tree)
    tree.write("/proc/config.gz", gzip.compress(payload) if compress else payload)
    found = mem3(tree)
    assert found.status in (Status.PASS, Status.WARN)
    if found.status is Status.WARN:
        assert found.remediation
