"""Shared helpers for the channel tests: drive two sans-IO connections in memory."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable

from nitroguard.channel import ClientConnection, ServerConnection, ServerIdentity
from nitroguard.channel.events import Event


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


# --- interim attestation stand-in -------------------------------------------------------
# NOTE: replaced by the real EmulatedNsm + attestation.Verifier as soon as both are on
# main (tests must use real things). Until then: real COSE_Sign1 signatures over a CBOR
# payload with the fields the channel reads, so any tampering with the document fails.


@dataclasses.dataclass(frozen=True)
class StandInDocument:
    """The fields of a verified document the channel needs."""

    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None


class StandInAttestation:
    """A signing 'NSM' and its matching verifier."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self._key = ec.generate_private_key(ec.SECP384R1())

    def attest(
        self,
        *,
        user_data: bytes | None = None,
        nonce: bytes | None = None,
        public_key: bytes | None = None,
    ) -> bytes:
        from nitroguard.hazmat import cbor, cose

        payload = cbor.dumps({"public_key": public_key, "user_data": user_data, "nonce": nonce})
        return cose.sign(self._key, payload, tagged=False)

    def verify(self, document: bytes) -> StandInDocument:
        from nitroguard.errors import VerificationError
        from nitroguard.hazmat import cbor, cose

        msg = cose.decode_sign1(document, max_size=16384)
        alg, _ = cose.protected_algorithm(msg.protected)
        cose.verify_signature(
            self._key.public_key(), alg, msg.protected, msg.payload, msg.signature
        )
        fields = cbor.loads(msg.payload, max_size=16384)
        if not isinstance(fields, dict):
            raise VerificationError("payload is not a map")
        return StandInDocument(fields["public_key"], fields["user_data"], fields["nonce"])
