"""nitroguard: make AWS Nitro Enclave applications hard to attack, and check that they are.

Entry points:

- `nitroguard.attestation`: strict attestation-document verification with policies.
- `nitroguard.nsm`: the NSM interface, the `/dev/nsm` client and the software emulator.
- `nitroguard.framing` / `nitroguard.transport`: sans-IO framing and hardened servers.
- `nitroguard.channel`: the attested encrypted channel.
- `nitroguard.audit`: the in-enclave environment audit.
- `nitroguard.probe`: the adversarial-parent probe.
- `nitroguard.eif`: EIF parsing, measurement and building.
- `nitroguard.hazmat`: raw CBOR/COSE. Hazardous: prefer the recipes above.
- `nitroguard.errors`: the single exception tree; every error has a `reason`.
"""

__version__ = "0.1.0"
