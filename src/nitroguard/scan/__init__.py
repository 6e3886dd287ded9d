"""Static checks of Python enclave code for checklist items that live in source.

Some checklist items cannot be observed at run time, only read in the code
(``../shared/spec/threat-checklist.md``, the "STA" column). This module walks the
Python AST of an application and reports, as `nitroguard.findings.Finding`:

- **VS-3** -- a ``while`` loop that calls ``recv``/``recv_into`` and never tests the
  result for end of stream: when the peer closes early it spins forever
  (aws-nitro-enclaves-cli PR 609, ``../shared/spec/landscape.md`` section 2).
- **VS-6** -- an ``AF_VSOCK`` socket of type ``SOCK_DGRAM`` (needs review).
- **SC-1** -- ``==``/``!=`` on a value named like a MAC, tag, token, digest, signature,
  secret or password: use `hmac.compare_digest`.
- **RNG-4** -- reads of ``/dev/urandom`` and ``GRND_INSECURE``: keys made before the CRNG
  is seeded are weak; use blocking ``getrandom``/`secrets`.
- **TIME-4** -- code that sets the system clock (``clock_settime``/``settimeofday``):
  never from values relayed by the parent.
- **TIME-5** -- local time and naive datetimes (``localtime``, ``mktime``,
  ``datetime.now()`` without a zone, ``utcnow``, ``fromtimestamp`` without a zone) in
  code that decides expiry or replay.
- **ATT-6** -- ``get_attestation(public_key=..., user_data=...)`` fed from a function
  parameter: the enclave must attest only keys and data it generated itself.

The checks are heuristics over syntax: a finding is a place to look, and silence is
not proof. They never import or run the scanned code.
"""

from nitroguard.scan._rules import RULES
from nitroguard.scan._scan import MAX_FILE_SIZE, scan_paths, scan_source

__all__ = ["MAX_FILE_SIZE", "RULES", "scan_paths", "scan_source"]
