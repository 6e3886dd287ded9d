"""A fake AWS KMS that behaves like the real one where it matters for enclaves.

- KMS's JSON protocol (``X-Amz-Target: TrentService.<Op>``,
  ``application/x-amz-json-1.1``, base64 blobs, ``__type`` error names) over HTTPS, so
  an unmodified boto3 client works with ``endpoint_url`` and the fake's CA bundle.
- SigV4 checked on every request (`nitroguard.kms._sigv4`); access keys map to
  principals.
- Symmetric keys kept in a state directory (atomic writes): CreateKey, DescribeKey,
  Encrypt, Decrypt, GenerateDataKey, GenerateDataKeyPair, GenerateRandom, PutKeyPolicy,
  GetKeyPolicy.
- ``Recipient``: the attestation document is verified with nitroguard's `Verifier`
  against the configured roots (debug-mode documents verify; the key policy decides),
  its PCRs become the ``kms:RecipientAttestation:*`` condition keys, and the answer is
  ``CiphertextForRecipient`` in the real BER shape, never ``Plaintext``.
- Key policies are parsed and evaluated by `nitroguard.kms._policy`.

`FakeKmsService` is sans-IO (``handle(method, path, headers, body)``); `FakeKms`
serves it over HTTPS with the stdlib ``ThreadingHTTPServer``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import ipaddress
import json
import logging
import os
import secrets
import socket
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nitroguard._atomic import write_atomic
from nitroguard._resource import Resource
from nitroguard.errors import ConfigError
from nitroguard.kms._fake_common import (
    _DEFAULT_ACCOUNT,
    MAX_BODY,
    FakeCredential,
    KmsFault,
    default_key_policy,
    load_credentials,
)
from nitroguard.kms._fake_service import FakeKmsService

__all__ = [
    "FakeCredential",
    "FakeKms",
    "FakeKmsService",
    "KmsFault",
    "default_key_policy",
    "load_credentials",
]

log = logging.getLogger("nitroguard.kms.fake")


# ------------------------------------------------------------------------------ TLS + HTTP


def make_tls(host: str, region: str, now: dt.datetime) -> tuple[bytes, bytes, bytes]:
    """A fresh CA and server certificate: (CA PEM, server chain PEM, server key PEM).

    The certificate covers `host`, ``localhost``, 127.0.0.1 and ``kms.<region>.amazonaws.com``.
    """
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nitroguard fake KMS CA")])
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=30)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName(f"kms.{region}.amazonaws.com"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"kms.{region}")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(names))), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return (
        ca.public_bytes(pem),
        cert.public_bytes(pem),
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpsServer
    timeout = 10

    def do_POST(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit() or int(length) > MAX_BODY:
            status, body = (
                413,
                json.dumps(
                    {"__type": "ValidationException", "message": "Content-Length up to 512 KiB"}
                ).encode(),
            )
            self.close_connection = True
        else:
            data = self.rfile.read(int(length))
            headers = dict(self.headers.items())
            status, body = self.server.service.handle(self.command, self.path, headers, data)
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        log.debug("%s %s", self.address_string(), format % args)


class _HttpsServer(http.server.ThreadingHTTPServer):
    # Non-daemon threads, joined by server_close() once `drop_connections` has shut
    # every live connection: nothing outlives `FakeKms.close`.
    daemon_threads = False
    block_on_close = True
    service: FakeKmsService
    tls: ssl.SSLContext

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily) -> None:
        self.address_family = family
        self.live: set[socket.socket] = set()
        self.live_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the connection's own thread, bounded by a timeout,
        # so a silent client cannot stall accept().
        request.settimeout(10)
        # Headers and body go out in separate writes: without NODELAY, Nagle plus the
        # client's delayed ACK add ~40 ms to every answer.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.live_lock:
            self.live.add(request)
        try:
            tls = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            with self.live_lock:
                self.live.discard(request)
            return
        with self.live_lock:
            self.live.discard(request)
            self.live.add(tls)
        try:
            super().finish_request(tls, client_address)
        finally:
            with self.live_lock:
                self.live.discard(tls)
            tls.close()

    def drop_connections(self) -> None:
        with self.live_lock:
            for sock in self.live:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address)


class FakeKms(Resource):
    """The fake KMS served over HTTPS in a background thread (tests, demo, CLI).

    Use as a context manager::

        with FakeKms(tmp_path, roots=[nsm.pki.root_certificate]) as kms:
            client = boto3.client("kms", **kms.boto3_kwargs())

    Args:
        state_dir: keys and ``ca.pem`` are written here.
        roots: attestation trust roots (default AWS Root-G1).
        credentials: accepted access keys (default: one random credential for
            ``arn:aws:iam::111122223333:role/enclave``, see `credential`).
        host, port: where to listen (default 127.0.0.1, a free port).
        region: the region.
        clock, rng: injected time and randomness.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        roots: Sequence[x509.Certificate] | None = None,
        credentials: Sequence[FakeCredential] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = "us-east-1",
        clock: Callable[[], dt.datetime] | None = None,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if credentials is None:
            credentials = [
                FakeCredential(
                    "AKIA" + secrets.token_hex(8).upper(),
                    secrets.token_urlsafe(30),
                    f"arn:aws:iam::{_DEFAULT_ACCOUNT}:role/enclave",
                )
            ]
        self.credentials = list(credentials)
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.region = region
        self.service = FakeKmsService(
            self.state_dir, self.credentials, roots=roots, region=region, clock=clock, rng=rng
        )
        self._host, self._port = host, port
        self._server: _HttpsServer | None = None
        self._thread: threading.Thread | None = None
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    @property
    def credential(self) -> FakeCredential:
        """The first credential."""
        return self.credentials[0]

    @property
    def ca_path(self) -> Path:
        """The CA bundle to pass as ``verify=``."""
        return self.state_dir / "ca.pem"

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        if self._server is None:
            raise ConfigError("the fake KMS is not running")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def endpoint_url(self) -> str:
        """``https://HOST:PORT``."""
        host, port = self.address
        return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"

    def boto3_kwargs(self, credential: FakeCredential | None = None) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client("kms", **kwargs)``."""
        cred = credential or self.credential
        return {
            "region_name": self.region,
            "endpoint_url": self.endpoint_url,
            "verify": str(self.ca_path),
            "aws_access_key_id": cred.access_key_id,
            "aws_secret_access_key": cred.secret_access_key,
        }

    def start(self) -> FakeKms:
        """Generate the TLS identity, write ``ca.pem`` and start serving."""
        ca_pem, cert_pem, key_pem = make_tls(self._host, self.region, self._clock())
        write_atomic(self.ca_path, ca_pem)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        with tempfile.TemporaryDirectory() as tmp:
            chain, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            chain.write_bytes(cert_pem)
            key.write_bytes(key_pem)
            tls.load_cert_chain(chain, key)
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        server = _HttpsServer((self._host, self._port), family)
        server.service = self.service
        server.tls = tls
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.drop_connections()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Self:
        # Entering starts serving (the base class only returns self).
        self.start()
        return self
