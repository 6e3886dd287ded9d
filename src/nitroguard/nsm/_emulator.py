"""`EmulatedNsm`: a software NSM with the real device's semantics.

Behaviour follows ``../shared/spec/nsm-protocol.md`` (section 5.3 is the checklist):

- 32 SHA-384 PCRs; 0-15 hold the boot measurements and are locked at start; 16-31
  start as zeros and unlocked. Extend is ``SHA-384(old || data)``. Extending or locking
  a locked PCR answers ``ReadOnlyIndex``; an index of 32 or more ``InvalidIndex``;
  ``LockPCRs(range)`` locks ``[0, range)`` and may be repeated; range > 32 is
  ``InvalidIndex``. Locks are permanent.
- Requests are parsed like serde_cbor parses nsm-api's `Request` (see
  `codec.parse_request`): anything malformed answers ``InvalidOperation``, over 4096
  bytes ``InputTooLarge``.
- DescribeNSM: version 1.0.0, ``module_id`` shaped ``i-<17 hex>-enc<16 hex>`` (the
  first 12 hex digits after ``enc`` are the launch time in ms, as on AWS), 32 PCRs,
  the locked PCRs ascending, digest ``SHA384``.
- GetRandom: 256 bytes.
- Attestation: an untagged COSE_Sign1, protected header ``{1: -35}`` (ES384), 96-byte
  signature, payload an indefinite-length map (AWS's encoding since 2025) of the nine
  keys in NSM order; ``pcrs`` holds every locked PCR; absent inputs are null, empty
  ones empty byte strings. Signed by `EmulatorPki`, whose names say it is not AWS.
- Debug mode reports PCR0, PCR1, PCR2 and PCR8 as zeros, as real debug enclaves do.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from nitroguard.errors import ConfigError, Error
from nitroguard.hazmat import cbor, cose
from nitroguard.nsm import codec
from nitroguard.nsm._codec import ErrorCode, NsmDescription, PcrDescription
from nitroguard.nsm._interface import Nsm
from nitroguard.nsm._pki import EmulatorPki

__all__ = ["BOOT_LOCKED", "DEBUG_ZERO_PCRS", "DEFAULT_IMAGE_PCRS", "EmulatedNsm", "extend"]

#: PCRs 0-15 are measured and locked at boot.
BOOT_LOCKED: Final = 16
#: PCRs a debug-mode enclave reports as zeros (spec attestation.md 1.4).
DEBUG_ZERO_PCRS: Final = (0, 1, 2, 8)
_ZERO: Final = bytes(codec.PCR_SIZE)


def extend(old: bytes, data: bytes) -> bytes:
    """The NSM's PCR extend: ``SHA-384(old || data)``."""
    return hashlib.sha384(old + data).digest()


#: PCR0/1/2 when no image measurement is given. A production enclave never has zero
#: image PCRs (zeros mean debug mode to every verifier), so these are non-zero and
#: plainly not any real image: ``extend(0, SHA-384("nitroguard emulator: no image, PCRn"))``,
#: built like nitro-cli's ``extend(0, SHA-384(sections))``.
DEFAULT_IMAGE_PCRS: Final[Mapping[int, bytes]] = {
    i: extend(_ZERO, hashlib.sha384(f"nitroguard emulator: no image, PCR{i}".encode()).digest())
    for i in (0, 1, 2)
}
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_PCRS_KEY: Final = cbor.dumps("pcrs")
_PUBLIC_KEY_KEY: Final = cbor.dumps("public_key")
_USER_DATA_KEY: Final = cbor.dumps("user_data")
_NONCE_KEY: Final = cbor.dumps("nonce")
_INSTANCE_ID: Final = re.compile(r"i-[0-9a-f]{1,17}")


