"""deploy/: every Kubernetes manifest validates against the schemas (kubernetes-validate,
offline), every nitroguard command line in the manifests and units parses with the real
CLI parser, and the systemd units pass `systemd-analyze verify` (when available) and a
check of the settings the docs promise."""

from __future__ import annotations

import configparser
import copy
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from nitroguard._cli import build_parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.30"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def pod_spec(path: Path) -> dict[str, Any]:
    (deployment,) = [d for d in documents(path) if d["kind"] == "Deployment"]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def test_there_are_manifests_and_units() -> None:
    assert MANIFESTS
    assert {u.name for u in UNITS} >= {
        "nitroguard-enclave@.service",
        "nitroguard-ingress@.service",
        "nitroguard-egress@.service",
        "nitroguard-health@.service",
    }


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_schemas(path: Path) -> None:
    docs = documents(path)
    assert docs
    for doc in docs:
        validate(doc)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name"),
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagePullPolicy=3),
        lambda d: d["spec"]["template"]["spec"].update(hostNetwrk=True),  # typo: strict mode
        lambda d: d["spec"].update(replicas="two"),
    ],
)
def test_a_broken_manifest_fails(breakage: Any) -> None:
    (deployment,) = [
        d
        for d in documents(DEPLOY / "kubernetes" / "enclave-app.yaml")
        if d["kind"] == "Deployment"
    ]
    broken = copy.deepcopy(deployment)
    breakage(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


def test_pod_security_settings() -> None:
    spec = pod_spec(DEPLOY / "kubernetes" / "enclave-app.yaml")
    assert spec["automountServiceAccountToken"] is False
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), key
    names = {c["name"]: c for c in spec["containers"]}
    assert set(names) == {"enclave-runner", "ingress-proxy", "egress-proxy", "health"}
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["privileged"] is False
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
    runner = names["enclave-runner"]
    assert runner["resources"]["limits"]["aws.ec2.nitro/nitro_enclaves"] == "1"
    assert "hugepages-2Mi" in runner["resources"]["limits"]
    script = " ".join(runner["command"])
    assert "nitro-cli run-enclave" in script
    assert "--debug-mode" not in script
    assert names["health"]["readinessProbe"]["httpGet"]["path"] == "/readyz"


def _expand_k8s(arg: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)


def test_container_command_lines_parse_with_the_real_cli() -> None:
    path = DEPLOY / "kubernetes" / "enclave-app.yaml"
    (config_map,) = [d for d in documents(path) if d["kind"] == "ConfigMap"]
    env = config_map["data"]
    parsed = {}
    for c in pod_spec(path)["containers"]:
        if c["name"] == "enclave-runner":
            continue
        argv = [_expand_k8s(a, env) for a in c["args"]]
        parsed[c["name"]] = build_parser(argv).parse_args(argv)
    assert parsed["egress-proxy"].allow_cid == [16]
    assert parsed["egress-proxy"].allow
    assert parsed["health"].serve.startswith("http://")
    assert len(parsed["health"].pcr) == 3


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def _env() -> dict[str, str]:
    lines = (DEPLOY / "systemd" / "signer.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_unit_settings(path: Path) -> None:
    unit = _unit(path)
    service = unit["Service"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert "CapabilityBoundingSet" in service
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    env = _env()
    argv = shlex.split(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], service["ExecStart"]))
    assert "--debug-mode" not in argv
    if argv[0].endswith("/nitroguard"):
        args = build_parser(argv[1:]).parse_args(argv[1:])
        if args.command == "proxy" and args.listen.startswith("vsock://"):
            assert args.allow_cid == [int(env["CID"])], "egress must be pinned to its enclave"
    else:
        assert argv[:2] == ["/usr/bin/nitro-cli", "run-enclave"]


_SYNTAX = re.compile(r"Unknown key|Unknown section|bad unit file setting|Failed to parse|Invalid")


def _verify(directory: Path, name: str) -> str:
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"./{name}"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    for path in UNITS:
        instance = path.name.replace("@.", "@signer.")
        (tmp_path / instance).write_text(path.read_text())
        out = _verify(tmp_path, instance)
        # Missing nitro-cli/nitroguard binaries and the allocator unit are expected here.
        assert not _SYNTAX.search(out), out
    broken = tmp_path / "broken@signer.service"
    broken.write_text("[Service]\nExecStrat=/bin/true\n")
    assert _SYNTAX.search(_verify(tmp_path, broken.name))
