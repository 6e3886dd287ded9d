"""Emulate ``docker create`` + ``docker export`` from an OCI layout or ``docker save`` tar.

``../shared/spec/oci-eif.md`` section 4: layers are applied bottom to top as dockerd
does on overlay2 (4.2: whiteouts, opaque directories, replacement, directory attribute
merge, implied parents, hard links sharing an inode), Docker's init layer is added
on top (4.3), a missing ``WorkingDir`` is created like ``docker create`` (4.4), and the
result is walked like ``docker export`` (4.5: per-directory byte order, trailing ``/``
on directories, hard links to the first name met).

Nothing touches the host file system except a private spool directory for file
contents (so memory stays bounded): names are only keys of an in-memory tree, so no
path can escape and no symlink is ever followed (no loops). Where dockerd would stamp
the current time (implied parent directories, a missing ``WorkingDir``), the result
cannot equal any nitro-cli build: that fails with `not_reproducible` unless the caller
allows it, and then the time used is linuxkit's fixed ``1492533000``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from nitroguard.errors import ImageError, Reason
from nitroguard.hazmat._tar import TarEntry, TarReader

from ._image import DEFAULT_MTIME, ImageConfig, Source, parse_image_config
from ._oci_blobs import _blob_path, _Blobs, _decompressed, _Hashing

__all__ = ["open_oci"]

MAX_DEPTH = 4
MAX_COMPONENTS = 256
_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


# --- the tree -------------------------------------------------------------------------


@dataclasses.dataclass(slots=True, eq=False)
class _Inode:
    typeflag: bytes
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int = 0
    linkname: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    content: Path | None = None


@dataclasses.dataclass(slots=True, eq=False)
class _Node:
    inode: _Inode
    layer: int
    children: dict[bytes, _Node] | None = None  # directories only


class _Tree:
    def __init__(self, spool: Path) -> None:
        self.root = _Node(_Inode(b"5", 0o755, 0, 0, 0), -1, {})
        self.spool = spool
        self._n = 0
        self.implied: list[str] = []

    def lookup(self, parts: list[bytes]) -> _Node | None:
        node = self.root
        for part in parts:
            if node.children is None or part not in node.children:
                return None
            node = node.children[part]
        return node

    def spool_file(self, chunks: Iterator[bytes]) -> Path:
        self._n += 1
        path = self.spool / str(self._n)
        with path.open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
        return path


def _clean(name: bytes) -> bytes | None:
    """dockerd's name cleaning (4.2 item 1); None for the root; raises on escapes."""
    cleaned = posixpath.normpath(name) if name else b"."
    if cleaned.startswith(b"/"):
        cleaned = cleaned.lstrip(b"/") or b"."
    if cleaned == b".." or cleaned.startswith(b"../"):
        raise ImageError(
            f"layer entry {name.decode(errors='replace')!r} escapes the root",
            Reason.UNSAFE_PATH,
        )
    return None if cleaned == b"." else cleaned


def _dir_node(mode: int, uid: int, gid: int, mtime: int, layer: int) -> _Node:
    return _Node(_Inode(b"5", mode, uid, gid, mtime), layer, {})


