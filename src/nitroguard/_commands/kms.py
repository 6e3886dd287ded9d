"""`nitroguard kms`: KMS ``CiphertextForRecipient`` tools and the fake KMS.

Usage::

    nitroguard kms inspect FILE [--json]          # parse only
    nitroguard kms open FILE --key PEM [--json]   # parse and open with the recipient key
    nitroguard kms fake serve --listen tcp://127.0.0.1:8443 --state DIR \\
        [--root PEM]... [--region R] [--credentials FILE]

FILE may be raw BER, base64 or hex (detected); ``-`` reads stdin. Exit codes: 0 success,
1 rejected or unopenable envelope, 2 unreadable input or usage.

Each subcommand is one ``_add_<name>(kms_subparsers)`` function listed in `SUBCOMMANDS`;
add a new one there (the key-policy tools register ``policy`` and ``lint`` this way).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from nitroguard._commands._common import emit_json, read_blob
from nitroguard._commands.kms_policy import add_lint, add_policy
from nitroguard.errors import ConfigError

__all__ = ["SUBCOMMANDS", "register"]

#: The largest envelope file read (the parser's own cap is lower; this bounds reading).
_MAX_INPUT = 1024 * 1024


def _add_inspect(kms: argparse._SubParsersAction[Any]) -> None:
    parser = kms.add_parser(
        "inspect",
        help="parse a CiphertextForRecipient strictly and describe it",
        description="Parse only (no key needed). Exit 1 when the envelope is refused.",
    )
    parser.add_argument("file", metavar="FILE", help="raw BER, base64 or hex; - for stdin")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_inspect)


def _inspect(args: argparse.Namespace) -> int:
    from nitroguard.hazmat.cms import parse_envelope

    envelope = parse_envelope(read_blob(args.file, limit=_MAX_INPUT))
    info = envelope.describe()
    if args.json:
        emit_json(info)
    else:
        sys.stdout.write(
            "CiphertextForRecipient: accepted (KMS shape)\n"
            + "".join(f"  {key}: {value}\n" for key, value in info.items())
        )
    return 0


def _add_open(kms: argparse._SubParsersAction[Any]) -> None:
    parser = kms.add_parser(
        "open",
        help="open a CiphertextForRecipient with the recipient's RSA private key",
        description="Parse strictly, unwrap with RSA-OAEP-SHA256, decrypt AES-256-CBC. "
        "Every unwrap or padding failure is the same decryption_failed (exit 1).",
    )
    parser.add_argument("file", metavar="FILE", help="raw BER, base64 or hex; - for stdin")
    parser.add_argument("--key", required=True, metavar="PEM", help="RSA private key (PEM)")
    parser.add_argument("--json", action="store_true", help='print {"plaintext": HEX}')
    parser.set_defaults(func=_open)


def _open(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from nitroguard.kms import open_envelope

    pem = read_blob(args.key, limit=64 * 1024, decode_text=False)
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{args.key}: not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{args.key}: not an RSA private key")
    plaintext = open_envelope(key, read_blob(args.file, limit=_MAX_INPUT))
    if args.json:
        emit_json({"plaintext": plaintext.hex()})
    else:
        sys.stdout.write(plaintext.hex() + "\n")
    return 0


def _add_fake(kms: argparse._SubParsersAction[Any]) -> None:
    fake = kms.add_parser("fake", help="a fake AWS KMS for tests and demos")
    actions = fake.add_subparsers(dest="fake_command", metavar="ACTION", required=True)
    serve = actions.add_parser(
        "serve",
        help="serve the fake KMS over HTTPS (boto3 works with endpoint_url + its CA)",
        description="Writes DIR/ca.pem, prints 'listening on https://HOST:PORT', serves until "
        "SIGTERM/SIGINT. Without --credentials, one credential is generated and written to "
        "DIR/credentials.json (mode 0600).",
    )
    serve.add_argument("--listen", required=True, metavar="tcp://HOST:PORT")
    serve.add_argument("--state", required=True, metavar="DIR", help="keys and ca.pem")
    serve.add_argument(
        "--root",
        action="append",
        default=[],
        metavar="PEM",
        help="attestation trust root (repeatable; default AWS Nitro Enclaves Root-G1)",
    )
    serve.add_argument("--region", default="us-east-1", metavar="REGION")
    serve.add_argument(
        "--credentials",
        metavar="FILE",
        help='JSON list of {"access_key_id", "secret_access_key", "principal"}',
    )
    serve.set_defaults(func=_fake_serve)


def _fake_serve(args: argparse.Namespace) -> int:
    import json
    import os
    import signal
    import threading
    from pathlib import Path

    from cryptography import x509

    from nitroguard._atomic import write_atomic
    from nitroguard.kms._fake import FakeKms, load_credentials
    from nitroguard.transport import parse_address

    address = parse_address(args.listen)
    if address.kind != "tcp":
        raise ConfigError("--listen must be tcp://HOST:PORT")
    roots = []
    for path in args.root:
        try:
            roots.extend(x509.load_pem_x509_certificates(Path(path).read_bytes()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--root {path}: {exc}") from None
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    credentials = load_credentials(args.credentials) if args.credentials else None
    fake = FakeKms(
        state,
        roots=roots or None,
        credentials=credentials,
        host=str(address.host),
        port=int(address.port),
        region=args.region,
    )
    if credentials is None:
        cred = fake.credential
        write_atomic(
            state / "credentials.json",
            json.dumps(
                [
                    {
                        "access_key_id": cred.access_key_id,
                        "secret_access_key": cred.secret_access_key,
                        "principal": cred.principal,
                    }
                ]
            ).encode(),
            mode=0o600,
        )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with fake:
        sys.stdout.write(f"listening on {fake.endpoint_url}\n")
        sys.stdout.flush()
        sys.stderr.write(f"CA bundle: {fake.ca_path} (pid {os.getpid()})\n")
        stop.wait()
    return 0


#: The `kms` subcommands, in help order: each adds its parser to the `kms` group.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[Any]], None]] = [
    _add_inspect,
    _add_open,
    _add_fake,
    add_policy,
    add_lint,
]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `kms` command and its subcommands."""
    parser = sub.add_parser(
        "kms",
        help="KMS Recipient envelopes (inspect, open) and a fake KMS",
        description="Attested secrets from AWS KMS: CiphertextForRecipient tools and a fake KMS.",
    )
    kms = parser.add_subparsers(dest="kms_command", metavar="ACTION", required=True)
    for add in SUBCOMMANDS:
        add(kms)
