"""The client's attestation check for the channel: verifier + policy + MaxAge + a cache.

`DocumentCheck` is the `verify` callable a `ClientConnection` needs. It always adds
`MaxAge` (ATT-5) to the caller's policy and runs the foundation `Verifier` (steps 1-7).

Document cache: with the signed-transcript design the server sends the same document
to every client until it refreshes it, so the check remembers verified documents by
their exact bytes. On a hit it re-evaluates everything that depends on time or on the
caller (certificate validity at *now*, `NotDebug`, the policy including `MaxAge`) and
skips only what is a pure function of the bytes (parsing, root pin, chain and COSE
signatures), exactly the split the `Verifier`'s own chain cache uses.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

from cryptography import x509

from nitroguard.attestation import VerifiedDocument, Verifier, policy
from nitroguard.attestation.policy import Policy
from nitroguard.channel._handshake import channel_user_data
from nitroguard.errors import ConfigError, Reason, VerificationError

__all__ = ["DEFAULT_MAX_AGE", "DocumentCheck", "pinned_image_pcrs"]

_log = logging.getLogger("nitroguard.channel")

#: Default document age accepted (ATT-5: "e.g. 5 min"); the server refreshes every 60 s.
DEFAULT_MAX_AGE = 300.0
_NOT_DEBUG = policy.NotDebug()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def pinned_image_pcrs(expected: Policy) -> frozenset[int]:
    """The PCRs among 0, 1, 2 that `expected` pins on every accepting path.

    `PCRs` pins its indices; `AllOf` pins the union of its children; `AnyOf` pins
    only what all its alternatives pin (any one of them may be the one that passed).
    """
    image = frozenset({0, 1, 2})
    if isinstance(expected, policy.PCRs):
        return image & frozenset(expected.expected)
    if isinstance(expected, policy.AllOf):
        out: frozenset[int] = frozenset()
        for child in expected.policies:
            out |= pinned_image_pcrs(child)
        return out
    if isinstance(expected, policy.AnyOf):
        sets = [pinned_image_pcrs(child) for child in expected.policies]
        return frozenset.intersection(*sets) if sets else frozenset()
    return frozenset()


class DocumentCheck:
    """Verify server documents for the channel (callable: `check(document_bytes)`).

    Args:
        expected: the caller's policy (pin the PCRs!); `MaxAge(max_age)` is always added.
        roots: trust roots (default: the pinned AWS Nitro Enclaves Root-G1). Pass the
            emulator's root in development.
        verifier: a shared `Verifier` (its chain cache stays warm across checks);
            mutually exclusive with `roots`.
        max_age: seconds a document may be old (and `skew` seconds in the future).
        skew: tolerated clock difference in seconds.
        allow_debug: accept debug-mode enclaves (all-zero PCRs). Development only.
        clock: returns the current aware UTC time (injected for tests).
        cache_size: documents remembered; 0 disables the document cache.
        service: the application name the server's documents must carry in
            `user_data` (service-name binding, `channel_user_data`). Every `EnclaveApp`
            binds its name, so set it to the app you mean to reach; None accepts only
            the bare channel label (a plain `channel.serve` without a service).

    A warning is logged when `expected` pins none of PCR0, PCR1 and PCR2: such a
    policy accepts any image that satisfies it (PCR8 only, or `AnyOf` during a roll-out),
    and only the service name then tells apps apart.

    Raises:
        ConfigError: conflicting or invalid arguments.
    """

    def __init__(
        self,
        expected: Policy,
        *,
        roots: Sequence[x509.Certificate] | None = None,
        verifier: Verifier | None = None,
        max_age: float = DEFAULT_MAX_AGE,
        skew: float = 30.0,
        allow_debug: bool = False,
        clock: Callable[[], dt.datetime] = _utcnow,
        cache_size: int = 16,
        service: str | None = None,
    ) -> None:
        channel_user_data(service)  # validates the name
        if verifier is not None and roots is not None:
            raise ConfigError("pass either roots= or verifier=, not both")
        if cache_size < 0:
            raise ConfigError("cache_size must be >= 0")
        self.verifier = verifier if verifier is not None else Verifier(roots)
        self.policy: Policy = policy.AllOf([expected, policy.MaxAge(max_age, skew=skew)])
        self.allow_debug = allow_debug
        self.service = service
        """The service name the documents must bind (None: the bare label)."""
        self._clock = clock
        if not pinned_image_pcrs(expected):
            _log.warning(
                "client policy pins none of PCR0, PCR1, PCR2: any image it accepts can "
                "answer (policy %r, service %r)",
                expected,
                service,
            )
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, VerifiedDocument] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        """Documents accepted from the cache (for benchmarks and tests)."""

    def now(self) -> dt.datetime:
        """The current time by this check's clock (also used by `AppClient.attest`)."""
        return self._clock()

    def __call__(self, document: bytes) -> VerifiedDocument:
        """Verify `document` now.

        Raises:
            VerificationError: a cryptographic or schema failure (`details["step"]`).
            PolicyError: the policy, `NotDebug` or `MaxAge` rejected it.
        """
        at = self._clock()
        with self._lock:
            cached = self._cache.get(document)
            if cached is not None:
                self._cache.move_to_end(document)
        if cached is None:
            verified = self.verifier.verify(
                document, self.policy, at=at, allow_debug=self.allow_debug
            )
            if self._cache_size:
                with self._lock:
                    self._cache[document] = verified
                    while len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
            return verified
        # Cache hit: re-check everything that depends on time or on the caller.
        for cert in (*cached.cabundle, cached.certificate):
            if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
                with self._lock:
                    self._cache.pop(document, None)
                raise VerificationError(
                    "a certificate of the cached document is not valid now",
                    Reason.EXPIRED_CERTIFICATE,
                    step="chain",
                )
        if not self.allow_debug:
            _NOT_DEBUG.verify(cached, at=at)
        self.policy.verify(cached, at=at)
        self.hits += 1
        return cached
