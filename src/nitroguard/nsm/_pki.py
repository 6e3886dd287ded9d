"""The emulator's certificate authority: AWS's Nitro PKI shape, under names that say "not AWS".

Real attestation documents carry a five-level P-384 chain (``../shared/spec/attestation.md``
section 1.3): a 30-year root, a regional CA (~20 days, pathLen 2), a zonal CA (~6 days,
pathLen 1), an instance CA (24 h, pathLen 0, keyCertSign only) and a 3-hour leaf
(CA=false, digitalSignature + nonRepudiation, no EKU), all signed ecdsa-with-SHA384.
`EmulatorPki` issues the same profile, so verifiers exercise the same checks, but every
subject names a nitroguard emulator and never AWS: an emulator document can only verify
against a root the relying party pinned on purpose.

The root (key and certificate) persists in a state directory so that clients can pin
it; the shorter-lived CAs and leaves are issued on demand and rotate like AWS's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nitroguard._atomic import write_atomic
from nitroguard.errors import ConfigError, NsmError, Reason
from nitroguard.hazmat import cbor
from nitroguard.hazmat.certs import CA_USAGE, CertSpec, issue

__all__ = ["NAME_SUFFIX", "EmulatorPki", "SigningIdentity", "default_state_dir"]

#: Every emulator subject ends with this: plainly not an AWS name.
NAME_SUFFIX: Final = "nitroguard-emu.not-aws"
_ORG: Final = "nitroguard emulator (NOT AWS)"
_UNIT: Final = "software NSM emulator - not an AWS Nitro Enclaves certificate"
_REGION: Final = "emulator"

ROOT_LIFETIME: Final = dt.timedelta(days=30 * 365 + 7)  # 30 years, like Root-G1
REGIONAL_LIFETIME: Final = dt.timedelta(hours=481)
ZONAL_LIFETIME: Final = dt.timedelta(hours=144)
INSTANCE_LIFETIME: Final = dt.timedelta(hours=24)
LEAF_LIFETIME: Final = dt.timedelta(hours=3)
#: A leaf is replaced when less than this remains, so a fresh document stays
#: verifiable for at least this long (real documents are 0.7 s - 2.3 h into their leaf).
LEAF_MIN_REMAINING: Final = dt.timedelta(minutes=30)
#: Certificates are backdated slightly to tolerate verifier clock skew.
_BACKDATE: Final = dt.timedelta(minutes=1)
_ROOT_BACKDATE: Final = dt.timedelta(hours=1)

_ROOT_CERT_FILE: Final = "root.pem"
_ROOT_KEY_FILE: Final = "root.key"
_LOCK_FILE: Final = ".lock"


def default_state_dir(env: dict[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/nitroguard/emulator`` (``~/.local/state/...`` when unset)."""
    environ = os.environ if env is None else env
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "nitroguard" / "emulator"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class _Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    der: bytes
    # Copied out once: cryptography re-parses the validity on every property access,
    # and these are compared on every attestation.
    not_before: dt.datetime
    not_after: dt.datetime

    @classmethod
    def of(cls, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> _Issued:
        return cls(
            key,
            cert,
            cert.public_bytes(serialization.Encoding.DER),
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class SigningIdentity:
    """What an attestation document is signed with.

    Attributes:
        key: the leaf's private key (P-384).
        certificate: the leaf certificate, DER (the document's ``certificate``).
        cabundle: DER CA certificates root first (the document's ``cabundle``).
        encoded_chain: the CBOR of the payload entries ``"certificate": ...,
            "cabundle": [...]``, encoded once per identity (they are most of the
            payload and change only when a certificate rotates).
    """

    key: ec.EllipticCurvePrivateKey
    certificate: bytes
    cabundle: tuple[bytes, ...]
    encoded_chain: bytes = b""

    @classmethod
    def build(
        cls, key: ec.EllipticCurvePrivateKey, certificate: bytes, cabundle: tuple[bytes, ...]
    ) -> SigningIdentity:
        """An identity with its `encoded_chain` computed."""
        chain = (
            cbor.dumps("certificate")
            + cbor.dumps(certificate)
            + cbor.dumps("cabundle")
            + cbor.dumps(list(cabundle))
        )
        return cls(key, certificate, cabundle, chain)


_INSTANCE_USAGE: Final = frozenset({"key_cert_sign"})
_LEAF_USAGE: Final = frozenset({"digital_signature", "content_commitment"})  # nonRepudiation
#: The emulator's subject attributes before the CN: plainly not AWS.
_NAME_PREFIX: Final = (
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _UNIT),
)


def _issue(
    *,
    subject: str,
    parent: _Issued | None,
    now: dt.datetime,
    lifetime: dt.timedelta,
    backdate: dt.timedelta,
    path_length: int | None,
    ca: bool,
    usage: frozenset[str],
    usage_critical: bool,
) -> _Issued:
    # The whole validity is `lifetime` (3 h for a leaf, as on AWS), backdating included.
    not_before = now - backdate
    not_after = not_before + lifetime
    if parent is not None:
        # A child never outlives its issuer (the rotation thresholds keep this rare).
        not_before = max(not_before, parent.not_before)
        not_after = min(not_after, parent.not_after)
    spec = CertSpec(
        subject,
        not_before,
        not_after,
        ca=ca,
        path_length=path_length,
        key_usage=usage,
        key_usage_critical=usage_critical,
        name_prefix=_NAME_PREFIX,
        subject_key_identifier=True,
    )
    issued = issue(spec, parent)
    return _Issued.of(issued.key, issued.cert)


def _label() -> str:
    return secrets.token_hex(8)


class EmulatorPki:
    """The emulator's CA hierarchy (root, regional, zonal, instance, rotating leaf).

    Thread-safe. Only the root is persisted; the rest is re-issued as needed.

    Args:
        state_dir: where the root key and certificate live; created (mode 0700) if
            missing. Defaults to `default_state_dir()`. Use `ephemeral()` for tests.
        clock: the time used when a new root is created (defaults to now, UTC).

    Raises:
        ConfigError: the state directory holds an unreadable, mismatched or
            group/world-readable root key.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        _ephemeral: bool = False,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock or _utcnow
        self.state_dir: Path | None = None
        if _ephemeral:
            self._root = self._new_root(self._clock())
        else:
            self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
            self._root = self._load_or_create_root()
        self._regional: _Issued | None = None
        self._zonal: _Issued | None = None
        self._instances: dict[str, _Issued] = {}
        self._leaves: dict[str, _Issued] = {}
        # module_id -> (identity, generation, usable from, usable until)
        self._identities: dict[str, tuple[SigningIdentity, int, dt.datetime, dt.datetime]] = {}
        self._generation = 0  # bumped whenever anything is issued

    @classmethod
    def ephemeral(cls, *, clock: Callable[[], dt.datetime] | None = None) -> EmulatorPki:
        """An in-memory PKI with a fresh root, for tests (nothing touches the disk)."""
        return cls(clock=clock, _ephemeral=True)

    # ------------------------------------------------------------------ the root

    @property
    def root_certificate(self) -> x509.Certificate:
        """The emulator root, to pass explicitly to a verifier."""
        return self._root.cert

    @property
    def root_der(self) -> bytes:
        """The root certificate, DER."""
        return self._root.der

    @property
    def root_pem(self) -> bytes:
        """The root certificate, PEM (what ``nitroguard nsm pki --export-root`` writes)."""
        return self._root.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def root_fingerprint(self) -> str:
        """SHA-256 of the root's DER, lowercase hex (the value to pin)."""
        return hashlib.sha256(self._root.der).hexdigest()

    @staticmethod
    def _new_root(now: dt.datetime) -> _Issued:
        return _issue(
            subject="nitroguard emulator root - NOT AWS",
            parent=None,
            now=now,
            lifetime=ROOT_LIFETIME,
            backdate=_ROOT_BACKDATE,
            path_length=None,
            ca=True,
            usage=CA_USAGE,
            usage_critical=True,
        )

    @contextlib.contextmanager
    def _dir_lock(self, state_dir: Path) -> Iterator[None]:
        # Two `nsm serve` processes starting at once must agree on one root.
        fd = os.open(state_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _load_or_create_root(self) -> _Issued:
        assert self.state_dir is not None  # noqa: S101 - set by the caller
        state_dir = self.state_dir
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create emulator state dir {state_dir}: {exc}") from exc
        with self._dir_lock(state_dir):
            cert_path = state_dir / _ROOT_CERT_FILE
            key_path = state_dir / _ROOT_KEY_FILE
            if cert_path.exists() or key_path.exists():
                return self._load_root(cert_path, key_path)
            root = self._new_root(self._clock())
            key_pem = root.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_atomic(key_path, key_pem, mode=0o600)
            write_atomic(cert_path, root.cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
            return root

    @staticmethod
    def _load_root(cert_path: Path, key_path: Path) -> _Issued:
        try:
            mode = key_path.stat().st_mode
            if mode & 0o077:
                raise ConfigError(
                    f"{key_path} is accessible by group or others (mode {mode & 0o777:o}); "
                    "fix with chmod 600"
                )
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"unreadable emulator root in {cert_path.parent}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
            key.curve, ec.SECP384R1
        ):
            raise ConfigError(f"{key_path} is not a P-384 private key")
        if key.public_key() != cert.public_key():
            raise ConfigError(f"{key_path} does not match {cert_path}")
        return _Issued.of(key, cert)

    # --------------------------------------------------------------- issuance

    def signing_identity(self, now: dt.datetime, module_id: str) -> SigningIdentity:
        """The leaf key and chain to sign a document for `module_id` at time `now`.

        Every CA is (re)issued when missing, not yet valid at `now`, or too close to
        expiry to cover a full child; the leaf is replaced when under 30 minutes remain.

        Raises:
            NsmError: `internal_error` when `now` is outside the root's validity.
        """
        if not self._root.not_before <= now < self._root.not_after:
            raise NsmError(
                f"emulator clock {now.isoformat()} is outside the emulator root's validity "
                f"({self._root.not_before.isoformat()} to {self._root.not_after.isoformat()})",
                Reason.INTERNAL_ERROR,
            )
        instance_id = module_id.split("-enc", 1)[0]
        with self._lock:
            cached = self._identities.get(module_id)
            # Fast path: nothing was issued since, and `now` is inside the window in
            # which every level stays as it is.
            if (
                cached is not None
                and cached[1] == self._generation
                and cached[2] <= now <= cached[3]
            ):
                return cached[0]
            self._regional = self._fresh(
                self._regional, now, ZONAL_LIFETIME, lambda: self._issue_regional(now)
            )
            self._zonal = self._fresh(
                self._zonal, now, INSTANCE_LIFETIME, lambda: self._issue_zonal(now)
            )
            instance = self._fresh(
                self._instances.get(instance_id),
                now,
                LEAF_LIFETIME,
                lambda: self._issue_instance(now, instance_id),
            )
            self._instances[instance_id] = instance
            leaf = self._fresh(
                self._leaves.get(module_id),
                now,
                LEAF_MIN_REMAINING,
                lambda: self._issue_leaf(now, module_id, instance),
            )
            self._leaves[module_id] = leaf
            bundle = (self._root.der, self._regional.der, self._zonal.der, instance.der)
            if (
                cached is not None
                and cached[0].certificate is leaf.der
                and all(a is b for a, b in zip(cached[0].cabundle, bundle, strict=True))
            ):
                identity = cached[0]
            else:
                identity = SigningIdentity.build(leaf.key, leaf.der, bundle)
            levels = (self._regional, self._zonal, instance, leaf)
            valid_from = max(level.not_before for level in levels)
            valid_until = min(
                self._root.not_after,
                self._regional.not_after - ZONAL_LIFETIME,
                self._zonal.not_after - INSTANCE_LIFETIME,
                instance.not_after - LEAF_LIFETIME,
                leaf.not_after - LEAF_MIN_REMAINING,
            )
            self._identities[module_id] = (identity, self._generation, valid_from, valid_until)
        return identity

    def _fresh(
        self,
        current: _Issued | None,
        now: dt.datetime,
        min_remaining: dt.timedelta,
        issue: Callable[[], _Issued],
    ) -> _Issued:
        if (
            current is not None
            and current.not_before <= now
            and current.not_after - now >= min_remaining
        ):
            return current
        self._generation += 1
        return issue()

    def _issue_regional(self, now: dt.datetime) -> _Issued:
        # Rotating a CA invalidates everything below it.
        self._zonal = None
        self._instances.clear()
        self._leaves.clear()
        return _issue(
            subject=f"{_label()}.{_REGION}.{NAME_SUFFIX}",
            parent=self._root,
            now=now,
            lifetime=REGIONAL_LIFETIME,
            backdate=_BACKDATE,
            path_length=2,
            ca=True,
            usage=CA_USAGE,
            usage_critical=True,
        )

    def _issue_zonal(self, now: dt.datetime) -> _Issued:
        assert self._regional is not None  # noqa: S101 - issued just before
        self._instances.clear()
        self._leaves.clear()
        return _issue(
            subject=f"{_label()}.zonal.{_REGION}.{NAME_SUFFIX}",
            parent=self._regional,
            now=now,
            lifetime=ZONAL_LIFETIME,
            backdate=_BACKDATE,
            path_length=1,
            ca=True,
            usage=CA_USAGE,
            usage_critical=True,
        )

    def _issue_instance(self, now: dt.datetime, instance_id: str) -> _Issued:
        assert self._zonal is not None  # noqa: S101 - issued just before
        for module_id in [m for m in self._leaves if m.split("-enc", 1)[0] == instance_id]:
            del self._leaves[module_id]
        return _issue(
            subject=f"{instance_id}.{_REGION}.{NAME_SUFFIX}",
            parent=self._zonal,
            now=now,
            lifetime=INSTANCE_LIFETIME,
            backdate=_BACKDATE,
            path_length=0,
            ca=True,
            usage=_INSTANCE_USAGE,
            usage_critical=True,
        )

    @staticmethod
    def _issue_leaf(now: dt.datetime, module_id: str, instance: _Issued) -> _Issued:
        return _issue(
            subject=f"{module_id}.{NAME_SUFFIX}",
            parent=instance,
            now=now,
            lifetime=LEAF_LIFETIME,
            backdate=_BACKDATE,
            path_length=None,
            ca=False,
            usage=_LEAF_USAGE,
            usage_critical=False,
        )
