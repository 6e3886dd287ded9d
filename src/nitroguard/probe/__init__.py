"""The adversarial-parent probe (`nitroguard probe`): does a framed service resist a hostile parent?

Public API::

    from nitroguard.probe import run_probe, ProbeConfig, ProbeReport, AttackResult, ATTACKS

    report = await run_probe("tcp://127.0.0.1:5000", ATTACKS, ProbeConfig(duration=2))
    assert report.passed, report.to_dict()

Attacks (checklist VS-1, VS-2, VS-3, MEM-1): ``idle``, ``slowloris``,
``partial-eof``, ``oversize``, ``garbage``, ``churn``, ``half-close``,
``no-read``, ``slow-handler``. See ``docs/transport.md``.
"""

from nitroguard.probe._probe import ATTACKS as ATTACKS
from nitroguard.probe._probe import DEFAULT_REQUEST as DEFAULT_REQUEST
from nitroguard.probe._probe import MAX_CONNECTIONS as MAX_CONNECTIONS
from nitroguard.probe._probe import AttackResult as AttackResult
from nitroguard.probe._probe import ProbeConfig as ProbeConfig
from nitroguard.probe._probe import ProbeReport as ProbeReport
from nitroguard.probe._probe import check_target as check_target
from nitroguard.probe._probe import run_probe as run_probe

__all__ = [
    "ATTACKS",
    "DEFAULT_REQUEST",
    "MAX_CONNECTIONS",
    "AttackResult",
    "ProbeConfig",
    "ProbeReport",
    "check_target",
    "run_probe",
]