def _apply_layer(
    tree: _Tree, stream: BinaryIO, layer: int, allow: bool, warnings: list[str]
) -> None:
    reader = TarReader(stream)
    declared: set[bytes] = set()
    implied: dict[bytes, _Node] = {}
    for entry in reader:
        path = _clean(entry.name)
        if path is None:
            continue
        parts = path.split(b"/")
        if len(parts) > MAX_COMPONENTS:
            # The tree is walked recursively; Linux's PATH_MAX allows ~2048 levels at most.
            raise ImageError(
                f"a layer path is {len(parts)} directories deep (limit {MAX_COMPONENTS})",
                Reason.TOO_LARGE,
            )
        base = parts[-1]
        parent = _parents(tree, parts, path, layer, declared, implied)
        assert parent.children is not None  # noqa: S101
        if base == b".wh..wh..opq":
            _prune_lower(parent, layer)
            continue
        if base.startswith(b".wh."):
            victim = parent.children.get(base[4:])
            if victim is not None and victim.layer < layer:
                del parent.children[base[4:]]
            continue
        existing = parent.children.get(base)
        mode = entry.mode & 0o7777
        if entry.typeflag == b"5":
            declared.add(path)
            if existing is not None and existing.children is not None:
                existing.inode = _Inode(b"5", mode, entry.uid, entry.gid, entry.mtime)
                existing.layer = layer
            else:
                parent.children[base] = _dir_node(mode, entry.uid, entry.gid, entry.mtime, layer)
            continue
        if entry.typeflag == b"1":
            _hard_link(tree, parent, base, path, entry, existing, mode, layer)
            continue
        if entry.typeflag not in (b"0", b"2", b"3", b"4", b"6"):
            raise ImageError(
                f"{path.decode(errors='replace')}: unsupported tar type {entry.typeflag!r} "
                "(dockerd refuses it)",
                Reason.UNSUPPORTED_ENTRY,
            )
        if entry.typeflag == b"3" and entry.devmajor == 0 and entry.devminor == 0:
            # overlay2 stores whiteouts as 0/0 character devices: invisible when merged.
            if existing is not None and existing.layer < layer:
                del parent.children[base]
            continue
        inode = _Inode(
            entry.typeflag,
            0o777 if entry.typeflag == b"2" else mode,
            entry.uid,
            entry.gid,
            entry.mtime,
            linkname=entry.linkname if entry.typeflag == b"2" else b"",
            devmajor=entry.devmajor,
            devminor=entry.devminor,
        )
        if entry.typeflag == b"0":
            inode.size = entry.size
            inode.content = tree.spool_file(reader.read_chunks())
        parent.children[base] = _Node(inode, layer)
    for sub in sorted(set(implied) - declared):
        msg = (
            f"layer {layer}: directory /{sub.decode(errors='replace')} has no entry of its "
            "own (dockerd creates it with the extraction time, so no nitro-cli build can be "
            "reproduced)"
        )
        if not allow:
            raise ImageError(msg, Reason.NOT_REPRODUCIBLE)
        warnings.append(msg)


def _parents(  # noqa: PLR0917 - private helper with one caller
    tree: _Tree,
    parts: list[bytes],
    path: bytes,
    layer: int,
    declared: set[bytes],
    implied: dict[bytes, _Node],
) -> _Node:
    """The directory an entry goes in, creating implied parents (4.2 item 4): created
    in this layer, 0755, root, "now"."""
    node = tree.root
    for i, part in enumerate(parts[:-1]):
        assert node.children is not None  # noqa: S101 - parents are directories
        sub = b"/".join(parts[: i + 1])
        child = node.children.get(part)
        if child is None or (sub not in declared and sub not in implied):
            # (a name declared earlier in this layer may have been replaced since)
            declared.discard(sub)
            if child is not None and child.layer == layer and child.children is None:
                raise ImageError(
                    f"{path.decode(errors='replace')}: a parent is a non-directory of "
                    "the same layer",
                    Reason.UNSAFE_PATH,
                )
            new = _dir_node(0o755, 0, 0, DEFAULT_MTIME, layer)
            if child is not None and child.children is not None:
                new.children = child.children  # overlay merges directories
            node.children[part] = new
            implied[sub] = new
            child = new
        assert child is not None  # noqa: S101
        if child.children is None:
            raise ImageError(
                f"{path.decode(errors='replace')}: parent is not a directory",
                Reason.UNSAFE_PATH,
            )
        node = child
    return node