def _as_bytes(value: object) -> bytes | None:
    # Callers may pass anything through untyped code (CLI, config files).
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else None


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class EmulatedNsm(Nsm):
    """An in-process software NSM.

    Use it through the `Nsm` methods, or feed raw request bytes to `process` (what a
    fake ``/dev/nsm`` or ``nitroguard nsm serve`` does). Thread-safe.

    Args:
        pki: the CA that signs documents. Defaults to the persistent `EmulatorPki()`
            in ``$XDG_STATE_HOME/nitroguard/emulator``; tests use
            `EmulatorPki.ephemeral()` (or `nitroguard.testing.ephemeral_nsm`).
        debug_mode: report PCR0/1/2/8 as zeros, like an enclave started with
            ``--debug-mode``.
        pcrs: boot measurements for PCRs 0-15 (48 bytes each), e.g. PCR0/1/2 from
            ``nitro-cli build-enclave`` or an EIF. Unspecified boot PCRs are zeros,
            except PCR0/1/2 (`DEFAULT_IMAGE_PCRS`: non-zero, since zeros mean debug
            mode), PCR3 (from `parent_role`) and PCR4 (from `instance_id`).
        clock: the time source for timestamps and certificates (aware datetimes).
        rng: the source of GetRandom bytes and of generated identifiers.
        instance_id: the parent instance id (``i-`` + 17 hex); random by default.
        parent_role: the parent's IAM role ARN; PCR3 is extended with it (as QEMU's
            nitro-enclave machine does), zeros when absent.

    Raises:
        ConfigError: a PCR index outside 0-15 or a value that is not 48 bytes.
    """

    def __init__(
        self,
        pki: EmulatorPki | None = None,
        *,
        debug_mode: bool = False,
        pcrs: Mapping[int, bytes] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        rng: Callable[[int], bytes] | None = None,
        instance_id: str | None = None,
        parent_role: str | None = None,
    ) -> None:
        self._clock = clock or _utcnow
        self._rng = rng or os.urandom
        self.pki = pki if pki is not None else EmulatorPki(clock=self._clock)
        self.debug_mode = debug_mode
        self._lock = threading.Lock()
        if instance_id is None:
            instance_id = "i-" + self._rng(9).hex()[:17]
        elif not _INSTANCE_ID.fullmatch(instance_id):
            raise ConfigError(f"instance id must look like i-<1 to 17 hex>, got {instance_id!r}")
        launch_ms = self._now_ms() & 0xFFFF_FFFF_FFFF
        self.module_id = f"{instance_id}-enc{launch_ms:012x}{self._rng(2).hex()}"
        self._pcrs = [_ZERO] * codec.MAX_PCRS
        for index, default in DEFAULT_IMAGE_PCRS.items():
            self._pcrs[index] = default
        self._pcrs[4] = extend(_ZERO, instance_id.encode())
        if parent_role is not None:
            self._pcrs[3] = extend(_ZERO, parent_role.encode())
        for index, given in (pcrs or {}).items():
            if type(index) is not int or not 0 <= index < BOOT_LOCKED:
                raise ConfigError(f"boot PCR index must be 0-15, got {index!r}")
            value = _as_bytes(given)
            if value is None or len(value) != codec.PCR_SIZE:
                raise ConfigError(f"PCR{index} must be {codec.PCR_SIZE} bytes")
            self._pcrs[index] = value
        if debug_mode:
            for index in DEBUG_ZERO_PCRS:
                self._pcrs[index] = _ZERO
        self._locked = set(range(BOOT_LOCKED))
        self._pcrs_cbor: tuple[int, bytes] = (-1, b"")  # (len(locked) when encoded, CBOR)
        self._payload_prefix = b"".join(
            cbor.dumps(x) for x in ("module_id", self.module_id, "digest", "SHA384", "timestamp")
        )

    def _now_ms(self) -> int:
        now = self._clock()
        return (now - _EPOCH) // dt.timedelta(milliseconds=1)

    # ------------------------------------------------------------ device side

    def _transact(self, request: bytes) -> bytes:
        return self.process(request)

    def process(self, request: bytes) -> bytes:
        """Answer one raw request as the device would: CBOR in, CBOR out.

        Never raises for bad input: a malformed request gets ``{"Error": ...}``.
        """
        parsed = codec.parse_request(bytes(request))
        if isinstance(parsed, ErrorCode):
            return codec.encode_error(parsed)
        try:
            response = self._handle(parsed)
        except Error:
            # E.g. the clock is outside the emulator root's validity: the device has
            # no better answer than an internal error.
            response = ErrorCode.INTERNAL_ERROR
        return codec.encode_response(response)

    def _handle(self, request: codec.Request) -> codec.Response:
        if isinstance(request, codec.GetRandom):
            return codec.GetRandomResponse(self._rng(codec.RANDOM_SIZE))
        if isinstance(request, codec.Attestation):
            with self._lock:
                # Only locked PCRs are reported and they can no longer change, so the
                # encoded map changes only when the (growing) locked set grows.
                if self._pcrs_cbor[0] != len(self._locked):
                    locked = {i: self._pcrs[i] for i in sorted(self._locked)}
                    self._pcrs_cbor = (len(self._locked), cbor.dumps(locked))
                pcrs = self._pcrs_cbor[1]
            # Sign outside the lock: the PCR state is already captured.
            return codec.AttestationResponse(self._document(request, pcrs))
        with self._lock:
            if isinstance(request, codec.DescribeNsm):
                return NsmDescription(
                    (1, 0, 0), self.module_id, codec.MAX_PCRS, tuple(sorted(self._locked)), "SHA384"
                )
            if isinstance(request, codec.LockPcrs):
                if request.range > codec.MAX_PCRS:
                    return ErrorCode.INVALID_INDEX
                self._locked.update(range(request.range))
                return codec.UnitResponse("LockPCRs")
            index = request.index
            if index >= codec.MAX_PCRS:
                return ErrorCode.INVALID_INDEX
            if isinstance(request, codec.DescribePcr):
                return PcrDescription(index in self._locked, self._pcrs[index])
            if index in self._locked:
                return ErrorCode.READ_ONLY_INDEX
            if isinstance(request, codec.LockPcr):
                self._locked.add(index)
                return codec.UnitResponse("LockPCR")
            self._pcrs[index] = extend(self._pcrs[index], request.data)
            return codec.ExtendPcrResponse(self._pcrs[index])

    def _document(self, request: codec.Attestation, pcrs: bytes) -> bytes:
        now = self._clock()
        identity = self.pki.signing_identity(now, self.module_id)
        # The nine keys in NSM order, as an indefinite-length map. The bytes equal
        # `cbor.dumps_indefinite_map(items)` (a test pins that); the certificate
        # entries are encoded once per identity, which keeps the emulator close to
        # the cost of the ES384 signature itself (bench/nsm.py).
        payload = b"".join(
            (
                b"\xbf",
                self._payload_prefix,
                cbor.dumps((now - _EPOCH) // dt.timedelta(milliseconds=1)),
                _PCRS_KEY,
                pcrs,
                identity.encoded_chain,
                _PUBLIC_KEY_KEY,
                cbor.dumps(request.public_key),
                _USER_DATA_KEY,
                cbor.dumps(request.user_data),
                _NONCE_KEY,
                cbor.dumps(request.nonce),
                b"\xff",
            )
        )
        return _sign1_es384(identity.key, payload)


_ECDSA_SHA384: Final = ec.ECDSA(hashes.SHA384())
#: ``["Signature1", h'a1013822', h'', `` -- the Sig_structure up to the payload.
_SIG1_HEAD: Final = b"\x84" + cbor.dumps("Signature1") + cbor.dumps(cose.ES384_PROTECTED) + b"\x40"
#: ``[h'a1013822', {}, `` -- the COSE_Sign1 array up to the payload.
_COSE_HEAD: Final = b"\x84" + cbor.dumps(cose.ES384_PROTECTED) + b"\xa0"


def _sign1_es384(key: ec.EllipticCurvePrivateKey, payload: bytes) -> bytes:
    """An untagged ES384 COSE_Sign1, exactly as `cose.sign(..., protected=ES384_PROTECTED)`.

    Inlined because the emulator's throughput is measured against the bare signature
    (bench/nsm.py); a test pins the bytes against the generic encoder.
    """
    head = codec.bstr_header(len(payload))
    r, s = decode_dss_signature(key.sign(_SIG1_HEAD + head + payload, _ECDSA_SHA384))
    return b"".join(
        (_COSE_HEAD, head, payload, b"\x58\x60", r.to_bytes(48, "big"), s.to_bytes(48, "big"))
    )
