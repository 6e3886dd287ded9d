"""Hazardous materials: raw, strict CBOR and COSE_Sign1.

Nothing here decides trust. Use `nitroguard.attestation` to verify documents; use
these modules only to build tools, emulators and tests.
"""