def _hard_link(  # noqa: PLR0917 - private helper with one caller
    tree: _Tree,
    parent: _Node,
    base: bytes,
    path: bytes,
    entry: TarEntry,
    existing: _Node | None,
    mode: int,
    layer: int,
) -> None:
    """A hard link shares its target's inode (dockerd's overlay2 does the same)."""
    assert parent.children is not None  # noqa: S101
    target = _clean(entry.linkname)
    linked = tree.lookup(target.split(b"/")) if target else None
    if linked is None or linked.children is not None:
        raise ImageError(
            f"{path.decode(errors='replace')}: hard link target "
            f"{entry.linkname.decode(errors='replace')!r} is missing or a directory",
            Reason.MALFORMED_IMAGE,
        )
    inode = linked.inode
    if inode.typeflag != b"2":  # dockerd chmods/chtimes the shared inode
        inode.mode, inode.mtime = mode, entry.mtime
    inode.uid, inode.gid = entry.uid, entry.gid
    if linked is not existing:
        parent.children[base] = _Node(inode, layer)


def _prune_lower(node: _Node, layer: int) -> None:
    """An opaque directory hides everything lower layers had below it (4.2 item 2)."""
    assert node.children is not None  # noqa: S101
    for name in list(node.children):
        child = node.children[name]
        if child.layer < layer:
            del node.children[name]
        elif child.children is not None:
            _prune_lower(child, layer)


def _init_layer(tree: _Tree) -> None:
    """Docker's init layer on top of the image (4.3); its times are re-stamped or the
    entries dropped by linuxkit, so the value used here never reaches the ramdisk."""
    now = DEFAULT_MTIME
    layer = 10**9
    root = tree.root
    assert root.children is not None  # noqa: S101

    def mkdir(parent: _Node, name: bytes) -> _Node:
        assert parent.children is not None  # noqa: S101
        child = parent.children.get(name)
        node = _dir_node(0o755, 0, 0, now, layer)
        if child is not None and child.children is not None:
            node.children = child.children
        parent.children[name] = node
        return node

    dev, etc = mkdir(root, b"dev"), mkdir(root, b"etc")
    mkdir(dev, b"pts")
    mkdir(dev, b"shm")
    mkdir(root, b"proc")
    mkdir(root, b"sys")
    for parent, name in ((root, b".dockerenv"), (etc, b"resolv.conf"), (etc, b"hosts")):
        assert parent.children is not None  # noqa: S101
        parent.children[name] = _Node(_Inode(b"0", 0o755, 0, 0, now), layer)
    assert etc.children is not None  # noqa: S101
    assert dev.children is not None  # noqa: S101
    etc.children[b"hostname"] = _Node(_Inode(b"0", 0o755, 0, 0, now), layer)
    dev.children[b"console"] = _Node(_Inode(b"0", 0o755, 0, 0, now), layer)
    etc.children[b"mtab"] = _Node(_Inode(b"2", 0o777, 0, 0, now, linkname=b"/proc/mounts"), layer)


def _working_dir(tree: _Tree, working_dir: str, allow: bool, warnings: list[str]) -> None:
    """``docker create`` makes a missing WorkingDir with the current time (4.4)."""
    cleaned = _clean(working_dir.encode())
    if cleaned is None:
        return
    node = tree.root
    missing = False
    if cleaned.count(b"/") >= MAX_COMPONENTS:
        raise ImageError("WorkingDir is too deep", Reason.INVALID_IMAGE_CONFIG)
    for part in cleaned.split(b"/"):
        assert node.children is not None  # noqa: S101
        child = node.children.get(part)
        if child is None:
            if not missing:
                msg = (
                    f"WorkingDir {working_dir} does not exist in the image: docker create "
                    "makes it (and touches its parent) with the current time, so no "
                    "nitro-cli build can be reproduced"
                )
                if not allow:
                    raise ImageError(msg, Reason.NOT_REPRODUCIBLE)
                warnings.append(msg)
                node.inode.mtime = DEFAULT_MTIME
                missing = True
            child = _dir_node(0o755, 0, 0, DEFAULT_MTIME, 10**9)
            node.children[part] = child
        elif child.children is None:
            raise ImageError(
                f"WorkingDir {working_dir} crosses a non-directory (docker create fails)",
                Reason.INVALID_IMAGE_CONFIG,
            )
        node = child


