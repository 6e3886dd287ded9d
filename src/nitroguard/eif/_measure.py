"""PCR0/1/2/8 of an EIF, streamed (``../shared/spec/eif.md`` section 3).

Every PCR is ``SHA384(48 zero bytes || SHA384(content))``: one extend of a zeroed
register over one plain SHA-384 of the joined section data (spec 3.1). It is not an
extend per section.

`_Measurer` is fed section data chunk by chunk, in the order the hypervisor reads the
sections (the header table). It never hashes the same bytes twice into the same
digest: PCR0 and PCR1 share the prefix kernel + cmdline + first ramdisk, so one
SHA-384 state serves both until the first byte that only PCR0 measures arrives, and
is then forked with ``.copy()``. Bytes measured by both PCR0 and PCR2 (ramdisks after
the first) must go into two different states; the second one is updated on a worker
thread (hashlib and zlib release the GIL on large buffers), so the wall time stays
close to one SHA-384 pass.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import zlib
from typing import TYPE_CHECKING, Any

from ._format import crc32_shift, crc32_shift_operator

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["PCR_SIZE", "RING", "ZERO_PCR", "Measurements", "extend_from_zero", "pcr_of_bytes"]

PCR_SIZE = 48
ZERO_PCR = bytes(PCR_SIZE)
#: Below this, handing a chunk to the worker thread costs more than it saves.
_PARALLEL_MIN = 256 * 1024
#: Read buffers the reader rotates through; the main thread may run RING - 1 chunks
#: ahead of the worker.
RING = 4


def extend_from_zero(inner_digest: bytes) -> bytes:
    """``SHA384(48 zero bytes || inner_digest)``: one TPM-style extend of a zero register."""
    return hashlib.sha384(ZERO_PCR + inner_digest).digest()


def pcr_of_bytes(content: bytes) -> bytes:
    """The PCR value for `content` measured on its own (e.g. PCR8 from a certificate DER)."""
    return extend_from_zero(hashlib.sha384(content).digest())


@dataclasses.dataclass(frozen=True, slots=True)
class Measurements:
    """The image's PCRs as the hypervisor computes them.

    Attributes:
        pcr0: kernel, cmdline and every ramdisk.
        pcr1: kernel, cmdline and the first ramdisk.
        pcr2: the ramdisks after the first (the empty-input value with one ramdisk).
        pcr8: the signing certificate (DER), or None when the image is unsigned.
    """

    pcr0: bytes
    pcr1: bytes
    pcr2: bytes
    pcr8: bytes | None = None

    def as_hex(self) -> dict[str, str]:
        """``{"PCR0": hex, ...}`` in nitro-cli's field names; PCR8 only when signed."""
        out = {"PCR0": self.pcr0.hex(), "PCR1": self.pcr1.hex(), "PCR2": self.pcr2.hex()}
        if self.pcr8 is not None:
            out["PCR8"] = self.pcr8.hex()
        return out

    def to_dict(self) -> dict[str, Any]:
        """nitro-cli's ``Measurements`` object (``HashAlgorithm`` is cosmetic, spec 2.8)."""
        return {"HashAlgorithm": "Sha384 { ... }", **self.as_hex()}


