"""Helpers for the EIF tests: hand-crafted images and test-time certificates."""

from __future__ import annotations

import datetime as dt
import json
import struct
import subprocess
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HEADER = struct.Struct(">4sHHQQHH32Q32QII")
META = b'{"ImageName":"t","ImageVersion":"1.0","BuildMetadata":null}'


def section(stype: int, data: bytes, *, flags: int = 0, size: int | None = None) -> bytes:
    """A 12-byte section header (size defaults to len(data)) followed by the data."""
    return struct.pack(">HHQ", stype, flags, len(data) if size is None else size) + data


def craft(
    sections: Sequence[tuple[int, bytes]],
    *,
    version: int = 4,
    magic: bytes = b".eif",
    flags: int = 0,
    num_sections: int | None = None,
    offsets: Sequence[int] | None = None,
    sizes: Sequence[int] | None = None,
    gap: int = 0,
    trailing: bytes = b"",
    crc: int | None = None,
    raw_sections: bytes | None = None,
) -> bytes:
    """An EIF with the given (type, data) sections laid out back to back.

    Overrides let a test break exactly one property; the CRC is recomputed over the
    result (table order) unless `crc` is given.
    """
    body = b""
    real_offsets, real_sizes = [], []
    pos = 548 + gap
    body += b"\xaa" * gap
    for stype, data in sections:
        real_offsets.append(pos)
        real_sizes.append(len(data))
        blob = section(stype, data)
        body += blob
        pos += len(blob)
    if raw_sections is not None:
        body = raw_sections
    offs = list(offsets if offsets is not None else real_offsets)
    szs = list(sizes if sizes is not None else real_sizes)
    count = len(sections) if num_sections is None else num_sections
    offs += [0] * (32 - len(offs))
    szs += [0] * (32 - len(szs))
    head = HEADER.pack(magic, version, flags, 1 << 30, 2, 0, count, *offs[:32], *szs[:32], 0, 0)
    image = head + body + trailing
    if crc is None:
        crc = zlib.crc32(head[:544])
        for i in range(min(count, 32)):
            o, s = offs[i], szs[i]
            crc = zlib.crc32(image[o : o + 12 + s], crc)
    return image[:544] + struct.pack(">I", crc) + image[548:]


def basic_sections(n_ramdisks: int = 2) -> list[tuple[int, bytes]]:
    """kernel, cmdline, metadata and `n_ramdisks` ramdisks (nitro-cli's order)."""
    out = [(1, b"K" * 100), (2, b"console=ttyS0"), (5, META)]
    out += [(3, bytes([65 + i]) * (50 + i)) for i in range(n_ramdisks)]
    return out


def make_cert(
    curve: ec.EllipticCurve | None = None,
    *,
    not_before: dt.datetime | None = None,
    days: int = 365,
) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """A self-signed EC certificate (PEM) and its key, generated now."""
    key = ec.generate_private_key(curve or ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nitroguard eif test")])
    start = not_before or (dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .sign(key, hashes.SHA384())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def bzimage(version: str, size: int = 4096) -> bytes:
    """A fake x86 bzImage whose setup header points at `version`."""
    img = bytearray(size)
    img[0x202:0x206] = b"HdrS"
    img[0x206:0x208] = (0x020F).to_bytes(2, "little")
    ptr = 0x300
    img[0x20E:0x210] = ptr.to_bytes(2, "little")
    text = version.encode() + b"\0"
    img[ptr + 0x200 : ptr + 0x200 + len(text)] = text
    return bytes(img)


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run `nitroguard eif ARGS...` in a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "nitroguard", "eif", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def run_json(*args: str | Path) -> tuple[int, dict[str, Any]]:
    """Run with `--json`; return (exit code, parsed stdout)."""
    out = run(*args, "--json")
    return out.returncode, json.loads(out.stdout)