def _walk(tree: _Tree) -> Source:
    """``docker export``'s walk (4.5): pre-order, children in byte order."""
    counts: dict[int, int] = {}

    def count(node: _Node) -> None:
        assert node.children is not None  # noqa: S101
        for child in node.children.values():
            if child.children is None:
                counts[id(child.inode)] = counts.get(id(child.inode), 0) + 1
            else:
                count(child)

    count(tree.root)
    return _walk_sub(b"", tree.root, {}, counts)


def _walk_sub(
    prefix: bytes, node: _Node, first_name: dict[int, bytes], counts: dict[int, int]
) -> Source:
    assert node.children is not None  # noqa: S101
    for name in sorted(node.children):
        child = node.children[name]
        path = prefix + name
        inode = child.inode
        if child.children is not None:
            yield (
                TarEntry(path + b"/", b"5", inode.mode, inode.uid, inode.gid, inode.mtime, 0),
                _nothing,
            )
            yield from _walk_sub(path + b"/", child, first_name, counts)
        else:
            yield _file_entry(path, inode, first_name, counts)


def _nothing() -> Iterator[bytes]:
    return iter(())


def _file_entry(
    path: bytes, inode: _Inode, first_name: dict[int, bytes], counts: dict[int, int]
) -> tuple[TarEntry, Callable[[], Iterator[bytes]]]:
    key = id(inode)
    if counts.get(key, 0) > 1:
        if key in first_name:
            entry = TarEntry(
                path, b"1", inode.mode, inode.uid, inode.gid, inode.mtime, 0,
                linkname=first_name[key], devmajor=inode.devmajor, devminor=inode.devminor,
            )  # fmt: skip
            return entry, _nothing
        first_name[key] = path
    entry = TarEntry(
        path,
        inode.typeflag,
        inode.mode,
        inode.uid,
        inode.gid,
        inode.mtime,
        inode.size,
        linkname=inode.linkname,
        devmajor=inode.devmajor,
        devminor=inode.devminor,
    )
    content = inode.content

    def chunks() -> Iterator[bytes]:
        if content is None:
            return
        with content.open("rb") as fh:
            while block := fh.read(1 << 20):
                yield block

    return entry, chunks


# --- manifests ---------------------------------------------------------------------------


def _platform_of(desc: dict[str, Any]) -> str:
    plat = desc.get("platform")
    if not isinstance(plat, dict):
        return "?"
    text = f"{plat.get('os', '?')}/{plat.get('architecture', '?')}"
    if plat.get("variant"):
        text += f"/{plat['variant']}"
    return text


def _select(blobs: _Blobs, index: Any, platform: str | None, depth: int = 0) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise ImageError("image indexes nest too deeply", Reason.MALFORMED_IMAGE)
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests:
        raise ImageError("the image index lists no manifests", Reason.MALFORMED_IMAGE)
    candidates = [
        m for m in manifests if isinstance(m, dict) and _platform_of(m) not in ("unknown/unknown",)
    ]
    if len(candidates) == 1 and (platform is None or _platform_of(candidates[0]) == "?"):
        # A single descriptor without a platform (often the top of an OCI layout that
        # points at the real index) is followed whatever --platform says.
        matched = candidates
    elif platform is not None:
        want = platform.strip("/")
        matched = [
            m
            for m in candidates
            if _platform_of(m) == want or _platform_of(m).startswith(want + "/")
        ]
    else:
        matched = candidates
    if len(matched) != 1:
        offered = ", ".join(sorted({_platform_of(m) for m in candidates})) or "none"
        raise ImageError(
            f"choose one platform with --platform (this image offers: {offered})"
            if platform is None or matched
            else f"platform {platform} not in this image (it offers: {offered})",
            Reason.PLATFORM_NOT_FOUND,
        )
    desc = matched[0]
    doc, _ = blobs.read_json(_blob_path(desc.get("digest")), desc.get("digest"))
    if desc.get("mediaType") in _INDEX_TYPES or (
        isinstance(doc, dict) and "manifests" in doc and "layers" not in doc
    ):
        return _select(blobs, doc, platform, depth + 1)
    if not isinstance(doc, dict):
        raise ImageError("malformed image manifest", Reason.MALFORMED_IMAGE)
    return doc


