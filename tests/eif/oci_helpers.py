"""Helpers for the image-to-EIF tests: tar builders, an independent newc parser,
OCI layouts built on the fly."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

D = 1492533000


@dataclass
class T:
    """One tar member to write (raw tar fields)."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 1700000000
    link: str = ""
    devmajor: int = 0
    devminor: int = 0


def tar_bytes(members: list[T], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar stream with the members in the given order; names are written as given
    (Python adds the trailing '/' to directories, like docker export)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = m.type
            info.mode = m.mode
            info.uid, info.gid = m.uid, m.gid
            info.mtime = m.mtime
            info.linkname = m.link
            info.devmajor, info.devminor = m.devmajor, m.devminor
            info.size = len(m.data) if m.type == tarfile.REGTYPE else 0
            tf.addfile(info, io.BytesIO(m.data) if m.type == tarfile.REGTYPE else None)
    return buf.getvalue()


@dataclass
class C:
    """One parsed newc entry."""

    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    dev: tuple[int, int]
    rdev: tuple[int, int]
    name: bytes
    data: bytes


def parse_newc(data: bytes) -> list[C]:
    """An independent newc parser (checks lowercase hex and alignment as it goes)."""
    out: list[C] = []
    pos = 0
    assert len(data) % 512 == 0
    while True:
        assert pos % 4 == 0
        head = data[pos : pos + 110]
        assert head[:6] == b"070701", head[:6]
        hexes = head[6:]
        assert hexes == hexes.lower()
        f = [int(hexes[i * 8 : i * 8 + 8], 16) for i in range(13)]
        namesize, size = f[11], f[6]
        name = data[pos + 110 : pos + 110 + namesize - 1]
        assert data[pos + 110 + namesize - 1] == 0
        pos += 110 + namesize
        pos += -pos % 4
        body = data[pos : pos + size]
        pos += size
        pos += -pos % 4
        out.append(C(f[0], f[1], f[2], f[3], f[4], f[5], (f[7], f[8]), (f[9], f[10]), name, body))
        if name == b"TRAILER!!!":
            assert not data[pos:].strip(b"\x00")
            return out


def inspect_json(cmd: Any = None, entrypoint: Any = None, env: Any = None, **extra: Any) -> bytes:
    config: dict[str, Any] = {"Cmd": cmd, "Entrypoint": entrypoint, "Env": env}
    config.update(extra.pop("config", {}))
    doc = {"Id": "sha256:" + "ab" * 32, "Architecture": "amd64", "Os": "linux", "Config": config}
    doc.update(extra)
    return json.dumps([doc]).encode()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_layout(
    root: Path,
    layers: list[bytes],
    config: dict[str, Any],
    *,
    compress: str = "gzip",
    platforms: list[str] | None = None,
) -> Path:
    """Write an OCI layout; with `platforms`, an index of one manifest per platform
    (all with the same layers)."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = sha(data)
        (blobs / digest[7:]).write_bytes(data)
        return digest

    descs = []
    for layer in layers:
        if compress == "gzip":
            blob = gzip.compress(layer, mtime=0)
        elif compress == "zstd":
            import zstandard

            blob = zstandard.ZstdCompressor().compress(layer)
        else:
            blob = layer
        descs.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": put(blob),
                "size": len(blob),
            }
        )
    manifests = []
    for plat in platforms or ["linux/amd64"]:
        os_name, arch = plat.split("/")[:2]
        cfg = dict(config, os=os_name, architecture=arch)
        cfg_bytes = json.dumps(cfg).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": put(cfg_bytes),
                "size": len(cfg_bytes),
            },
            "layers": descs,
        }
        mbytes = json.dumps(manifest).encode()
        manifests.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": put(mbytes),
                "size": len(mbytes),
                "platform": {"os": os_name, "architecture": arch},
            }
        )
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))
    return root
