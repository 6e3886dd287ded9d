"""Shared fuzz targets for the image readers (used by tests and bench/fuzz_oci.py)."""

from __future__ import annotations

import io
import random
import tarfile
import tempfile
from pathlib import Path

from oci_helpers import T, inspect_json, tar_bytes

from nitroguard.eif._image import docker_export_entries, parse_image_config, write_customer_ramdisk
from nitroguard.eif._oci import _apply_layer, _init_layer, _Tree, _walk
from nitroguard.errors import Error

CONFIG = parse_image_config(inspect_json(cmd=["/a"], config={"WorkingDir": "/w"}))

NAMES = [
    "a", "a/b", "a-b", "../up", "a/../../x", "/abs", "./dot", "etc/hosts", "etc/resolv.conf",
    "dev/pts", "Dockerfile", ".wh.a", "a/.wh..wh..opq", "a/.wh.b", "l", "x" * 200, "dev/",
    "boot/kernel", "a/b/c/d", "/".join(["d"] * 300), "d/" * 200,
]  # fmt: skip
TYPES = [b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"S", b"g", b"x"]


class _NullOut(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        return len(b)  # type: ignore[arg-type]


def random_members(rng: random.Random) -> list[T]:
    out = []
    for _ in range(rng.randrange(0, 12)):
        t = rng.choice(TYPES[:7])
        out.append(
            T(
                rng.choice(NAMES),
                t,
                data=rng.randbytes(rng.randrange(0, 40)) if t == b"0" else b"",
                mode=rng.choice([0o644, 0o4755, 0o777, 0o7777]),
                uid=rng.choice([0, 1000, 1 << 21]),
                mtime=rng.choice([0, 1700000000, 1 << 33]),
                link=rng.choice(NAMES),
                devmajor=rng.choice([0, 1, 8]),
                devminor=rng.choice([0, 3]),
            )
        )
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 8)):
        op = rng.randrange(5)
        if op == 0 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 1 and buf:
            del buf[rng.randrange(len(buf)) :]
        elif op == 2:
            pos = rng.randrange(len(buf) + 1)
            buf[pos:pos] = rng.randbytes(rng.randrange(1, 16))
        elif op == 3 and len(buf) > 512:
            # a plausible header field: huge size, odd type, PAX-ish digits
            off = (rng.randrange(len(buf)) // 512) * 512
            field = rng.choice([(124, b"77777777777\x00"), (156, rng.choice(TYPES))])
            buf[off + field[0] : off + field[0] + len(field[1])] = field[1]
        elif op == 4 and buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    return bytes(buf)


def sample(rng: random.Random) -> bytes:
    base = tar_bytes(random_members(rng), fmt=rng.choice([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]))
    return mutate(base, rng) if rng.random() < 0.7 else base


def check_export(data: bytes) -> str:
    """The docker-export pipeline: only nitroguard errors may escape."""
    try:
        write_customer_ramdisk(_NullOut(), docker_export_entries(io.BytesIO(data)), CONFIG)  # type: ignore[arg-type]
    except Error as exc:
        return exc.reason.value
    return "ok"


def check_flatten(layers: list[bytes]) -> str:
    """dockerd-style flattening + export walk + ramdisk."""
    with tempfile.TemporaryDirectory() as spool:
        try:
            tree = _Tree(Path(spool))
            warnings: list[str] = []
            for i, layer in enumerate(layers):
                _apply_layer(tree, io.BytesIO(layer), i, True, warnings)  # type: ignore[arg-type]
            _init_layer(tree)
            write_customer_ramdisk(_NullOut(), _walk(tree), CONFIG)  # type: ignore[arg-type]
        except Error as exc:
            return exc.reason.value
    return "ok"
