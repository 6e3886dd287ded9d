"""The `@check(id, title)` registry: one title per check, ids unique, display order."""

from __future__ import annotations

import pytest

from nitroguard.audit import AREAS, DEFAULT, Facts, Options, check
from nitroguard.audit._check import title_of
from nitroguard.errors import ConfigError
from nitroguard.findings import Finding


def test_default_is_every_check_once_in_area_order() -> None:
    ids = [c.id for c in DEFAULT]
    assert len(ids) == len(set(ids)) == 20
    assert ids[0] == "ENV-1"
    areas = [c.area for c in DEFAULT]
    order = list(AREAS)
    assert [order.index(a) for a in areas] == sorted(order.index(a) for a in areas)
    for c in DEFAULT:
        assert title_of(c.id) == c.title


def test_registering_an_id_twice_is_refused() -> None:
    def again(facts: Facts, options: Options) -> Finding:  # pragma: no cover - never run
        raise AssertionError

    with pytest.raises(ConfigError, match="RNG-1 is registered twice"):
        check("RNG-1", "another title")(again)
    assert title_of("RNG-1") == "Kernel hwrng is nsm-hwrng"


def test_parent_checks_come_from_their_decorators() -> None:
    from nitroguard.audit import PARENT_CHECKS
    from nitroguard.audit._parent import parent_check

    assert [c.id for c in PARENT_CHECKS] == ["CPU-2", "ATT-2", "VS-5", "ALLOC-1"]
    with pytest.raises(ConfigError, match="parent check VS-5 is registered twice"):
        parent_check("VS-5", "again")(PARENT_CHECKS[0].func)
