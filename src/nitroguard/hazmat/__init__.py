"""Hazardous materials: raw, strict CBOR and COSE_Sign1, and a certificate issuer.

Nothing here decides trust. Use `nitroguard.attestation` to verify documents; use
these modules only to build tools, emulators and tests. The modules are public
namespaces (``from nitroguard.hazmat import cbor`` then ``cbor.loads(...)``).
"""

from nitroguard.hazmat import cbor, certs, cose

__all__ = ["cbor", "certs", "cose"]