def _manifest(blobs: _Blobs, platform: str | None) -> tuple[bytes, str, list[str]]:
    """(config bytes, config digest, layer blob paths)."""
    if blobs.exists("index.json"):
        index, _ = blobs.read_json("index.json")
        manifest = _select(blobs, index, platform)
        config_desc = manifest.get("config")
        layers = manifest.get("layers")
        if not isinstance(config_desc, dict) or not isinstance(layers, list):
            raise ImageError("malformed image manifest", Reason.MALFORMED_IMAGE)
        digest = config_desc.get("digest")
        _, config = blobs.read_json(_blob_path(digest), digest)
        paths = []
        for layer in layers:
            if not isinstance(layer, dict):
                raise ImageError("malformed layer descriptor", Reason.MALFORMED_IMAGE)
            paths.append(_blob_path(layer.get("digest")))
        return config, str(digest), paths
    if blobs.exists("manifest.json"):  # legacy `docker save`
        doc, _ = blobs.read_json("manifest.json")
        if not isinstance(doc, list) or len(doc) != 1 or not isinstance(doc[0], dict):
            raise ImageError(
                "docker save archive must hold exactly one image", Reason.MALFORMED_IMAGE
            )
        entry = doc[0]
        config_name, layers = entry.get("Config"), entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layers, list):
            raise ImageError("malformed docker save manifest.json", Reason.MALFORMED_IMAGE)
        _, config = blobs.read_json(config_name)
        if not all(isinstance(x, str) for x in layers):
            raise ImageError("malformed docker save manifest.json", Reason.MALFORMED_IMAGE)
        return config, "sha256:" + hashlib.sha256(config).hexdigest(), list(layers)
    raise ImageError(
        "not an OCI layout or docker save archive (no index.json or manifest.json)",
        Reason.MALFORMED_IMAGE,
    )


@contextlib.contextmanager
def open_oci(
    path: Path, *, platform: str | None = None, allow_unreproducible: bool = False
) -> Iterator[tuple[ImageConfig, Callable[..., Source], list[str]]]:
    """Flatten an OCI image like dockerd and yield (config, entries, warnings), where
    ``entries()`` walks the result like ``docker export`` (callable more than once).

    Raises:
        ImageError: malformed layout, missing platform, unsupported compression, a
            path escape, or `not_reproducible` (unless `allow_unreproducible`).
        Error: `unreadable_input` when the layout cannot be read.
    """
    blobs = _Blobs(path)
    config_bytes, digest, layers = _manifest(blobs, platform)
    config = parse_image_config(config_bytes, image_id=digest.removeprefix("sha256:"))
    if platform is not None:
        have = f"{config.os}/{config.architecture}"
        want = platform.strip("/")
        if not (want == have or want.startswith(have + "/") or have.startswith(want + "/")):
            raise ImageError(
                f"platform {platform} requested, but the image is {have}",
                Reason.PLATFORM_NOT_FOUND,
            )
    warnings: list[str] = []
    spool = Path(tempfile.mkdtemp(prefix="nitroguard-oci-"))
    try:
        os.chmod(spool, 0o700)
        tree = _Tree(spool)
        for number, layer in enumerate(layers):
            with blobs.open(layer) as raw:
                hashing = _Hashing(raw)
                with _decompressed(hashing) as stream:  # type: ignore[arg-type]
                    _apply_layer(tree, stream, number, allow_unreproducible, warnings)
                while hashing.read(1 << 20):
                    pass
            expected = layer.rsplit("/", 1)[-1]
            if layer.startswith("blobs/sha256/") and hashing.hash.hexdigest() != expected:
                raise ImageError(f"layer {layer} does not match its digest", Reason.MALFORMED_IMAGE)
        _init_layer(tree)
        if config.working_dir:
            _working_dir(tree, config.working_dir, allow_unreproducible, warnings)

        def entries(skip_data: bool = False) -> Source:
            return _walk(tree)

        yield config, entries, warnings
    finally:
        shutil.rmtree(spool, ignore_errors=True)
