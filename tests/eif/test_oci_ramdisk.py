"""nitro-cli's ramdisks from an image (spec oci-eif.md 3): bootstrap vectors and the
customer ramdisk from docker-export streams built here."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from oci_helpers import D, T, inspect_json, parse_newc, tar_bytes

from nitroguard.eif._image import (
    HOSTS,
    docker_export_entries,
    go_rel,
    parse_image_config,
    write_bootstrap_ramdisk,
    write_customer_ramdisk,
)
from nitroguard.errors import ImageError, Reason, TarError
from nitroguard.hazmat._cpio import CpioWriter

S_DIR, S_REG, S_LNK, S_CHR, S_BLK, S_FIFO = (
    0o040000,
    0o100000,
    0o120000,
    0o020000,
    0o060000,
    0o010000,
)


def customer(members: list[T], config: bytes | None = None) -> bytes:
    cfg = parse_image_config(config or inspect_json(cmd=["/app", "--flag"], env=["A=1", "B=2"]))
    out = io.BytesIO()
    write_customer_ramdisk(out, docker_export_entries(io.BytesIO(tar_bytes(members))), cfg)
    return out.getvalue()


def rows(data: bytes) -> list[tuple[bytes, int, int, int, int, bytes]]:
    return [(c.name, c.mode, c.uid, c.gid, c.mtime, c.data) for c in parse_newc(data)]


TAIL = [
    (b"rootfs", S_DIR | 0o755, 0, 0, D, b""),
    (b"rootfs/dev", S_DIR | 0o755, 0, 0, D, b""),
    (b"rootfs/run", S_DIR | 0o755, 0, 0, D, b""),
    (b"rootfs/sys", S_DIR | 0o755, 0, 0, D, b""),
    (b"rootfs/var", S_DIR | 0o755, 0, 0, D, b""),
    (b"rootfs/proc", S_DIR | 0o755, 0, 0, D, b""),
    (b"rootfs/tmp", S_DIR | 0o755, 0, 0, D, b""),
    (b"cmd", S_REG | 0o644, 0, 0, D, b"/app\n--flag\n"),
    (b"env", S_REG | 0o644, 0, 0, D, b"A=1\nB=2\n"),
    (b"TRAILER!!!", 0, 0, 0, 0, b""),
]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_bootstrap_vectors(oci_eif_vectors_dir: Path, index: int) -> None:
    vec = json.loads((oci_eif_vectors_dir / "expected.json").read_text())["bootstrap"][index]
    out = io.BytesIO()
    size = write_bootstrap_ramdisk(
        out, oci_eif_vectors_dir / vec["init"], oci_eif_vectors_dir / vec["nsm_ko"]
    )
    assert size == vec["bytes"] == len(out.getvalue())
    assert hashlib.sha384(out.getvalue()).hexdigest() == vec["sha384"]
    entries = parse_newc(out.getvalue())
    assert [(c.ino, c.name, c.nlink, c.dev) for c in entries] == [
        (721, b"dev", 2, (3, 1)),
        (722, b"init", 1, (3, 1)),
        (723, b"nsm.ko", 1, (3, 1)),
        (724, b"TRAILER!!!", 1, (3, 1)),
    ]


def test_customer_full_export_stream() -> None:
    """Every entry type and every linuxkit rule of spec 3.3 / 3.6 in one stream."""
    now = 1733000000
    members = [
        T(".dockerenv", data=b"", mode=0o755, mtime=now),
        T("Dockerfile", data=b"FROM scratch\n"),
        T("a/", tarfile.DIRTYPE, mode=0o755),
        T("a/x", data=b"ax"),
        T("a-b", data=b"dash"),
        T("bin/", tarfile.DIRTYPE, mode=0o755, mtime=1600000000),
        T("bin/su", data=b"#!su", mode=0o4755),
        T("bin/sh", tarfile.SYMTYPE, mode=0o777, link="busybox"),
        T("bin/busybox", data=b"BB" * 10, mode=0o755),
        T("usr/", tarfile.DIRTYPE, mode=0o1777, uid=1000, gid=1000),
        T("usr/bin/", tarfile.DIRTYPE, mode=0o755),
        T("usr/bin/ls", tarfile.LNKTYPE, mode=0o755, link="bin/busybox"),
        T("dev/", tarfile.DIRTYPE, mode=0o755, mtime=now),
        T("dev/console", data=b"", mode=0o755, mtime=now),
        T("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
        T("dev/loop0", tarfile.BLKTYPE, mode=0o660, devmajor=7, devminor=0),
        T("dev/pts/", tarfile.DIRTYPE, mode=0o755, mtime=now),
        T("dev/shm/", tarfile.DIRTYPE, mode=0o755, mtime=now),
        T("etc/", tarfile.DIRTYPE, mode=0o755, mtime=now),
        T("etc/hostname", data=b"", mode=0o755, mtime=now),
        T("etc/hosts", data=b"", mode=0o755, mtime=now),
        T("etc/mtab", tarfile.SYMTYPE, mode=0o777, link="/proc/mounts", mtime=now),
        T("etc/resolv.conf", data=b"", mode=0o755, mtime=now),
        T("fifo", tarfile.FIFOTYPE, mode=0o600),
        T("proc/", tarfile.DIRTYPE, mode=0o755, mtime=now),
        T("sys/", tarfile.DIRTYPE, mode=0o755, mtime=now),
        T("x" * 124, data=b"long"),
    ]
    m = 1700000000
    expected = [
        (b"rootfs", S_DIR | 0o755, 0, 0, D, b""),
        (b"rootfs/a/", S_DIR | 0o755, 0, 0, m, b""),
        (b"rootfs/a/x", S_REG | 0o644, 0, 0, m, b"ax"),
        (b"rootfs/a-b", S_REG | 0o644, 0, 0, m, b"dash"),
        (b"rootfs/bin/", S_DIR | 0o755, 0, 0, 1600000000, b""),
        (b"rootfs/bin/su", S_REG | 0o4755, 0, 0, m, b"#!su"),
        (b"rootfs/bin/sh", S_LNK | 0o777, 0, 0, m, b"busybox"),
        (b"rootfs/bin/busybox", S_REG | 0o755, 0, 0, m, b"BB" * 10),
        (b"rootfs/usr/", S_DIR | 0o1777, 1000, 1000, m, b""),
        (b"rootfs/usr/bin/", S_DIR | 0o755, 0, 0, m, b""),
        # hard link -> relative symlink, mode from the link header
        (b"rootfs/usr/bin/ls", S_LNK | 0o755, 0, 0, m, b"../../bin/busybox"),
        (b"rootfs/dev/", S_DIR | 0o755, 0, 0, D, b""),
        (b"rootfs/dev/null", S_CHR | 0o666, 0, 0, m, b""),
        (b"rootfs/dev/loop0", S_BLK | 0o660, 0, 0, m, b""),
        (b"rootfs/dev/pts/", S_DIR | 0o755, 0, 0, D, b""),
        (b"rootfs/dev/shm/", S_DIR | 0o755, 0, 0, D, b""),
        (b"rootfs/etc/", S_DIR | 0o755, 0, 0, D, b""),
        (b"rootfs/etc/hosts", S_REG | 0o755, 0, 0, D, HOSTS),
        (b"rootfs/etc/mtab", S_LNK | 0o777, 0, 0, D, b"/proc/mounts"),
        (b"rootfs/etc/resolv.conf", S_LNK | 0o755, 0, 0, D, b"/run/resolvconf/resolv.conf"),
        (b"rootfs/fifo", S_FIFO | 0o600, 0, 0, m, b""),
        (b"rootfs/proc/", S_DIR | 0o755, 0, 0, D, b""),
        (b"rootfs/sys/", S_DIR | 0o755, 0, 0, D, b""),
        (b"rootfs/" + b"x" * 124, S_REG | 0o644, 0, 0, m, b"long"),
        *TAIL,
    ]
    data = customer(members)
    assert rows(data) == expected
    parsed = parse_newc(data)
    assert [c.ino for c in parsed] == list(range(721, 721 + len(parsed)))
    assert all(c.dev == (3, 1) for c in parsed)
    assert all(c.nlink == (2 if c.mode & 0o170000 == S_DIR else 1) for c in parsed)
    by_name = {c.name: c for c in parsed}
    assert by_name[b"rootfs/dev/null"].rdev == (1, 3)
    assert by_name[b"rootfs/dev/loop0"].rdev == (7, 0)
    assert len(HOSTS) == 160
    assert parsed[-1].mtime == 0


def test_missing_touch_entries_are_synthesized_sorted() -> None:
    data = customer([T("app", data=b"x"), T("etc/", tarfile.DIRTYPE, mode=0o700)])
    names = [r[:2] for r in rows(data)]
    assert names[:3] == [
        (b"rootfs", S_DIR | 0o755),
        (b"rootfs/app", S_REG | 0o644),
        (b"rootfs/etc/", S_DIR | 0o700),
    ]
    assert names[3:11] == [
        (b"rootfs/dev", S_DIR | 0o755),
        (b"rootfs/dev/pts", S_DIR | 0o755),
        (b"rootfs/dev/shm", S_DIR | 0o755),
        (b"rootfs/etc/hosts", S_REG | 0o644),
        (b"rootfs/etc/mtab", S_LNK | 0o755),
        (b"rootfs/etc/resolv.conf", S_LNK | 0o644),
        (b"rootfs/proc", S_DIR | 0o755),
        (b"rootfs/sys", S_DIR | 0o755),
    ]
    r = {x[0]: x for x in rows(data)}
    assert r[b"rootfs/etc/hosts"][5] == HOSTS
    assert r[b"rootfs/etc/mtab"][5] == b"/proc/mounts"


def test_exclusions_only_match_exact_names() -> None:
    """dev/pts as a directory is 'dev/pts/' and not excluded; a file dev/pts is."""
    data = customer(
        [
            T("dev/pts", data=b"file"),
            T("sub/Dockerfile", data=b"kept"),
            T("sub/.dockerenv", data=b"kept"),
        ]
    )
    names = [r[0] for r in rows(data)]
    assert b"rootfs/dev/pts" in names  # synthesized directory from the touch list
    r = {x[0]: x for x in rows(data)}
    assert r[b"rootfs/dev/pts"][1] == S_DIR | 0o755
    assert b"rootfs/sub/Dockerfile" in names
    assert b"rootfs/sub/.dockerenv" in names


def test_cmd_rules() -> None:
    def cmd_env(cfg: bytes) -> tuple[bytes, bytes]:
        r = {x[0]: x[5] for x in rows(customer([], cfg))}
        return r[b"cmd"], r[b"env"]

    assert cmd_env(inspect_json(cmd=["a"], entrypoint=["e", "f"])) == (b"a\n", b"")
    assert cmd_env(inspect_json(cmd=[], entrypoint=["e"])) == (b"", b"")
    assert cmd_env(inspect_json(cmd=None, entrypoint=["e", "f"], env=["Z=1", "A=2", "Z=1"])) == (
        b"e\nf\n",
        b"Z=1\nA=2\nZ=1\n",
    )
    with pytest.raises(ImageError) as err:
        customer([], inspect_json())
    assert err.value.reason is Reason.INVALID_IMAGE_CONFIG
    oci = json.dumps({"architecture": "arm64", "config": {"Entrypoint": ["/e"]}}).encode()
    cfg = parse_image_config(oci, image_id="cd" * 32)
    assert cfg.launch == ("/e",)
    assert cfg.eif_arch == "aarch64"
    assert cfg.image_id == "cd" * 32


@pytest.mark.parametrize(
    "bad",
    [
        b"not json",
        b"[]",
        b"[1, 2]",
        b'"x"',
        b'{"Config": {"Cmd": "sh"}}',
        b'{"Config": {"Cmd": [1]}}',
        b'{"Config": 5}',
        b'{"Config": {}, "Architecture": 5}',
        b'{"Config": {"WorkingDir": 3}}',
        b'{"Config": {"Env": ["\\ud800"]}}',
    ],
)
def test_bad_image_configs(bad: bytes) -> None:
    with pytest.raises(ImageError) as err:
        parse_image_config(bad)
    assert err.value.reason is Reason.INVALID_IMAGE_CONFIG


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ([T("etc/hosts", tarfile.SYMTYPE, link="x")], Reason.UNSUPPORTED_ENTRY),
        ([T("c", tarfile.CONTTYPE, data=b"")], Reason.UNSUPPORTED_ENTRY),
        ([T("big", mtime=-5)], Reason.CPIO_FIELD_OVERFLOW),
        ([T("u", uid=1 << 32)], Reason.CPIO_FIELD_OVERFLOW),
    ],
)
def test_unconvertible_entries(members: list[T], reason: Reason) -> None:
    with pytest.raises(ImageError) as err:
        customer(members)
    assert err.value.reason is reason


def test_regular_name_with_slash_and_sized_dir_rejected() -> None:
    raw = bytearray(tar_bytes([T("f", data=b"")], fmt=tarfile.USTAR_FORMAT))
    raw[0:2] = b"f/"
    raw[148:156] = b"        "
    raw[148:155] = b"%06o\x00" % sum(raw[:512])
    cfg = parse_image_config(inspect_json(cmd=["a"]))
    with pytest.raises(ImageError) as err:
        write_customer_ramdisk(io.BytesIO(), docker_export_entries(io.BytesIO(bytes(raw))), cfg)
    assert err.value.reason is Reason.UNSUPPORTED_ENTRY


def test_cpio_writer_checks_data_length() -> None:
    w = CpioWriter(io.BytesIO())
    with pytest.raises(ImageError):
        w.write_entry(b"x", ftype=0o10, mode=0o644, size=3, data=[b"ab"])
    with pytest.raises(ImageError):
        w.write_entry(b"y", ftype=0o10, mode=0o644, size=1, data=[b"ab"])


@pytest.mark.parametrize(
    ("base", "target", "rel"),
    [
        (b"rootfs/usr/bin", b"rootfs/bin/busybox", b"../../bin/busybox"),
        (b"rootfs", b"rootfs/a", b"a"),
        (b"rootfs/a", b"rootfs/a", b"."),
        (b"rootfs/a/b", b"rootfs/a/c", b"../c"),
        (b".", b"a/b", b"a/b"),
        (b"/abs", b"rel", None),
        (b"../x", b"a", None),
        (b"rootfs/x", b"rootfs//y/./z", b"../y/z"),
    ],
)
def test_go_rel(base: bytes, target: bytes, rel: bytes | None) -> None:
    assert go_rel(base, target) == rel


def test_tar_reader_formats() -> None:
    """GNU long names, ustar prefix and PAX paths all give Go's names."""
    long = "d" * 120 + "/" + "f" * 120
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        name = long if fmt != tarfile.USTAR_FORMAT else "p" * 130 + "/f"
        stream = tar_bytes([T(name, data=b"1"), T("dir", tarfile.DIRTYPE)], fmt=fmt)
        entries = [e for e, _ in docker_export_entries(io.BytesIO(stream))]
        assert [e.name for e in entries] == [name.encode(), b"dir/"]


def test_tar_reader_rejects_garbage() -> None:
    bad = bytearray(tar_bytes([T("f", data=b"abc")]))
    bad[200] ^= 0xFF
    with pytest.raises(TarError):
        list(docker_export_entries(io.BytesIO(bytes(bad))))
    with pytest.raises(TarError) as err:
        list(docker_export_entries(io.BytesIO(tar_bytes([T("f", data=b"a" * 600)])[:700])))
    assert err.value.reason is Reason.TRUNCATED


def test_values_go_cannot_rewrite() -> None:
    """A device number or mode beyond 7 octal digits: linuxkit's PAX re-write fails."""
    from nitroguard.hazmat._tar import TarEntry

    cfg = parse_image_config(inspect_json(cmd=["a"]))
    for entry in (
        TarEntry(b"dev/x", b"3", 0o600, 0, 0, 0, 0, devmajor=1 << 21),
        TarEntry(b"f", b"0", 1 << 21, 0, 0, 0, 0),
    ):
        with pytest.raises(ImageError) as err:
            write_customer_ramdisk(io.BytesIO(), [(entry, lambda: iter(()))], cfg)
        assert err.value.reason is Reason.UNSUPPORTED_ENTRY
