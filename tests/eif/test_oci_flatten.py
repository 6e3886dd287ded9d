"""OCI layouts built here, flattened as dockerd + docker export would (spec 4)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from oci_helpers import D, T, oci_layout, sha, tar_bytes

from nitroguard.eif._oci import open_oci
from nitroguard.errors import Error, ImageError, Reason

M = 1700000000
CONFIG: dict[str, Any] = {"config": {"Cmd": ["/app"], "WorkingDir": "/"}}
INIT = [  # the init layer, as docker export shows it (spec 4.3)
    ".dockerenv",
    "dev/",
    "dev/console",
    "dev/pts/",
    "dev/shm/",
    "etc/",
    "etc/hostname",
    "etc/hosts",
    "etc/mtab",
    "etc/resolv.conf",
    "proc/",
    "sys/",
]


def flatten(
    tmp_path: Path, layers: list[list[T]], config: dict[str, Any] | None = None, **kw: Any
) -> list[tuple[str, str, int, int, str, bytes]]:
    oci_kw = {k: kw.pop(k) for k in ("compress", "platforms") if k in kw}
    root = oci_layout(
        tmp_path / "oci", [tar_bytes(layer) for layer in layers], config or CONFIG, **oci_kw
    )
    with open_oci(root, **kw) as (_cfg, entries_of, _warnings):
        entries = entries_of()
        return [
            (
                e.name.decode(),
                e.typeflag.decode(),
                e.mode,
                e.mtime,
                e.linkname.decode(),
                b"".join(chunks()),
            )
            for e, chunks in entries
        ]


def names(result: list[tuple[str, str, int, int, str, bytes]]) -> list[str]:
    return [r[0] for r in result if r[0] not in INIT]


def test_walk_order_and_init_layer(tmp_path: Path) -> None:
    result = flatten(
        tmp_path,
        [
            [
                T("a-b", data=b"1"),
                T("a/", tarfile.DIRTYPE, mode=0o750),
                T("a/x", data=b"2"),
                T("etc/", tarfile.DIRTYPE, mode=0o700, uid=5),
                T("etc/passwd", data=b"root"),
                T("etc/hosts", data=b"image hosts"),
            ]
        ],
    )
    assert [r[0] for r in result] == [
        ".dockerenv",
        "a/",  # per-directory byte order: 'a' < 'a-b', then a's children first
        "a/x",
        "a-b",
        "dev/",
        "dev/console",
        "dev/pts/",
        "dev/shm/",
        "etc/",
        "etc/hostname",
        "etc/hosts",
        "etc/mtab",
        "etc/passwd",
        "etc/resolv.conf",
        "proc/",
        "sys/",
    ]
    by = {r[0]: r for r in result}
    assert by["a/"][2] == 0o750
    assert by["etc/"][2] == 0o755  # the init layer's attributes win
    assert by["etc/hosts"][5] == b""  # the image's hosts is hidden by the init layer
    assert by["etc/mtab"][1:5:3] == ("2", "/proc/mounts")


def test_whiteouts_and_opaque(tmp_path: Path) -> None:
    result = flatten(
        tmp_path,
        [
            [
                T("d/", tarfile.DIRTYPE),
                T("d/gone", data=b"x"),
                T("d/keep", data=b"k"),
                T("tree/", tarfile.DIRTYPE),
                T("tree/sub/", tarfile.DIRTYPE),
                T("tree/sub/f", data=b"x"),
                T("opq/", tarfile.DIRTYPE),
                T("opq/old", data=b"old"),
                T("opq/sub/", tarfile.DIRTYPE),
                T("opq/sub/old", data=b"old"),
            ],
            [
                T("d/", tarfile.DIRTYPE),
                T("d/.wh.gone"),
                T(".wh.tree"),
                T("opq/", tarfile.DIRTYPE),
                T("opq/before", data=b"b"),
                T("opq/sub/", tarfile.DIRTYPE),
                T("opq/.wh..wh..opq"),
                T("opq/after", data=b"a"),
            ],
        ],
    )
    assert names(result) == ["d/", "d/keep", "opq/", "opq/after", "opq/before", "opq/sub/"]


def test_replacement_across_layers(tmp_path: Path) -> None:
    result = flatten(
        tmp_path,
        [
            [
                T("x/", tarfile.DIRTYPE),
                T("x/inner", data=b"i"),
                T("y", data=b"file"),
                T("d/", tarfile.DIRTYPE, mode=0o700, mtime=1),
            ],
            [
                T("x", data=b"now a file"),
                T("y/", tarfile.DIRTYPE),
                T("y/z", data=b"z"),
                T("d/", tarfile.DIRTYPE, mode=0o711, mtime=2),
            ],
        ],
    )
    by = {r[0]: r for r in result}
    assert names(result) == ["d/", "x", "y/", "y/z"]
    assert by["x"][5] == b"now a file"
    assert by["d/"][2:4] == (0o711, 2)


def test_hard_links(tmp_path: Path) -> None:
    """The first name in walk order holds the data, whatever the layer stored."""
    result = flatten(
        tmp_path,
        [
            [
                T("z", data=b"shared", mode=0o755),
                T("b", tarfile.LNKTYPE, link="z"),
                T("m", data=b"m"),
                T("n", tarfile.LNKTYPE, link="/m"),
            ],
            [T("n", data=b"replaced")],
        ],
    )
    by = {r[0]: r for r in result}
    assert (by["b"][1], by["b"][5]) == ("0", b"shared")
    assert (by["z"][1], by["z"][4]) == ("1", "b")
    assert (by["m"][1], by["m"][5]) == ("0", b"m")
    assert (by["n"][1], by["n"][5]) == ("0", b"replaced")


def test_symlinked_etc_is_hidden_by_the_init_layer(tmp_path: Path) -> None:
    result = flatten(
        tmp_path,
        [
            [
                T("private/", tarfile.DIRTYPE),
                T("private/etc/", tarfile.DIRTYPE),
                T("private/etc/passwd", data=b"p"),
                T("etc", tarfile.SYMTYPE, link="private/etc"),
            ]
        ],
    )
    by = {r[0]: r for r in result}
    assert by["etc/"][1] == "5"
    assert "etc/passwd" not in by
    assert "private/etc/passwd" in by


def test_names_cleaned(tmp_path: Path) -> None:
    result = flatten(
        tmp_path,
        [
            [
                T("./", tarfile.DIRTYPE),
                T("./a/", tarfile.DIRTYPE),
                T("./a/b", data=b"1"),
                T("/c", data=b"2"),
                T("a//d", data=b"3"),
            ]
        ],
    )
    assert names(result) == ["a/", "a/b", "a/d", "c"]


@pytest.mark.parametrize("name", ["../evil", "a/../../evil"])
def test_path_escape_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(ImageError) as err:
        flatten(tmp_path, [[T(name, data=b"x")]])
    assert err.value.reason is Reason.UNSAFE_PATH


def test_implied_parent_directories(tmp_path: Path) -> None:
    layers = [[T("usr/", tarfile.DIRTYPE, mode=0o700)], [T("usr/lib/x", data=b"x")]]
    with pytest.raises(ImageError) as err:
        flatten(tmp_path / "1", layers)
    assert err.value.reason is Reason.NOT_REPRODUCIBLE
    assert "/usr" in err.value.message
    result = flatten(tmp_path / "2", layers, allow_unreproducible=True)
    by = {r[0]: r for r in result}
    assert by["usr/"][2:4] == (0o755, D)  # dockerd's implied mode replaces 0700
    assert by["usr/lib/"][2:4] == (0o755, D)


def test_working_dir(tmp_path: Path) -> None:
    present = {"config": {"Cmd": ["/a"], "WorkingDir": "/srv/app"}}
    layer = [T("srv/", tarfile.DIRTYPE), T("srv/app/", tarfile.DIRTYPE)]
    assert "srv/app/" in names(flatten(tmp_path / "1", [layer], present))
    with pytest.raises(ImageError) as err:
        flatten(tmp_path / "2", [[T("srv/", tarfile.DIRTYPE)]], present)
    assert err.value.reason is Reason.NOT_REPRODUCIBLE
    result = flatten(
        tmp_path / "3", [[T("srv/", tarfile.DIRTYPE)]], present, allow_unreproducible=True
    )
    by = {r[0]: r for r in result}
    assert by["srv/app/"][2:4] == (0o755, D)
    assert by["srv/"][3] == D


@pytest.mark.parametrize("compress", ["gzip", "zstd", "none"])
def test_layer_compressions(tmp_path: Path, compress: str) -> None:
    result = flatten(tmp_path, [[T("f", data=b"payload")]], compress=compress)
    assert {r[0]: r[5] for r in result}["f"] == b"payload"


def test_platform_selection(tmp_path: Path) -> None:
    kw: dict[str, Any] = {"platforms": ["linux/amd64", "linux/arm64"]}
    with pytest.raises(ImageError) as err:
        flatten(tmp_path / "1", [[T("f")]], **kw)
    assert err.value.reason is Reason.PLATFORM_NOT_FOUND
    assert "linux/amd64" in err.value.message
    root = oci_layout(tmp_path / "2", [tar_bytes([T("f")])], CONFIG, **kw)
    with open_oci(root, platform="linux/arm64") as (cfg, _e, _w):
        assert cfg.eif_arch == "aarch64"
    with pytest.raises(ImageError) as err, open_oci(root, platform="linux/s390x"):
        pass
    assert err.value.reason is Reason.PLATFORM_NOT_FOUND


def test_tar_layout_and_docker_save(tmp_path: Path) -> None:
    root = oci_layout(tmp_path / "oci", [tar_bytes([T("f", data=b"1")])], CONFIG)
    archive = tmp_path / "oci.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(root, arcname=".")
    packed = tmp_path / "oci.tar.gz"
    packed.write_bytes(gzip.compress(archive.read_bytes()))
    with pytest.raises(ImageError) as err:
        open_oci(packed).__enter__()
    assert err.value.reason is Reason.UNSUPPORTED_COMPRESSION
    with open_oci(archive) as (_c, entries_of, _w):
        entries = entries_of()
        assert b"f" in [e.name for e, _ in entries]
    # legacy docker save: manifest.json + <id>/layer.tar
    save = tmp_path / "save.tar"
    config = json.dumps({"architecture": "amd64", "config": {"Cmd": ["/x"]}}).encode()
    layer = tar_bytes([T("g", data=b"2")])
    with tarfile.open(save, "w") as tf:
        for name, data in (
            ("manifest.json", json.dumps([{"Config": "c.json", "Layers": ["l/layer.tar"]}])),
            ("c.json", config),
            ("l/layer.tar", layer),
        ):
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))
    with open_oci(save) as (cfg, entries_of, _w):
        entries = entries_of()
        assert cfg.image_id == sha(config)[7:]
        assert [b"".join(c()) for e, c in entries if e.name == b"g"] == [b"2"]
        assert cfg.launch == ("/x",)


def test_corrupt_layouts(tmp_path: Path) -> None:
    root = oci_layout(tmp_path / "oci", [tar_bytes([T("f", data=b"1")])], CONFIG)
    blob = next(p for p in (root / "blobs" / "sha256").iterdir() if p.stat().st_size > 100)
    index = json.loads((root / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"][7:]
    manifest = json.loads((root / "blobs" / "sha256" / manifest_digest).read_text())
    layer = root / "blobs" / "sha256" / manifest["layers"][0]["digest"][7:]
    layer.write_bytes(layer.read_bytes()[:-3] + b"\x00\x00\x00")
    with pytest.raises(ImageError), open_oci(root) as (_c, entries, _w):
        list(entries)
    assert blob.exists()
    with pytest.raises(Error), open_oci(tmp_path / "missing"):
        pass
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError) as err, open_oci(tmp_path / "empty"):
        pass
    assert err.value.reason is Reason.MALFORMED_IMAGE


def test_parent_replaced_within_a_layer(tmp_path: Path) -> None:
    """Fuzz regression: a directory declared, replaced by a file, then re-declared."""
    layer = [
        T("a/", tarfile.DIRTYPE),
        T("a/b/", tarfile.DIRTYPE),
        T("a", data=b"file"),
        T("a/", tarfile.DIRTYPE),
        T("a/b/c", data=b"c"),
    ]
    with pytest.raises(ImageError) as err:
        flatten(tmp_path / "1", [layer])
    assert err.value.reason is Reason.NOT_REPRODUCIBLE
    assert names(flatten(tmp_path / "2", [layer], allow_unreproducible=True)) == [
        "a/",
        "a/b/",
        "a/b/c",
    ]


def test_nested_index(tmp_path: Path) -> None:
    """index.json -> image index blob -> per-platform manifests (buildx / skopeo style)."""
    root = oci_layout(
        tmp_path / "oci", [tar_bytes([T("f")])], CONFIG, platforms=["linux/amd64", "linux/arm64"]
    )
    inner = (root / "index.json").read_bytes()
    (root / "blobs" / "sha256" / sha(inner)[7:]).write_bytes(inner)
    outer = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": sha(inner),
                "size": len(inner),
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(outer))
    with open_oci(root, platform="linux/arm64") as (cfg, _e, _w):
        assert cfg.architecture == "arm64"
    with pytest.raises(ImageError) as err, open_oci(root):
        pass
    assert err.value.reason is Reason.PLATFORM_NOT_FOUND


def test_single_manifest_platform_mismatch(tmp_path: Path) -> None:
    root = oci_layout(tmp_path / "oci", [tar_bytes([T("f")])], CONFIG)
    index = json.loads((root / "index.json").read_text())
    del index["manifests"][0]["platform"]
    (root / "index.json").write_text(json.dumps(index))
    with open_oci(root, platform="linux/amd64") as (cfg, _e, _w):
        assert cfg.eif_arch == "x86_64"
    with pytest.raises(ImageError) as err, open_oci(root, platform="linux/arm64"):
        pass
    assert err.value.reason is Reason.PLATFORM_NOT_FOUND


def test_depth_is_bounded(tmp_path: Path) -> None:
    deep = "a/" * 300 + "f"
    with pytest.raises(ImageError) as err:
        flatten(tmp_path / "1", [[T(deep, data=b"x")]], allow_unreproducible=True)
    assert err.value.reason is Reason.TOO_LARGE
    config = {"config": {"Cmd": ["/x"], "WorkingDir": "/" + "w/" * 300}}
    with pytest.raises(ImageError) as err:
        flatten(tmp_path / "2", [[T("f")]], config)
    assert err.value.reason is Reason.INVALID_IMAGE_CONFIG
    ok = "/".join(["d"] * 200) + "/"
    result = flatten(tmp_path / "3", [[T(ok, tarfile.DIRTYPE)]], allow_unreproducible=True)
    assert ok in [r[0] for r in result]