class _Measurer:
    """Accumulates the CRC and the PCR0/1/2 content hashes over streamed chunks.

    Roles per chunk: ``"shared"`` (kernel, cmdline, first ramdisk: PCR0 and PCR1),
    ``"later"`` (ramdisks after the first: PCR0 and PCR2) and ``"crc"`` (bytes that
    are checksummed only: headers, metadata, signature).
    """

    def __init__(self, crc: int = 0, chunk_size: int = 0) -> None:
        self._crc = crc
        self._h0: _Hash = hashlib.sha384()
        # None while PCR1's content is still a prefix of PCR0's (they share `_h0`).
        self._h1: _Hash | None = None
        self._h2: _Hash = hashlib.sha384()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        # Work handed to the worker thread, oldest first. The worker is a single FIFO
        # thread, so its hash updates happen in order; the main thread runs ahead by
        # at most RING - 1 chunks (the reader rotates RING buffers, so a buffer is
        # never refilled while the worker still reads it). Running ahead instead of
        # joining on every chunk keeps both threads busy on a loaded machine.
        self._inflight: collections.deque[concurrent.futures.Future[Any]] = collections.deque()
        # Full-size chunks have their CRC split in two halves, one per thread, joined
        # with a precomputed shift operator (zlib's crc32_combine, kept as a matrix).
        # (crc of the head half, future crc of the tail half), in stream order.
        self._pending: collections.deque[tuple[int, concurrent.futures.Future[int]]] = (
            collections.deque()
        )
        self._split = chunk_size // 2 if chunk_size >= 2 * _PARALLEL_MIN else 0
        self._shift: list[int] | None = None

    @property
    def crc(self) -> int:
        """The CRC-32 of everything fed so far (waits for the worker's share)."""
        self._fold(block=True)
        return self._crc

    def _workers(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="nitroguard-eif"
            )
        return self._pool

    def _track(self, future: concurrent.futures.Future[Any]) -> None:
        self._inflight.append(future)
        while len(self._inflight) > RING - 1:
            self._inflight.popleft().result()
        while self._inflight and self._inflight[0].done():
            self._inflight.popleft().result()

    def _fold(self, *, block: bool) -> None:
        """Fold finished split-CRC halves into the running CRC, in stream order."""
        while self._pending and (block or self._pending[0][1].done()):
            head, tail = self._pending.popleft()
            if self._shift is None:
                self._shift = crc32_shift_operator(self._split)
            self._crc = crc32_shift(
                self._shift, crc32_shift(self._shift, self._crc, head), tail.result()
            )

    def crc_only(self, data: bytes | memoryview) -> None:
        self._fold(block=True)
        self._crc = zlib.crc32(data, self._crc)

    def shared(self, data: bytes | memoryview) -> None:
        """Bytes measured by PCR0 and PCR1."""
        if self._h1 is None:
            # Still a common prefix: one state serves both PCRs.
            self._fold(block=True)
            if len(data) < _PARALLEL_MIN:
                self._h0.update(data)
                self._crc = zlib.crc32(data, self._crc)
                return
            future = self._workers().submit(zlib.crc32, data, self._crc)
            self._h0.update(data)
            self._crc = future.result()
            return
        # Unusual order (kernel or cmdline after a later ramdisk): two states needed.
        self._parallel(data, self._h0, self._h1)

    def later(self, data: bytes | memoryview) -> None:
        """Bytes measured by PCR0 and PCR2 (ramdisks after the first)."""
        if self._h1 is None:
            # Fork here: everything before this byte was common to PCR0 and PCR1.
            self._h1 = self._h0.copy()
        self._parallel(data, self._h0, self._h2)

    @staticmethod
    def _update_and_crc(h: _Hash, data: bytes | memoryview, tail: memoryview) -> int:
        h.update(data)
        return zlib.crc32(tail)

    def _parallel(self, data: bytes | memoryview, a: _Hash, b: _Hash) -> None:
        if len(data) < _PARALLEL_MIN:
            self._drain()
            a.update(data)
            b.update(data)
            self._crc = zlib.crc32(data, self._crc)
            return
        pool = self._workers()
        if self._split and len(data) == 2 * self._split:
            view = memoryview(data)
            head, tail = view[: self._split], view[self._split :]
            future = pool.submit(self._update_and_crc, b, data, tail)
            a.update(data)
            self._pending.append((zlib.crc32(head), future))
            self._track(future)
            self._fold(block=False)
            return
        self._fold(block=True)
        waiter = pool.submit(b.update, data)
        a.update(data)
        self._crc = zlib.crc32(data, self._crc)
        self._track(waiter)

    def _drain(self) -> None:
        """Wait for all work handed to the worker (before touching its hash states)."""
        while self._inflight:
            self._inflight.popleft().result()
        self._fold(block=True)

    def close(self) -> None:
        """Finish the worker's share and stop the worker thread, if one was started."""
        try:
            self._drain()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def result(self, pcr8: bytes | None) -> Measurements:
        """Finalize the PCRs (does not disturb the running states)."""
        self._drain()
        h1 = self._h1 if self._h1 is not None else self._h0
        return Measurements(
            pcr0=extend_from_zero(self._h0.digest()),
            pcr1=extend_from_zero(h1.digest()),
            pcr2=extend_from_zero(self._h2.digest()),
            pcr8=pcr8,
        )
