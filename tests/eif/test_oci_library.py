"""`build_eif_from_image` and the tar reader, in process (edge cases and errors)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from oci_helpers import T, inspect_json, oci_layout, parse_newc, tar_bytes

from nitroguard.eif import build_eif_from_image, pcr_of_bytes, read_eif
from nitroguard.eif._image import docker_export_entries
from nitroguard.eif._imagebuild import (
    build_time_from_epoch,
    compare_pcrs,
    load_expected_pcrs,
    read_blobs,
)
from nitroguard.errors import ConfigError, Error, ImageError, Reason, TarError
from nitroguard.hazmat._tar import TarReader


@pytest.fixture
def blobs(tmp_path: Path, oci_eif_vectors_dir: Path) -> Path:
    d = tmp_path / "blobs"
    d.mkdir()
    shutil.copy(oci_eif_vectors_dir / "synthetic-init", d / "init")
    shutil.copy(oci_eif_vectors_dir / "synthetic-nsm.ko", d / "nsm.ko")
    (d / "bzImage").write_bytes(b"k" * 4096)
    (d / "Image").write_bytes(b"a" * 4096)
    (d / "cmdline").write_bytes(b"  console=ttyS0 \n")
    (d / "Image.config").write_text("#\n#\n# Linux/arm64 6.6.79 Kernel Configuration\n")
    return d


def test_library_build_streamed_equals_ramdisk_dir(tmp_path: Path, blobs: Path) -> None:
    export = tmp_path / "e.tar"
    export.write_bytes(tar_bytes([T("app", data=b"x" * 5000, mode=0o755)]))
    config = tmp_path / "c.json"
    config.write_bytes(inspect_json(entrypoint=["/app"], Architecture="arm64"))
    rd = tmp_path / "rd"
    rd.mkdir()
    seen: list[int] = []
    a = build_eif_from_image(
        tmp_path / "a.eif", blobs=blobs, docker_export=export, image_config=config, ramdisk_dir=rd
    )
    b = build_eif_from_image(
        tmp_path / "b.eif",
        blobs=blobs,
        docker_export=export,
        image_config=config,
        progress=seen.append,
        build_time=build_time_from_epoch("86400"),
    )
    assert a.arch == b.arch == "aarch64"
    assert a.eif.measurements == b.eif.measurements
    assert sum(seen) == 5000
    customer = (rd / "customer-initrd.img").read_bytes()
    assert len(customer) == a.customer_size == b.customer_size
    assert read_eif(tmp_path / "b.eif").measurements.pcr2 == pcr_of_bytes(customer)
    image = read_eif(tmp_path / "a.eif")
    assert image.cmdline == b"console=ttyS0"
    meta = image.metadata
    assert isinstance(meta, dict)
    assert meta["BuildMetadata"]["KernelVersion"] == "6.6.79"
    meta_b = read_eif(tmp_path / "b.eif").metadata
    assert isinstance(meta_b, dict)
    assert meta_b["BuildMetadata"]["BuildTime"] == "1970-01-02T00:00:00+00:00"
    cmd = [c for c in parse_newc(customer) if c.name == b"cmd"]
    assert cmd[0].data == b"/app\n"


def test_library_build_from_oci_with_ramdisk_dir(tmp_path: Path, blobs: Path) -> None:
    root = oci_layout(
        tmp_path / "oci",
        [tar_bytes([T("bin/", tarfile.DIRTYPE), T("bin/x", data=b"1")])],
        {"config": {"Cmd": ["/bin/x"], "Env": ["A=b"]}},
    )
    rd = tmp_path / "rd"
    rd.mkdir()
    res = build_eif_from_image(tmp_path / "o.eif", blobs=blobs, oci=root, ramdisk_dir=rd)
    names = [c.name for c in parse_newc((rd / "customer-initrd.img").read_bytes())]
    # .dockerenv (init layer) is dropped by linuxkit
    assert names[:4] == [b"rootfs", b"rootfs/bin/", b"rootfs/bin/x", b"rootfs/dev/"]
    assert res.warnings == ()
    assert json.loads(res.pcrs_path.read_text())["PCR2"] == res.eif.measurements.as_hex()["PCR2"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, ConfigError),
        ({"docker_export": Path("x"), "oci": Path("y")}, ConfigError),
        ({"docker_export": Path("x")}, ConfigError),
    ],
)
def test_library_argument_errors(
    tmp_path: Path, blobs: Path, kwargs: dict[str, Path], error: type[Exception]
) -> None:
    with pytest.raises(error):
        build_eif_from_image(tmp_path / "o.eif", blobs=blobs, **kwargs)  # type: ignore[arg-type]


def test_library_image_errors(tmp_path: Path, blobs: Path) -> None:
    export = tmp_path / "e.tar"
    export.write_bytes(tar_bytes([T("a", data=b"1")]))
    cfg = tmp_path / "c.json"
    cfg.write_bytes(inspect_json(cmd=["a"], Architecture="s390x"))
    with pytest.raises(ImageError) as err:
        build_eif_from_image(
            tmp_path / "o.eif", blobs=blobs, docker_export=export, image_config=cfg
        )
    assert err.value.reason is Reason.INVALID_IMAGE_CONFIG
    cfg.write_bytes(json.dumps({"Config": {"Cmd": ["a"]}}).encode())
    with pytest.raises(ConfigError):
        build_eif_from_image(
            tmp_path / "o.eif", blobs=blobs, docker_export=export, image_config=cfg
        )
    res = build_eif_from_image(
        tmp_path / "o.eif", blobs=blobs, docker_export=export, image_config=cfg, arch="x86_64"
    )
    assert res.arch == "x86_64"
    with pytest.raises(Error) as err2:
        build_eif_from_image(
            tmp_path / "o.eif", blobs=blobs, docker_export=tmp_path / "nope", image_config=cfg
        )
    assert err2.value.reason is Reason.UNREADABLE_INPUT
    with pytest.raises(Error):
        read_blobs(blobs, "x86_64", kernel=tmp_path / "missing")
    (blobs / "cmdline").write_bytes(b"x" * 70000)
    with pytest.raises(ConfigError):
        read_blobs(blobs, "x86_64")


def test_build_time_and_expected_pcrs(tmp_path: Path) -> None:
    assert build_time_from_epoch(None) == "1970-01-01T00:00:00+00:00"
    with pytest.raises(ConfigError):
        build_time_from_epoch("-1")
    p = tmp_path / "e.json"
    for bad in ("[]", "{}", '{"PCR9": "00"}', '{"PCR0": 5}', "not json"):
        p.write_text(bad)
        with pytest.raises(ConfigError):
            load_expected_pcrs(p)
    p.write_text(json.dumps({"HashAlgorithm": "x", "PCR1": "AB" * 48}))
    assert load_expected_pcrs(p) == {"PCR1": "ab" * 48}
    rows = compare_pcrs({"PCR1": "ab" * 48}, {"PCR1": "ab" * 48, "PCR8": "cd" * 48})
    assert [r["Match"] for r in rows] == [True, False]


def _raw_header(**fields: bytes) -> bytearray:
    block = bytearray(512)
    layout = {
        "name": (0, 100), "mode": (100, 8), "uid": (108, 8), "gid": (116, 8), "size": (124, 12),
        "mtime": (136, 12), "type": (156, 1), "link": (157, 100), "magic": (257, 8),
        "major": (329, 8), "minor": (337, 8), "prefix": (345, 155),
    }  # fmt: skip
    defaults = {"mode": b"0000644\x00", "uid": b"0000000\x00", "gid": b"0000000\x00",
                "size": b"00000000000\x00", "mtime": b"00000000000\x00", "type": b"0",
                "magic": b"ustar\x0000"}  # fmt: skip
    for key, (off, n) in layout.items():
        value = fields.get(key, defaults.get(key, b""))
        block[off : off + len(value[:n])] = value[:n]
    block[148:156] = b" " * 8
    block[148:155] = b"%06o\x00" % sum(block)
    return block


def _entries(data: bytes) -> list[tuple[bytes, bytes, int, int]]:
    return [(e.name, e.typeflag, e.uid, e.mtime) for e in TarReader(io.BytesIO(data))]


def test_tar_reader_edge_cases() -> None:
    end = bytes(1024)
    # base-256 uid, old \0 type with a slash = directory, ustar prefix
    h = _raw_header(name=b"d/", type=b"\x00", uid=b"\x80" + bytes(6) + b"\x05")
    assert _entries(bytes(h) + end) == [(b"d/", b"5", 5, 0)]
    h = _raw_header(name=b"f", prefix=b"p", type=b"\x00")
    assert _entries(bytes(h) + end) == [(b"p/f", b"0", 0, 0)]
    # no end-of-archive marker at all: accepted, like Go
    assert _entries(bytes(h)) == [(b"p/f", b"0", 0, 0)]
    # GNU long link name
    data = b"target" * 30
    k = _raw_header(name=b"././@LongLink", type=b"K", size=b"%011o\x00" % len(data))
    body = data + bytes(-len(data) % 512)
    s = _raw_header(name=b"s", type=b"2", link=b"short")
    entries = list(TarReader(io.BytesIO(bytes(k) + body + bytes(s) + end)))
    assert entries[0].linkname == data
    # PAX records: fractional negative mtime floors, uid, bad records rejected
    for records, expected in (
        (b"14 mtime=-1.5\n", -2),
        (b"15 mtime=17.25\n", 17),
    ):
        x = _raw_header(name=b"pax", type=b"x", size=b"%011o\x00" % len(records))
        blob = bytes(x) + records + bytes(-len(records) % 512) + bytes(_raw_header(name=b"f"))
        assert _entries(blob + end)[0][3] == expected
    for bad in (b"14 mtime=17.2\n\x00", b"5 a=b\n", b"x", b"9 mtime=z\n", b"11 uid=abc\n",
                b"30 GNU.sparse.major=1\n", b"8 =abc\n"):  # fmt: skip
        x = _raw_header(name=b"pax", type=b"x", size=b"%011o\x00" % len(bad))
        blob = bytes(x) + bad + bytes(-len(bad) % 512) + bytes(_raw_header(name=b"f"))
        with pytest.raises(TarError):
            _entries(blob + end)
    for bad_header in (
        _raw_header(name=b"g", type=b"g"),
        _raw_header(name=b"f", size=b"0000000009z\x00"),
        _raw_header(name=b"x", type=b"x", size=b"77777777777\x00"),
    ):
        with pytest.raises(TarError):
            _entries(bytes(bad_header) + end)
    with pytest.raises(TarError):
        _entries(bytes(512) + bytes(_raw_header(name=b"f")))  # zero block then data


def test_tar_reader_skip_data_seeks() -> None:
    stream = tar_bytes([T("a", data=b"1" * 3000), T("b", data=b"2")])
    names = [e.name for e, _ in docker_export_entries(io.BytesIO(stream), skip_data=True)]
    assert names == [b"a", b"b"]


class _Broken(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buf: object) -> int:
        raise OSError(5, "I/O error")


def test_tar_reader_io_error() -> None:
    with pytest.raises(Error) as err:
        list(TarReader(_Broken()))  # type: ignore[arg-type]
    assert err.value.reason is Reason.UNREADABLE_INPUT


def test_export_from_pipe_and_gzip(tmp_path: Path, blobs: Path) -> None:
    import gzip
    import os
    import threading

    stream = tar_bytes([T("app", data=b"y" * 3000), T("etc/", tarfile.DIRTYPE)])
    cfg = tmp_path / "c.json"
    cfg.write_bytes(inspect_json(cmd=["/app"]))
    plain = tmp_path / "e.tar"
    plain.write_bytes(stream)
    gz = tmp_path / "e.tar.gz"
    gz.write_bytes(gzip.compress(stream))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def feed() -> None:
        with fifo.open("wb") as fh:
            fh.write(stream)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    results = [
        build_eif_from_image(
            tmp_path / f"{i}.eif", blobs=blobs, docker_export=src, image_config=cfg
        )
        for i, src in enumerate((plain, gz, fifo))
    ]
    writer.join(timeout=10)
    assert len({r.eif.measurements for r in results}) == 1
    assert (tmp_path / "0.eif").read_bytes() == (tmp_path / "2.eif").read_bytes()


def test_tar_reader_magic_variants() -> None:
    """Go: the ustar magic with any version is USTAR; a 'tar\\0' trailer means STAR
    (131-byte prefix); GNU headers have no prefix."""
    end = bytes(1024)
    odd_version = _raw_header(name=b"f", prefix=b"p", magic=b"ustar\x00xx")
    assert _entries(bytes(odd_version) + end)[0][0] == b"p/f"
    star = _raw_header(name=b"f", prefix=b"q" * 140)
    star[508:512] = b"tar\x00"
    star[148:156] = b" " * 8
    star[148:155] = b"%06o\x00" % sum(star)
    assert _entries(bytes(star) + end)[0][0] == b"q" * 131 + b"/f"
    gnu = _raw_header(name=b"f", prefix=b"p", magic=b"ustar  \x00")
    assert _entries(bytes(gnu) + end)[0][0] == b"f"
