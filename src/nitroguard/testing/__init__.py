"""nitroguard.testing: the test kit for code built on nitroguard (never for runtime code).

- `ephemeral_nsm` / `emulator_ioctl`: an emulated NSM with a throwaway PKI, and its
  ioctl for the device client.
- `AwsLikePki` (with `default_specs`, `default_pcrs`, `issue`, `encode_map`): AWS-shaped
  attestation certificate chains and documents, made at test time.
- `FakeKms` / `FakeCredential`: a fake AWS KMS served over real HTTPS, for boto3.
- `HostileRelay`: a frame-aware relay that rewrites, replays or redirects channel frames.
- `random_scenario` / `run_scenario` (`Scenario`, `Outcome`, `open_fds`): random relay
  scenarios for the parent proxy.
"""

from nitroguard.kms._fake import FakeCredential, FakeKms
from nitroguard.testing._nsm import emulator_ioctl, ephemeral_nsm
from nitroguard.testing._pki import (
    ROLES,
    AwsLikePki,
    CertSpec,
    Issued,
    default_pcrs,
    default_specs,
    encode_map,
    issue,
)
from nitroguard.testing._relay import Outcome, Scenario, open_fds, random_scenario, run_scenario
from nitroguard.testing.channel import HostileRelay, Rewrite

__all__ = [
    "ROLES",
    "AwsLikePki",
    "CertSpec",
    "FakeCredential",
    "FakeKms",
    "HostileRelay",
    "Issued",
    "Outcome",
    "Rewrite",
    "Scenario",
    "default_pcrs",
    "default_specs",
    "emulator_ioctl",
    "encode_map",
    "ephemeral_nsm",
    "issue",
    "open_fds",
    "random_scenario",
    "run_scenario",
]
