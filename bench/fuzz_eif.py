"""Long fuzz campaign for the EIF reader (the CI suite runs a bounded version).

Mutates well-formed seeds (crafted images, the shared vectors when present, and a
signed image) with byte flips, integer overwrites of header/table/section-header
fields, cuts and insertions, and (one input in five) the signing certificate's DER,
then runs the reader, the static checks and the signature check. Only
`nitroguard.errors.Error` may escape; every input must finish quickly. Prints the
count, the reasons seen and the slowest input.

Usage: python bench/fuzz_eif.py [--seconds 120] [--seed 1]
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime as dt
import random
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nitroguard.eif import Signer, build_eif, read_eif, static_checks
from nitroguard.eif._signature import encode_signature_section, sign_pcr0
from nitroguard.errors import Error

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors" / "eif"
_INTERESTING_U64 = [0, 1, 11, 12, 547, 548, 549, 1 << 31, 1 << 32, 1 << 63, (1 << 64) - 1]


def _cert() -> Signer:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return Signer(cert.public_bytes(serialization.Encoding.PEM), key)


def _append_signature(unsigned: bytes, sig: bytes) -> bytes:
    """Append a signature section and fix the header, as `nitro-cli sign-eif` does."""
    data = bytearray(unsigned)
    n = struct.unpack_from(">H", data, 26)[0]
    offset = len(data)
    data += struct.pack(">HHQ", 4, 0, len(sig)) + sig
    struct.pack_into(">H", data, 26, n + 1)
    struct.pack_into(">Q", data, 28 + 8 * n, offset)
    struct.pack_into(">Q", data, 284 + 8 * n, len(sig))
    crc = zlib.crc32(bytes(data[:544]) + bytes(data[548:]))
    struct.pack_into(">I", data, 544, crc)
    return bytes(data)


class _CertMutator:
    """Mutates the signing certificate's DER: cryptography parses some fields lazily and
    raises exceptions outside ValueError (both escapes so far were found here)."""

    def __init__(self, unsigned: bytes, signer: Signer) -> None:
        self.unsigned = unsigned
        cert = x509.load_pem_x509_certificate(signer.certificate_pem)
        self.der = cert.public_bytes(serialization.Encoding.DER)
        self.cose = sign_pcr0(signer.key, bytes(48))

    def make(self, rng: random.Random) -> bytes:
        der = bytearray(self.der)
        for _ in range(rng.randint(1, 4)):
            der[rng.randrange(len(der))] = rng.randrange(256)
        pem = (
            b"-----BEGIN CERTIFICATE-----\n"
            + base64.encodebytes(bytes(der))
            + b"-----END CERTIFICATE-----\n"
        )
        return _append_signature(self.unsigned, encode_signature_section(pem, self.cose))


def _seeds(tmp: Path) -> list[bytes]:
    seeds = []
    signer = _cert()
    for i, sign in enumerate([None, signer, None]):
        out = tmp / f"seed{i}.eif"
        build_eif(
            out,
            kernel=b"K" * (100 + i),
            cmdline="console=ttyS0 random.trust_cpu=on",
            ramdisks=[b"R" * 40, b"S" * (30 * i + 1)][: 1 + (i % 2)],
            signer=sign,
        )
        seeds.append(out.read_bytes())
    if SHARED.is_dir():
        seeds += [p.read_bytes() for p in sorted(SHARED.glob("*.eif"))]
    return seeds


def _mutate(rng: random.Random, data: bytearray) -> bytearray:
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        pos = rng.randrange(len(data)) if data else 0
        if op < 0.3 and data:
            data[pos] = rng.randrange(256)
        elif op < 0.5:
            # A table entry, num_sections or a section header field.
            field = rng.choice(["num", "off", "size", "any64"])
            i = rng.randrange(32)
            value = rng.choice([*_INTERESTING_U64, rng.getrandbits(64)])
            if field == "num" and len(data) >= 28:
                struct.pack_into(">H", data, 26, rng.randrange(40))
            elif field == "off" and len(data) >= 284:
                struct.pack_into(">Q", data, 28 + 8 * i, value)
            elif field == "size" and len(data) >= 540:
                struct.pack_into(">Q", data, 284 + 8 * i, value)
            elif pos + 8 <= len(data):
                struct.pack_into(">Q", data, pos, value)
        elif op < 0.65:
            del data[pos:]
        elif op < 0.8:
            data[pos:pos] = rng.randbytes(rng.randrange(1, 64))
        elif op < 0.9 and pos + 2 <= len(data):
            struct.pack_into(">H", data, pos, rng.randrange(7))
        else:
            end = min(len(data), pos + rng.randrange(1, 64))
            del data[pos:end]
    return data


def main() -> int:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    # Like the test suite (filterwarnings = error): a warning that escapes is a bug too.
    warnings.simplefilter("error")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        seeds = _seeds(Path(tmp))
    cert_mutator = _CertMutator(seeds[0], _cert())
    reasons: collections.Counter[str] = collections.Counter()
    count = accepted = 0
    slowest = 0.0
    start = time.monotonic()
    at = dt.datetime.now(dt.UTC)
    while time.monotonic() - start < args.seconds:
        if rng.random() < 0.2:
            data = cert_mutator.make(rng)
        else:
            data = bytes(_mutate(rng, bytearray(rng.choice(seeds))))
        t = time.perf_counter()
        try:
            image = read_eif(data, check_crc=rng.random() < 0.3, chunk_size=4096)
            static_checks(image)
            image.check_signature(at)
            accepted += 1
        except Error as exc:
            reasons[exc.reason.value] += 1
        except Exception:
            print(f"ESCAPE after {count} inputs; input hex: {data.hex()}", file=sys.stderr)
            traceback.print_exc()
            return 1
        slowest = max(slowest, time.perf_counter() - t)
        count += 1
    elapsed = time.monotonic() - start
    print(f"inputs: {count} in {elapsed:.0f} s ({count / elapsed:.0f}/s), seed {args.seed}")
    print(f"accepted (parsed, checks ran): {accepted}")
    print(f"slowest input: {slowest * 1000:.1f} ms; escapes: 0")
    for reason, n in reasons.most_common():
        print(f"  {reason:<28} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
