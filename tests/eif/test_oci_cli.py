"""`nitroguard eif build --docker-export/--oci --blobs` and `eif verify`, end to end in
real subprocesses."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from eif_helpers import run, run_json
from oci_helpers import T, inspect_json, oci_layout, tar_bytes

from nitroguard.eif import pcr_of_bytes, read_eif

EXPORT = [
    T(".dockerenv", mode=0o755),
    T("bin/", tarfile.DIRTYPE, mode=0o755),
    T("bin/app", data=b"\x7fELF" + b"\x00" * 100, mode=0o755),
    T("etc/", tarfile.DIRTYPE, mode=0o755),
    T("etc/hosts", mode=0o755),
    T("etc/resolv.conf", mode=0o755),
]


@pytest.fixture
def blobs(tmp_path: Path, oci_eif_vectors_dir: Path) -> Path:
    d = tmp_path / "blobs"
    d.mkdir()
    shutil.copy(oci_eif_vectors_dir / "synthetic-init", d / "init")
    shutil.copy(oci_eif_vectors_dir / "synthetic-nsm.ko", d / "nsm.ko")
    (d / "bzImage").write_bytes(b"not really a kernel" * 100)
    (d / "Image").write_bytes(b"not really an arm kernel" * 100)
    (d / "cmdline").write_bytes(b"reboot=k panic=30 console=ttyS0\n")
    (d / "bzImage.config").write_text(
        "#\n# Automatically generated file; DO NOT EDIT.\n"
        "# Linux/x86_64 4.14.256-209.484.amzn2.x86_64 Kernel Configuration\n"
    )
    return d


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, Path]:
    export = tmp_path / "export.tar"
    export.write_bytes(tar_bytes(EXPORT))
    config = tmp_path / "inspect.json"
    config.write_bytes(inspect_json(cmd=["/bin/app"], env=["PATH=/bin"]))
    return export, config


def test_build_from_docker_export(
    tmp_path: Path, blobs: Path, image: tuple[Path, Path], oci_eif_vectors_dir: Path
) -> None:
    export, config = image
    out = tmp_path / "out" / "app.eif"
    out.parent.mkdir()
    rds = tmp_path / "rd"
    rds.mkdir()
    code, doc = run_json(
        "build", "--docker-export", export, "--image-config", config, "--blobs", blobs,
        "--ramdisk-dir", rds, "-o", out,
    )  # fmt: skip
    assert code == 0, doc
    vec = json.loads((oci_eif_vectors_dir / "expected.json").read_text())["bootstrap"][0]
    boot = (rds / "bootstrap-initrd.img").read_bytes()
    assert hashlib.sha384(boot).hexdigest() == vec["sha384"]
    customer = (rds / "customer-initrd.img").read_bytes()
    image_ = read_eif(out)
    assert image_.measurements.pcr2 == pcr_of_bytes(customer)
    assert image_.cmdline == b"reboot=k panic=30 console=ttyS0"  # trimmed like nitro-cli
    assert image_.header.arch == "x86_64"
    pcrs = json.loads((tmp_path / "out" / "app.eif.pcrs.json").read_text())
    assert pcrs == image_.measurements.to_dict()
    assert doc["Measurements"] == pcrs
    meta = image_.metadata
    assert isinstance(meta, dict)
    assert meta["ImageVersion"] == "ab" * 32
    assert meta["BuildMetadata"]["BuildTime"] == "1970-01-01T00:00:00+00:00"
    assert meta["BuildMetadata"]["KernelVersion"] == "4.14.256"
    # no temporary files are left behind
    assert sorted(p.name for p in out.parent.iterdir()) == ["app.eif", "app.eif.pcrs.json"]
    # streamed straight into the EIF (no --ramdisk-dir): the very same bytes
    streamed = tmp_path / "streamed.eif"
    assert run("build", "--docker-export", export, "--image-config", config, "--blobs", blobs,
               "-o", streamed).returncode == 0  # fmt: skip
    assert streamed.read_bytes() == out.read_bytes()

    assert run("verify", out, "--expect", tmp_path / "out" / "app.eif.pcrs.json").returncode == 0
    bad = dict(pcrs, PCR2="00" * 48)
    (tmp_path / "bad.json").write_text(json.dumps({"Measurements": bad}))
    code, res = run_json("verify", out, "--expect", tmp_path / "bad.json")
    assert code == 1
    assert [r["PCR"] for r in res["PCRs"] if not r["Match"]] == ["PCR2"]
    (tmp_path / "only0.json").write_text(json.dumps({"PCR0": pcrs["PCR0"]}))
    assert run("verify", out, "--expect", tmp_path / "only0.json").returncode == 0
    assert run("verify", tmp_path / "nope.eif", "--expect", tmp_path / "only0.json").returncode == 2
    (tmp_path / "junk.json").write_text('{"PCR0": "zz"}')
    assert run("verify", out, "--expect", tmp_path / "junk.json").returncode == 2


def _build_in(
    cwd: Path, blobs: Path, image: tuple[Path, Path], umask: int, env_extra: dict[str, str]
) -> bytes:
    out = cwd / "x.eif"
    script = (
        "import os, sys; os.umask(int(sys.argv[1])); "
        "from nitroguard._cli import main; sys.exit(main(sys.argv[2:]))"
    )
    env = {**os.environ, **env_extra}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(umask),
            "eif",
            "build",
            "--docker-export",
            str(image[0]),
            "--image-config",
            str(image[1]),
            "--blobs",
            str(blobs),
            "-o",
            str(out),
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


def test_reproducible_across_dirs_umask_tz_locale(
    tmp_path: Path, blobs: Path, image: tuple[Path, Path]
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    a = _build_in(tmp_path / "one", blobs, image, 0o022, {"TZ": "UTC", "LC_ALL": "C"})
    b = _build_in(
        tmp_path / "two", blobs, image, 0o077, {"TZ": "Asia/Kolkata", "LC_ALL": "C.UTF-8"}
    )
    assert a == b
    c = _build_in(tmp_path / "one", blobs, image, 0o022, {"SOURCE_DATE_EPOCH": "1700000000"})
    assert c != a
    meta = read_eif(tmp_path / "one" / "x.eif").metadata
    assert isinstance(meta, dict)
    assert meta["BuildMetadata"]["BuildTime"] == "2023-11-14T22:13:20+00:00"


def test_build_from_oci(tmp_path: Path, blobs: Path) -> None:
    layers = [tar_bytes([T("bin/", tarfile.DIRTYPE), T("bin/app", data=b"x", mode=0o755)])]
    root = oci_layout(
        tmp_path / "oci",
        layers,
        {"config": {"Cmd": ["/bin/app"]}},
        platforms=["linux/amd64", "linux/arm64"],
    )
    out = tmp_path / "a.eif"
    code, doc = run_json("build", "--oci", root, "--platform", "linux/arm64", "--blobs", blobs,
                         "-o", out)  # fmt: skip
    assert code == 0, doc
    assert doc["Arch"] == "aarch64"
    assert read_eif(out).header.arch == "aarch64"
    proc = run("build", "--oci", root, "--blobs", blobs, "-o", out, "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]["reason"] == "platform_not_found"
    # implied parents: refused, or built with a warning when explicitly allowed
    implied = oci_layout(tmp_path / "imp", [tar_bytes([T("a/b", data=b"1")])],
                         {"config": {"Cmd": ["/a/b"]}})  # fmt: skip
    proc = run("build", "--oci", implied, "--blobs", blobs, "-o", out)
    assert proc.returncode == 1
    assert "not_reproducible" in proc.stderr
    proc = run("build", "--oci", implied, "--blobs", blobs, "-o", out, "--allow-unreproducible",
               "--progress")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "warning" in proc.stderr
    assert "customer ramdisk: 0.0 MiB of file data" in proc.stderr


def test_usage_errors(tmp_path: Path, blobs: Path, image: tuple[Path, Path]) -> None:
    export, config = image
    out = tmp_path / "o.eif"
    assert run("build", "--docker-export", export, "--image-config", config, "-o", out
               ).returncode == 2  # fmt: skip
    assert run("build", "--docker-export", export, "--blobs", blobs, "-o", out).returncode == 2
    assert run("build", "-o", out).returncode == 2
    proc = run("build", "--docker-export", export, "--image-config", config, "--blobs", blobs,
               "--arch", "aarch64", "-o", out)  # fmt: skip
    assert proc.returncode == 2
    assert "disagrees" in proc.stderr
    (blobs / "init").unlink()
    proc = run("build", "--docker-export", export, "--image-config", config, "--blobs", blobs,
               "-o", out)  # fmt: skip
    assert proc.returncode == 2
    assert not out.exists()
