"""Shared helpers for the channel tests: drive two sans-IO connections in memory."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import random
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from nitroguard.channel import ClientConnection, ServerConnection, ServerIdentity
from nitroguard.channel._events import Event

if TYPE_CHECKING:
    from nitroguard.channel._verify import DocumentCheck
    from nitroguard.nsm import EmulatedNsm


def seeded_rng(seed: int) -> Callable[[int], bytes]:
    """A deterministic rng for reproducible handshakes (tests only)."""
    gen = random.Random(seed)
    return gen.randbytes


def pump(
    src: ClientConnection | ServerConnection,
    dst: ClientConnection | ServerConnection,
    tamper: Callable[[bytes], bytes] | None = None,
) -> list[Event]:
    """Move every queued message from src to dst, returning dst's events."""
    events: list[Event] = []
    for frame in src.data_to_send():
        events.extend(dst.receive_frame(tamper(frame) if tamper else frame))
    return events


def handshake(client: ClientConnection, server: ServerConnection) -> None:
    """Run a complete handshake in memory."""
    client.start()
    pump(client, server)
    pump(server, client)
    pump(client, server)


@dataclasses.dataclass
class Transcript:
    """The three handshake messages of one run."""

    client_hello: bytes
    server_hello: bytes
    client_finished: bytes


def record_handshake(client: ClientConnection, server: ServerConnection) -> Transcript:
    """Run a handshake and keep the exact messages."""
    client.start()
    (ch,) = client.data_to_send()
    server.receive_frame(ch)
    (sh,) = server.data_to_send()
    client.receive_frame(sh)
    (cf,) = client.data_to_send()
    server.receive_frame(cf)
    return Transcript(ch, sh, cf)


def fingerprint(identity: ServerIdentity) -> str:
    """Short id of an identity key, for messages."""
    return hashlib.sha256(identity.public_key).hexdigest()[:12]


# --- the real emulator and verifier -------------------------------------------------------

#: Boot measurements of the "good" test enclave image.
GOOD_PCRS = {0: b"\x11" * 48, 1: b"\x22" * 48, 2: b"\x33" * 48}
#: Another image (a different enclave the parent could redirect to).
OTHER_PCRS = {0: b"\x44" * 48, 1: b"\x22" * 48, 2: b"\x33" * 48}


def emulated(pcrs: dict[int, bytes] | None = None, **kw: object) -> EmulatedNsm:
    """An EmulatedNsm with an ephemeral PKI and the good PCRs by default."""
    from nitroguard.testing import ephemeral_nsm

    return ephemeral_nsm(pcrs=GOOD_PCRS if pcrs is None else pcrs, **kw)


def check_for(
    nsm: EmulatedNsm, pcrs: dict[int, bytes] | None = None, **kw: object
) -> DocumentCheck:
    """The relying party's check: the emulator root and the expected (good) PCRs."""
    from nitroguard.attestation import policy
    from nitroguard.channel._verify import DocumentCheck

    expected = policy.PCRs(GOOD_PCRS if pcrs is None else pcrs)
    return DocumentCheck(expected, roots=[nsm.pki.root_certificate], **kw)  # type: ignore[arg-type]


def aio(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test function in a fresh event loop (no pytest plugin needed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), timeout=60))

    return wrapper
