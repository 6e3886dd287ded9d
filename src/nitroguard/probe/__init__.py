"""The adversarial-parent probe (`nitroguard probe`): does a framed service resist a hostile parent?

Public API::

    from nitroguard.probe import run_probe, ProbeConfig, ProbeReport, AttackResult, ATTACKS

    report = await run_probe("tcp://127.0.0.1:5000", ATTACKS, ProbeConfig(duration=2))
    assert report.passed, report.to_dict()

Attacks (checklist VS-1, VS-2, VS-3, MEM-1): ``idle``, ``slowloris``,
``partial-eof``, ``oversize``, ``garbage``, ``churn``, ``half-close``,
``no-read``, ``slow-handler``. See ``docs/transport.md``.

Side channels (SC-1 timing, SC-3 reply length; statistics in
`nitroguard.probe.stats`)::

    from nitroguard.probe import run_leak, LeakConfig

    report = run_leak("tcp://127.0.0.1:5000", LeakConfig(class_a=right_mac, class_b=wrong_mac))
    assert report.passed, report.to_dict()
"""

from nitroguard.probe._leak import LeakCheck as LeakCheck
from nitroguard.probe._leak import LeakConfig as LeakConfig
from nitroguard.probe._leak import LeakReport as LeakReport
from nitroguard.probe._leak import run_leak as run_leak
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
    "LeakCheck",
    "LeakConfig",
    "LeakReport",
    "ProbeConfig",
    "ProbeReport",
    "check_target",
    "run_leak",
    "run_probe",
]
