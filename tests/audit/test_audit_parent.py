"""Parent-side audit (`nitroguard audit --parent`, `run_parent`): CPU-2, ATT-2, VS-5, ALLOC-1.

Fake sysfs trees are real files under tmp_path laid out like a parent instance's
``/sys/module/nitro_enclaves`` and ``/sys/devices/system/cpu``; the CLI runs in real
subprocesses; the parsers are fuzzed with Hypothesis.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from audit_trees import Tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nitroguard.audit import SystemReader, run_parent
from nitroguard.audit._facts import gather_parent
from nitroguard.audit._parent import (
    check_allocator,
    check_att2_parent,
    check_cpu2,
    check_vs5_parent,
)
from nitroguard.audit._parent_parse import (
    ALLOCATOR_PATH,
    CPU_DIR,
    MAX_CPU_ID,
    MAX_DESCRIBE_SIZE,
    NE_CPUS_PATH,
    NE_MODULE_DIR,
    EnclaveInfo,
    format_cpu_list,
    parse_allocator_config,
    parse_cid,
    parse_cpu_list,
    parse_describe_enclaves,
)
from nitroguard.errors import ConfigError, Reason
from nitroguard.findings import Finding, Status

# A c5.xlarge-like parent: 4 vCPUs, SMT siblings 0+2 and 1+3 (Intel numbering).
C5_XLARGE = ((0, 2), (1, 3))
# Siblings numbered adjacently (0+1, 2+3), as on some AMD instances.
ADJACENT = ((0, 1), (2, 3), (4, 5))

# What nitro-cli describe-enclaves prints (aws-nitro-enclaves-cli EnclaveDescribeInfo).
PRODUCTION = [
    {
        "EnclaveName": "signer",
        "EnclaveID": "i-0f1e2d3c4b5a69788-enc18c2b3a4d5e6f70",
        "ProcessID": 4242,
        "EnclaveCID": 16,
        "NumberOfCPUs": 2,
        "CPUIDs": [1, 3],
        "MemoryMiB": 1024,
        "State": "RUNNING",
        "Flags": "NONE",
        "Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": "ab" * 48},
    }
]
DEBUG = [{**PRODUCTION[0], "Flags": "DEBUG_MODE"}]

# /etc/nitro_enclaves/allocator.yaml as aws-nitro-enclaves-cli installs it.
DEFAULT_ALLOCATOR = """---
# Enclave configuration file.
#
# How much memory to allocate for enclaves (in MiB).
memory_mib: 512
#
# How many CPUs to reserve for enclaves.
cpu_count: 2
#
# Alternatively, the exact CPUs to be reserved for the enclave can be explicitly
# configured by using `cpu_pool` (like below), instead of `cpu_count`.
# Note: cpu_count and cpu_pool conflict with each other. Only use exactly one of them.
# Example of reserving CPUs 2, 3, and 6 through 9:
# cpu_pool: 2,3,6-9
"""


def parent_tree(
    tree: Tree,
    cores: Sequence[Sequence[int]] = C5_XLARGE,
    pool: str | None = "1,3\n",
    *,
    offline: Sequence[int] = (),
    smt_active: str | None = "1\n",
    allocator: str | None = None,
    module: bool = True,
) -> Tree:
    """Lay out a parent's sysfs: driver module, pool, online CPUs and their siblings.

    An offline CPU has no ``topology/`` directory (the kernel removes it when the
    CPU goes down), and its online siblings no longer list it: as after the NE
    driver has taken the pool.
    """
    if module:
        tree.path(f"{NE_MODULE_DIR}/parameters").mkdir(parents=True)
        if pool is not None:
            tree.write(NE_CPUS_PATH, pool)
    everything = {cpu for core in cores for cpu in core}
    tree.write(f"{CPU_DIR}/online", format_cpu_list(everything - set(offline)) + "\n")
    if smt_active is not None:
        tree.write(f"{CPU_DIR}/smt/active", smt_active)
    for core in cores:
        alive = [cpu for cpu in core if cpu not in offline]
        for cpu in core:
            tree.write(f"{CPU_DIR}/cpu{cpu}/online", "0\n" if cpu in offline else "1\n")
            if cpu not in offline:
                tree.write(
                    f"{CPU_DIR}/cpu{cpu}/topology/thread_siblings_list",
                    format_cpu_list(alive) + "\n",
                )
    if allocator is not None:
        tree.write(ALLOCATOR_PATH, allocator)
    return tree


def findings(tree: Tree, enclaves: Any = None, expect_cid: int | None = None) -> dict[str, Finding]:
    return {f.id: f for f in run_parent(SystemReader(tree.root), enclaves, expect_cid)}


def cpu2(tree: Tree, enclaves: Any = None) -> Finding:
    return findings(tree, enclaves)["CPU-2"]


# --- cpu-list parser ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,3", {1, 3}),
        ("2-3", {2, 3}),
        ("1,3\n\n", {1, 3}),  # param_get_string adds "\n" to the "\n" echo wrote
        ("  1 ,\t3 ", {1, 3}),
        ("1,,3", {1, 3}),
        ("2-3,6-9", {2, 3, 6, 7, 8, 9}),
        ("0-7:2/4", {0, 1, 4, 5}),
        ("4-4", {4}),
        ("", set()),
        (" \n", set()),
        (str(MAX_CPU_ID), {MAX_CPU_ID}),
    ],
)
def test_parse_cpu_list(text: str, expected: set[int]) -> None:
    assert parse_cpu_list(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1-", r"'1-' is not a CPU number.*needs both ends"),
        ("-1", r"'-1' is not a CPU number.*needs both ends"),
        ("3-1", r"range '3-1' runs backwards \(3 > 1\)"),
        ("0-99999999", r"CPU number '99999999' in '0-99999999' is larger than 8191"),
        ("0-8192", r"CPU number 8192 in '0-8192' is larger than 8191"),
        ("1" * 5000, r"longer than 4096 characters"),
        ("N", r"'N', the last CPU, is not supported"),
        ("0-N", r"'N', the last CPU, is not supported"),
        ("a", r"'a' is not a CPU number"),
        ("+1", r"'\+1' is not a CPU number"),
        ("\uff11", r"is not a CPU number"),  # fullwidth digit one: int() would take it
        ("1_0", r"'1_0' is not a CPU number"),
        ("0-7:5/4", r"group size must be > 0 and at least the used count \(5/4\)"),
        ("0-7:1/0", r"group size must be > 0.*\(1/0\)"),
        ("1;3", r"'1;3' is not a CPU number"),
        ("1\u00a03", r"is not a CPU number"),  # no-break space: not a kernel separator
    ],
)
def test_parse_cpu_list_rejects_precisely(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse_cpu_list(text, what="ne_cpus")
    assert info.value.reason is Reason.MALFORMED_CPU_LIST
    assert info.value.message.startswith("ne_cpus: ")


def test_format_cpu_list() -> None:
    assert format_cpu_list([]) == "(none)"
    assert format_cpu_list({3, 1, 2, 6, 8, 9}) == "1-3,6,8-9"
    assert format_cpu_list([5]) == "5"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789-,:/ \tN\nx+"), max_size=40) | st.text())
def test_fuzz_cpu_list_only_config_errors(text: str) -> None:
    try:
        cpus = parse_cpu_list(text)
    except ConfigError as exc:
        error: ConfigError | None = exc
    else:
        error = None
        assert all(0 <= cpu <= MAX_CPU_ID for cpu in cpus)
    assert error is None or (error.reason is Reason.MALFORMED_CPU_LIST and error.message)


@settings(max_examples=300, deadline=None)
@given(st.frozensets(st.integers(0, MAX_CPU_ID), max_size=64))
def test_fuzz_cpu_list_round_trips(cpus: frozenset[int]) -> None:
    text = format_cpu_list(cpus)
    assert parse_cpu_list("" if not cpus else text) == cpus


# --- CPU-2 on fake sysfs trees ----------------------------------------------------------


def test_cpu2_complete_sibling_sets_pass(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, "1,3\n")
    finding = cpu2(tree)
    assert finding.status is Status.PASS, finding
    assert f"{NE_CPUS_PATH} = '1,3\\n': pool 1,3" in finding.evidence
    assert "CPU 0's core is 0,2" in finding.evidence


def test_cpu2_range_form_with_adjacent_siblings_passes(tree: Tree) -> None:
    parent_tree(tree, ADJACENT, "2-5\n")
    finding = cpu2(tree)
    assert finding.status is Status.PASS, finding
    assert "pool 2-5" in finding.evidence


def test_cpu2_odd_whitespace_passes(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, " 1 ,\t3 \n\n")
    assert cpu2(tree).status is Status.PASS


def test_cpu2_half_a_core_fails(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, "1\n")
    finding = cpu2(tree)
    assert finding.status is Status.FAIL
    assert "half a core: CPU 1 is in the pool but its sibling(s) 3 are not" in finding.evidence
    assert "siblings 1,3" in finding.evidence
    assert "thread_siblings_list" in finding.remediation


def test_cpu2_cpu0_core_in_pool_fails(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, "2\n")  # CPU 2 is CPU 0's SMT sibling
    finding = cpu2(tree)
    assert finding.status is Status.FAIL
    assert "CPU 0's sibling(s) 2 are in the pool" in finding.evidence


def test_cpu2_cpu0_itself_in_pool_fails(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, "0,2\n")
    finding = cpu2(tree)
    assert finding.status is Status.FAIL
    assert "CPU 0 is in the pool (it must stay with the parent)" in finding.evidence


def test_cpu2_no_smt_single_thread_cores(tree: Tree) -> None:
    # Graviton: no SMT, each CPU is its own core; only CPU 0 matters.
    parent_tree(tree, ((0,), (1,), (2,), (3,)), "2-3\n", smt_active="0\n")
    assert cpu2(tree).status is Status.PASS


def test_cpu2_module_not_loaded_skips_plainly(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, None, module=False)
    finding = cpu2(tree)
    assert finding.status is Status.SKIP
    assert finding.evidence.startswith("the nitro_enclaves kernel module is not loaded")


def test_cpu2_empty_pool_skips(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, "\n")
    finding = cpu2(tree)
    assert finding.status is Status.SKIP
    assert "the NE CPU pool is empty" in finding.evidence


def test_cpu2_unreadable_pool_warns(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, None)
    finding = cpu2(tree)
    assert finding.status is Status.WARN
    assert finding.evidence == f"{NE_CPUS_PATH}: absent"


@pytest.mark.parametrize(
    ("pool", "match"),
    [("1-\n", "needs both ends"), ("3-1\n", "runs backwards"), ("1-99999\n", "larger than 8191")],
)
def test_cpu2_malformed_pool_warns_with_the_parse_error(tree: Tree, pool: str, match: str) -> None:
    parent_tree(tree, C5_XLARGE, pool)
    finding = cpu2(tree)
    assert finding.status is Status.WARN
    assert finding.evidence.startswith(f"{NE_CPUS_PATH}: ")
    assert match in finding.evidence


def test_cpu2_pool_taken_by_the_driver_is_offline(tree: Tree) -> None:
    # After the allocator has run, the driver has offlined the pool CPUs: their
    # topology/ is gone. The parent keeps its full cores: pass, and say why.
    parent_tree(tree, C5_XLARGE, "1,3\n", offline=(1, 3))
    finding = cpu2(tree)
    assert finding.status is Status.PASS, finding
    assert "the pool CPUs are offline" in finding.evidence
    assert "full 2-thread core" in finding.evidence


def test_cpu2_offline_half_core_leaves_a_lonely_sibling(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, "1\n", offline=(1,))
    finding = cpu2(tree)
    assert finding.status is Status.WARN
    assert "online parent CPU(s) 3 have fewer siblings than the 2 of a full core" in (
        finding.evidence
    )


def test_cpu2_offline_pool_without_smt_passes(tree: Tree) -> None:
    parent_tree(tree, ((0,), (1,), (2,)), "1-2\n", offline=(1, 2), smt_active="0\n")
    finding = cpu2(tree)
    assert finding.status is Status.PASS
    assert "no SMT" in finding.evidence


def test_cpu2_pool_cpu_without_topology_that_is_online_warns(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, "1,3\n")
    tree.remove(f"{CPU_DIR}/cpu3/topology/thread_siblings_list")
    finding = cpu2(tree)
    assert finding.status is Status.WARN
    assert "CPU 3: no topology in sysfs and not offline" in finding.evidence


def test_cpu2_malformed_sibling_list_warns(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, "1,3\n")
    tree.write(f"{CPU_DIR}/cpu3/topology/thread_siblings_list", "3-1\n")
    finding = cpu2(tree)
    assert finding.status is Status.WARN
    assert "cpu3/topology/thread_siblings_list: range '3-1' runs backwards" in finding.evidence


def test_cpu2_enclave_cpus_outside_the_pool_warn(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, "1,3\n")
    stray = [{**PRODUCTION[0], "CPUIDs": [1, 2]}]
    finding = cpu2(tree, json.dumps(stray))
    assert finding.status is Status.WARN
    assert "runs on CPU(s) 2 outside the pool" in finding.evidence
    assert "CPUIDs 1,3" in cpu2(tree, json.dumps(PRODUCTION)).evidence
    half = [{**PRODUCTION[0], "CPUIDs": [1]}]
    finding = cpu2(tree, json.dumps(half))
    assert finding.status is Status.WARN
    assert "has 1 CPU(s), not a whole number of 2-thread cores" in finding.evidence


def test_gather_parent_reads_only_the_cpus_it_needs(tree: Tree) -> None:
    parent_tree(tree, ADJACENT, "2-3\n")
    facts = gather_parent(SystemReader(tree.root))
    assert sorted(facts.siblings) == [0, 1, 2, 3, 4, 5]
    assert sorted(facts.cpu_online) == [2, 3]
    assert facts.enclaves is None


# --- describe-enclaves: ATT-2 and VS-5 ------------------------------------------------------


def test_parse_describe_enclaves_production_sample() -> None:
    (enclave,) = parse_describe_enclaves(json.dumps(PRODUCTION, indent=4).encode())
    assert enclave == EnclaveInfo(
        enclave_id="i-0f1e2d3c4b5a69788-enc18c2b3a4d5e6f70",
        cid=16,
        state="RUNNING",
        flags="NONE",
        name="signer",
        cpu_ids=(1, 3),
        memory_mib=1024,
    )
    assert not enclave.debug
    assert enclave.running
    assert parse_describe_enclaves("[]\n") == ()
    # Older nitro-cli: no EnclaveName, CPUIDs or Measurements.
    old = [{"EnclaveID": "i-1-enc2", "EnclaveCID": 5, "State": "RUNNING", "Flags": "NONE"}]
    assert parse_describe_enclaves(json.dumps(old))[0].cpu_ids is None


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty input"),
        (b"[{", r"not JSON: Expecting property name enclosed in double quotes at line 1"),
        (b"\xff[]", r"not UTF-8 \(byte 0\)"),
        (b'{"EnclaveID": "x"}', "expected a JSON array of enclaves .* got one object"),
        (b'"RUNNING"', "expected a JSON array of enclaves, got str"),
        (b"[1]", r"enclave #0 is not an object"),
        (b'[{"EnclaveCID": 16, "State": "RUNNING", "Flags": "NONE"}]', "missing 'EnclaveID'"),
        (
            b'[{"EnclaveID": "e", "EnclaveCID": true, "State": "RUNNING", "Flags": "NONE"}]',
            "'EnclaveCID' is not an integer",
        ),
        (
            b'[{"EnclaveID": "e", "EnclaveCID": -1, "State": "RUNNING", "Flags": "NONE"}]',
            "'EnclaveCID' = -1 is out of range",
        ),
        (
            b'[{"EnclaveID": "e", "EnclaveCID": 16, "State": "RUNNING", "Flags": 1}]',
            "'Flags' is not a string",
        ),
        (
            b'[{"EnclaveID": "e", "EnclaveID": "f", "EnclaveCID": 4, "State": "R", "Flags": ""}]',
            "duplicate key 'EnclaveID'",
        ),
        (b"[NaN]", "NaN is not valid JSON"),
        (
            b'[{"EnclaveID": "e", "EnclaveCID": 16, "State": "RUNNING", "Flags": "NONE", '
            b'"CPUIDs": [1, "3"]}]',
            "CPUIDs holds '3', not a CPU number",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"[" + b"1" * 5000 + b"]", "not JSON"),
        (b" " * (MAX_DESCRIBE_SIZE + 1), "input larger than 1048576 bytes"),
    ],
)
def test_parse_describe_enclaves_rejects_precisely(data: bytes, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse_describe_enclaves(data)
    assert info.value.reason is Reason.MALFORMED_DESCRIBE_ENCLAVES
    assert info.value.message.startswith("describe-enclaves: ")


def test_att2_production_passes_and_reports_each_enclave(tree: Tree) -> None:
    two = [*PRODUCTION, {**PRODUCTION[0], "EnclaveID": "i-2-enc3", "EnclaveCID": 17}]
    finding = findings(tree, json.dumps(two))["ATT-2"]
    assert finding.status is Status.PASS
    assert finding.evidence == (
        "EnclaveID 'i-0f1e2d3c4b5a69788-enc18c2b3a4d5e6f70' ('signer'), CID 16, "
        "Flags 'NONE', State 'RUNNING'; EnclaveID 'i-2-enc3' ('signer'), CID 17, "
        "Flags 'NONE', State 'RUNNING'"
    )


def test_att2_debug_mode_fails(tree: Tree) -> None:
    finding = findings(tree, json.dumps([*PRODUCTION, *DEBUG]))["ATT-2"]
    assert finding.status is Status.FAIL
    assert "Flags 'DEBUG_MODE', State 'RUNNING'" in finding.evidence
    assert "terminate-enclave" in finding.remediation


def test_att2_debug_mode_enclave_that_is_terminating_warns(tree: Tree) -> None:
    dying = [{**DEBUG[0], "State": "TERMINATING"}]
    assert findings(tree, json.dumps(dying))["ATT-2"].status is Status.WARN


def test_att2_and_vs5_skip_without_input(tree: Tree) -> None:
    result = findings(tree)
    assert result["ATT-2"].status is Status.SKIP
    assert "nitro-cli describe-enclaves" in result["ATT-2"].evidence
    assert result["VS-5"].status is Status.SKIP
    assert findings(tree, "[]")["ATT-2"].evidence == "describe-enclaves lists no enclaves"


def test_vs5_expected_cid_matches(tree: Tree) -> None:
    finding = findings(tree, json.dumps(PRODUCTION), expect_cid=16)["VS-5"]
    assert finding.status is Status.PASS
    assert finding.evidence.startswith("CID 16: EnclaveID 'i-0f1e2d3c4b5a69788")


def test_vs5_no_running_enclave_has_the_cid_fails(tree: Tree) -> None:
    finding = findings(tree, json.dumps(PRODUCTION), expect_cid=17)["VS-5"]
    assert finding.status is Status.FAIL
    assert finding.evidence.startswith("no running enclave has CID 17 (EnclaveID")
    assert "ATT-6" in finding.remediation
    gone = [{**PRODUCTION[0], "State": "TERMINATING"}]
    finding = findings(tree, json.dumps(gone), expect_cid=16)["VS-5"]
    assert finding.status is Status.FAIL
    assert "belongs to an enclave that is not running" in finding.evidence
    finding = findings(tree, "[]", expect_cid=16)["VS-5"]
    assert finding.evidence == "no running enclave has CID 16 (no enclaves listed)"


def test_vs5_skip_lists_the_running_cids(tree: Tree) -> None:
    finding = findings(tree, json.dumps(PRODUCTION))["VS-5"]
    assert finding.status is Status.SKIP
    assert finding.evidence == "no expected CID given (--expect-cid N): running CIDs 16"


def test_vs5_pure_check_fails_closed_without_enclaves(tree: Tree) -> None:
    facts = gather_parent(SystemReader(tree.root), None, 16)
    assert check_vs5_parent(facts).status is Status.FAIL
    assert check_att2_parent(facts).status is Status.SKIP


def test_vs5_duplicate_cid_fails(tree: Tree) -> None:
    twice = [*PRODUCTION, {**PRODUCTION[0], "EnclaveID": "i-2-enc3"}]
    finding = findings(tree, json.dumps(twice), expect_cid=16)["VS-5"]
    assert finding.status is Status.FAIL
    assert "CID 16 is claimed twice" in finding.evidence


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("3", "enclave CID 3 is out of range"),
        (2, "enclave CID 2 is out of range"),
        ("4294967295", "out of range"),
        ("16x", "'16x' is not a decimal integer"),
        ("99999999999", "is not a decimal integer"),
        (True, "is not an integer"),
    ],
)
def test_parse_cid_rejects(value: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_cid(value)
    assert parse_cid(" 16 ") == 16
    assert parse_cid(4294967294) == 4294967294


def test_run_parent_usage_errors(tree: Tree) -> None:
    with pytest.raises(ConfigError, match="expected CID needs the describe-enclaves output"):
        run_parent(SystemReader(tree.root), None, 16)
    with pytest.raises(ConfigError, match="unknown check 'CPU-9'"):
        run_parent(SystemReader(tree.root), only=["CPU-9"])
    with pytest.raises(ConfigError, match="not JSON") as info:
        run_parent(SystemReader(tree.root), b"[{")
    assert info.value.reason is Reason.MALFORMED_DESCRIBE_ENCLAVES
    only = run_parent(SystemReader(tree.root), only=["VS", "CPU-2"])
    assert [f.id for f in only] == ["CPU-2", "VS-5"]
    parsed = parse_describe_enclaves(json.dumps(PRODUCTION))
    assert run_parent(SystemReader(tree.root), parsed, 16, only=["VS-5"])[0].status is Status.PASS


_ENTRY_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.text(max_size=300),
    st.lists(st.integers(-5, 9000) | st.text(max_size=3), max_size=5),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
_KEYS = st.sampled_from(
    ["EnclaveID", "EnclaveCID", "State", "Flags", "EnclaveName", "CPUIDs", "MemoryMiB", "X"]
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.lists(st.dictionaries(_KEYS, _ENTRY_VALUES, max_size=8), max_size=4).map(
            lambda doc: json.dumps(doc).encode()
        ),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
            max_leaves=20,
        ).map(json.dumps),
    )
)
def test_fuzz_describe_enclaves_only_config_errors(data: bytes | str) -> None:
    try:
        enclaves = parse_describe_enclaves(data)
    except ConfigError as exc:
        error: ConfigError | None = exc
        enclaves = ()
    else:
        error = None
    assert error is None or error.reason is Reason.MALFORMED_DESCRIBE_ENCLAVES
    for enclave in enclaves:
        assert isinstance(enclave.cid, int)
        assert 0 <= enclave.cid < 2**64
        assert isinstance(enclave.debug, bool)
        assert enclave.describe()


# --- allocator.yaml: ALLOC-1 -----------------------------------------------------------------


def test_parse_allocator_default_file() -> None:
    config = parse_allocator_config(DEFAULT_ALLOCATOR)
    assert (config.memory_mib, config.cpu_count, config.cpu_pool) == (512, 2, None)


def test_parse_allocator_subset() -> None:
    text = "memory_mib: '2048'  # two GiB\r\ncpu_pool: \"2,3,6-9\"\n...\nignored after end\n"
    config = parse_allocator_config(text)
    assert config.memory_mib == 2048
    assert config.cpu_pool == {2, 3, 6, 7, 8, 9}
    assert config.cpu_pool_text == "2,3,6-9"
    assert parse_allocator_config("cpu_pool: 3 # one\n").cpu_pool == {3}
    assert parse_allocator_config("") == parse_allocator_config("---\n# nothing\n")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("memory_mib: 512\n  cpu_count: 2\n", "line 2: indented line"),
        ("- memory_mib: 512\n", "line 1: a YAML list"),
        ("memory_mib: 512\nmemory_mib: 1024\n", "line 2: memory_mib is set twice"),
        ("memory_mb: 512\n", "line 1: unknown key 'memory_mb'"),
        ("memory_mib: 5l2\n", "line 1: memory_mib: '5l2' is not a decimal integer"),
        ("memory_mib: 99999999999\n", "is not a decimal integer"),
        ("memory_mib: 4294967295\n", "larger than 2147483647"),
        ("memory_mib: 0512\n", "'0512' has a leading zero \\(octal in YAML 1.1\\)"),
        ("cpu_count:\n", "line 1: cpu_count has no value"),
        ("cpu_count:2\n", "a space must follow the ':'"),
        ("cpu_pool: 3-1\n", "line 1: cpu_pool: range '3-1' runs backwards"),
        ("cpu_pool: [1, 3]\n", "YAML syntax outside the supported subset"),
        ("cpu_pool: '1,3\n", "unterminated ' quote"),
        ("cpu_pool: '1,3' x\n", "unexpected text after the closing quote"),
        ('cpu_pool: "1\\,3"\n', "escapes in quoted values are not supported"),
        ("memory_mib 512\n", "'memory_mib 512' is not a 'key: value' line"),
        ("---\nmemory_mib: 1\n---\n", "line 3: a second YAML document"),
    ],
)
def test_parse_allocator_rejects_precisely(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse_allocator_config(text)
    assert info.value.reason is Reason.MALFORMED_ALLOCATOR_CONFIG
    assert info.value.message.startswith("allocator.yaml")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "---",
                "# c",
                "memory_mib: 512",
                "cpu_count: 2",
                "cpu_pool: 1,3",
                "  x: 1",
                "- a",
                "cpu_pool: '2-3' # c",
                "memory_mib:",
                "...",
                "",
            ]
        )
        | st.text(max_size=30),
        max_size=8,
    ).map("\n".join)
)
def test_fuzz_allocator_only_config_errors(text: str) -> None:
    try:
        config = parse_allocator_config(text)
    except ConfigError as exc:
        assert_reason(exc, Reason.MALFORMED_ALLOCATOR_CONFIG)
    else:
        assert config.memory_mib is None or 0 <= config.memory_mib <= 2**31 - 1


def assert_reason(exc: ConfigError, reason: Reason) -> None:
    assert exc.reason is reason
    assert exc.message


def alloc(tree: Tree) -> Finding:
    return findings(tree)["ALLOC-1"]


def test_alloc_default_file_with_applied_pool_passes(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, "1,3\n", offline=(1, 3), allocator=DEFAULT_ALLOCATOR)
    finding = alloc(tree)
    assert finding.status is Status.PASS, finding
    assert finding.evidence == f"{ALLOCATOR_PATH}: memory_mib 512, cpu_count 2"


def test_alloc_absent_skips_and_parse_error_fails(tree: Tree) -> None:
    parent_tree(tree)
    assert alloc(tree).status is Status.SKIP
    tree.write(ALLOCATOR_PATH, "memory_mib: lots\n")
    finding = alloc(tree)
    assert finding.status is Status.FAIL
    assert "allocator.yaml line 1: memory_mib: 'lots' is not a decimal integer" in (
        finding.evidence
    )


@pytest.mark.parametrize(
    ("text", "status", "match"),
    [
        ("memory_mib: 512\ncpu_count: 2\ncpu_pool: 1,3\n", Status.FAIL, "both cpu_count and"),
        ("memory_mib: 512\n", Status.FAIL, "neither cpu_count nor cpu_pool is set"),
        ("cpu_count: 2\n", Status.FAIL, "memory_mib is not set"),
        ("memory_mib: 32\ncpu_count: 2\n", Status.FAIL, "below the 64 MiB minimum"),
        ("memory_mib: 512\ncpu_count: 0\n", Status.FAIL, "cpu_count is 0"),
        ("memory_mib: 512\ncpu_pool: 1\n", Status.FAIL, "half a core: CPU 1"),
        ("memory_mib: 512\ncpu_pool: 0,2\n", Status.FAIL, "CPU 0 is in the pool"),
        ("memory_mib: 512\ncpu_count: 3\n", Status.WARN, "not a whole number of 2-thread"),
        ("memory_mib: 512\ncpu_count: 4\n", Status.WARN, "the live pool has 2 CPU(s) (1,3)"),
        ("memory_mib: 512\ncpu_pool: 1,3\n", Status.PASS, "cpu_pool 1,3"),
    ],
)
def test_alloc_semantics(tree: Tree, text: str, status: Status, match: str) -> None:
    parent_tree(tree, C5_XLARGE, "1,3\n", allocator=text)
    finding = alloc(tree)
    assert finding.status is status, finding
    assert match in finding.evidence


def test_alloc_pool_not_applied_warns(tree: Tree) -> None:
    parent_tree(tree, ADJACENT, "2-3\n", allocator="memory_mib: 512\ncpu_pool: 4-5\n")
    finding = alloc(tree)
    assert finding.status is Status.WARN
    assert "the live pool is 2-3: the allocator has not applied this file" in finding.evidence


def test_pure_checks_on_hand_built_facts(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, "1,3\n", allocator=DEFAULT_ALLOCATOR)
    facts = gather_parent(SystemReader(tree.root), parse_describe_enclaves(json.dumps(DEBUG)), 16)
    assert check_cpu2(facts).status is Status.PASS
    assert check_att2_parent(facts).status is Status.FAIL
    assert check_vs5_parent(facts).status is Status.PASS
    assert check_allocator(facts).status is Status.PASS


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ne_cpus=st.text(max_size=20),
    siblings=st.text(max_size=12),
    online=st.text(alphabet="0123-,\n", max_size=8),
    allocator=st.text(max_size=60),
)
def test_fuzz_whole_parent_audit_never_crashes(
    tmp_path_factory: pytest.TempPathFactory,
    ne_cpus: str,
    siblings: str,
    online: str,
    allocator: str,
) -> None:
    tree = Tree(tmp_path_factory.mktemp("fuzz"))
    parent_tree(tree, C5_XLARGE, "1,3\n", allocator="memory_mib: 1\n")
    tree.write(NE_CPUS_PATH, ne_cpus)
    tree.write(f"{CPU_DIR}/cpu1/topology/thread_siblings_list", siblings)
    tree.write(f"{CPU_DIR}/online", online)
    tree.write(ALLOCATOR_PATH, allocator)
    for finding in run_parent(SystemReader(tree.root), json.dumps(PRODUCTION), 16):
        assert finding.evidence
        assert finding.status in Status


# --- CLI through real subprocesses --------------------------------------------------------


def audit(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "nitroguard", "audit", *args],
        capture_output=True,
        input=stdin,
        check=False,
        timeout=90,
    )


def audit_json(*args: str, stdin: bytes | None = None) -> tuple[int, dict[str, Any]]:
    out = audit("--json", *args, stdin=stdin)
    assert out.stderr == b"", out.stderr
    return out.returncode, json.loads(out.stdout)


def test_cli_parent_production_passes(tree: Tree, tmp_path: Path) -> None:
    parent_tree(tree, C5_XLARGE, "1,3\n", offline=(1, 3), allocator=DEFAULT_ALLOCATOR)
    describe = tmp_path / "describe.json"
    describe.write_text(json.dumps(PRODUCTION, indent=4))
    args = ["--parent", "--root", str(tree.root), "--describe-enclaves", str(describe)]
    code, doc = audit_json(*args, "--expect-cid", "16", "--strict")
    assert code == 0, doc
    assert [f["id"] for f in doc["findings"]] == ["CPU-2", "ATT-2", "VS-5", "ALLOC-1"]
    assert doc["summary"] == {"pass": 4, "warn": 0, "fail": 0, "skip": 0}
    for finding in doc["findings"]:
        assert set(finding) == {"id", "title", "status", "evidence", "remediation"}


def test_cli_parent_reads_describe_enclaves_from_stdin(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, "1\n")
    stdin = json.dumps(DEBUG).encode()
    args = ["--parent", "--root", str(tree.root), "--describe-enclaves", "-"]
    code, doc = audit_json(*args, "--expect-cid", "17", stdin=stdin)
    assert code == 1
    status = {f["id"]: f["status"] for f in doc["findings"]}
    assert status == {"CPU-2": "fail", "ATT-2": "fail", "VS-5": "fail", "ALLOC-1": "skip"}
    table = audit(*args, "--only", "ATT", stdin=stdin)
    assert table.returncode == 1
    text = table.stdout.decode()
    assert text.startswith(f"nitroguard audit --parent (root {tree.root})\n\nattestation\n")
    assert "  FAIL  ATT-2  No enclave runs in debug mode (describe-enclaves)" in text
    assert "Flags 'DEBUG_MODE'" in text
    assert "fix: Terminate it" in text
    assert text.rstrip().endswith("summary: 0 pass, 0 warn, 1 fail, 0 skip")


def test_cli_parent_strict_fails_on_warn(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, "1-\n")
    assert audit_json("--parent", "--root", str(tree.root))[0] == 0
    code, doc = audit_json("--parent", "--root", str(tree.root), "--strict")
    assert code == 1
    assert doc["summary"]["warn"] == 1


@pytest.mark.parametrize(
    ("stdin", "match"),
    [
        (b"[{", b"describe-enclaves: not JSON"),
        (b"", b"describe-enclaves: empty input"),
        (b'{"EnclaveID": 1}', b"got one object"),
        (b"[" * 200_000, b"describe-enclaves: "),
        (b" " * (MAX_DESCRIBE_SIZE + 10), b"input larger than 1048576 bytes"),
    ],
)
def test_cli_malformed_describe_enclaves_exits_2_without_traceback(
    tree: Tree, stdin: bytes, match: bytes
) -> None:
    out = audit("--parent", "--root", str(tree.root), "--describe-enclaves", "-", stdin=stdin)
    assert out.returncode == 2, out
    assert match in out.stderr
    assert b"Traceback" not in out.stderr
    assert out.stdout == b""


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--parent", "--expect-cid", "16"], b"--expect-cid needs --describe-enclaves"),
        (["--parent", "--describe-enclaves", "-", "--expect-cid", "3"], b"out of range"),
        (["--parent", "--describe-enclaves", "-", "--expect-cid", "x"], b"not a decimal"),
        (["--describe-enclaves", "-"], b"--describe-enclaves needs --parent"),
        (["--expect-cid", "16"], b"--expect-cid needs --parent"),
        (["--parent", "--nsm", "none"], b"do not apply to --parent"),
        (["--parent", "--only", "RNG-1"], b"unknown check 'RNG-1'"),
        (["--parent", "--describe-enclaves", "/nonexistent/describe.json"], b"cannot read"),
    ],
)
def test_cli_parent_usage_errors_exit_2(tree: Tree, args: list[str], match: bytes) -> None:
    out = audit("--root", str(tree.root), *args, stdin=b"[]")
    assert out.returncode == 2, out
    assert match in out.stderr
    assert b"Traceback" not in out.stderr


def test_cli_parent_smoke_on_this_machine() -> None:
    # The real parent-side view of this machine: no nitro_enclaves module here, so
    # CPU-2 skips with a plain message; nothing may crash.
    out = audit("--parent", "--json", "--describe-enclaves", "-", stdin=b"[]")
    assert out.returncode in (0, 1), out.stderr
    doc = json.loads(out.stdout)
    found = {f["id"]: f for f in doc["findings"]}
    assert sorted(found) == ["ALLOC-1", "ATT-2", "CPU-2", "VS-5"]
    if not Path(NE_MODULE_DIR).exists():
        assert found["CPU-2"]["status"] == "skip"
        assert "nitro_enclaves kernel module is not loaded" in found["CPU-2"]["evidence"]
    table = audit("--parent")
    assert table.returncode == out.returncode
    assert b"summary:" in table.stdout


def test_describe_enclaves_bounds() -> None:
    entry = {"EnclaveID": "e", "EnclaveCID": 16, "State": "RUNNING", "Flags": "NONE"}
    with pytest.raises(ConfigError, match="more than 1024 enclaves listed"):
        parse_describe_enclaves(json.dumps([entry] * 1025))
    with pytest.raises(ConfigError, match="'EnclaveID' is longer than 256 characters"):
        parse_describe_enclaves(json.dumps([{**entry, "EnclaveID": "e" * 257}]))
    with pytest.raises(ConfigError, match="more than 8192 CPUIDs"):
        parse_describe_enclaves(json.dumps([{**entry, "CPUIDs": [1] * 8193}]))


def test_cpu2_topology_gaps_warn(tree: Tree) -> None:
    parent_tree(tree, C5_XLARGE, "1,3\n")
    tree.write(f"{CPU_DIR}/cpu3/topology/thread_siblings_list", "\n")
    tree.remove(f"{CPU_DIR}/cpu0/topology/thread_siblings_list")
    finding = cpu2(tree)
    assert finding.status is Status.WARN
    assert "cpu0/topology/thread_siblings_list: absent (cannot see CPU 0's core)" in (
        finding.evidence
    )
    assert "cpu3/topology/thread_siblings_list is empty" in finding.evidence
    tree.remove(f"{CPU_DIR}/cpu3/topology/thread_siblings_list")
    tree.path(f"{CPU_DIR}/cpu3/topology/thread_siblings_list").mkdir()
    assert "not a regular file" in cpu2(tree).evidence


@pytest.mark.parametrize(
    ("online", "match"),
    [
        (None, "/sys/devices/system/cpu/online: absent: cannot see the parent's cores"),
        ("0-\n", "'0-' is not a CPU number"),
        ("2\n", "no readable sibling list for any online parent CPU"),
    ],
)
def test_cpu2_offline_pool_without_parent_topology_warns(
    tree: Tree, online: str | None, match: str
) -> None:
    parent_tree(tree, C5_XLARGE, "1,3\n", offline=(1, 3))
    tree.remove(f"{CPU_DIR}/online")
    tree.remove(f"{CPU_DIR}/cpu2/topology/thread_siblings_list")
    if online is not None:
        tree.write(f"{CPU_DIR}/online", online)
    finding = cpu2(tree)
    assert finding.status is Status.WARN
    assert match in finding.evidence


def test_alloc_unreadable_and_empty_pool(tree: Tree) -> None:
    parent_tree(tree)
    tree.path(ALLOCATOR_PATH).mkdir(parents=True)
    finding = alloc(tree)
    assert finding.status is Status.WARN
    assert finding.evidence == f"{ALLOCATOR_PATH}: not a regular file"
    tree.path(ALLOCATOR_PATH).rmdir()
    tree.write(ALLOCATOR_PATH, "memory_mib: 512\ncpu_pool: ','\n")
    finding = alloc(tree)
    assert finding.status is Status.FAIL
    assert "cpu_pool is empty" in finding.evidence
