"""The bulk constructors of model.py (``new_source``, ``new_binding``, ``new_shop``,
``new_state_binding``, ``new_state``) build the very objects the classes' own ``__init__``
builds: every field set, equal, same hash, still frozen. A field added to a class and not to
its constructor fails here."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from reconciler.model import (
    Binding,
    DesiredBinding,
    DesiredShop,
    Scenario,
    ShopState,
    Source,
    new_binding,
    new_shop,
    new_source,
    new_state,
    new_state_binding,
)

SRC = Source(file="shops/a.yaml", line=3, profile="std", profile_at="profiles.yaml:4")
OTHER = Source(file="shops/a.yaml", line=9)
BINDING = DesiredBinding(scenario=Scenario.modify_address, appkey="21345678", erp="jst", source=SRC,
                         buyer_self_service=True, buyer_self_service_source=OTHER, erp_detail_button=False)
STATE_BINDING = Binding(scenario=Scenario.order_status, appkey="12345679", revision=7)

CASES: list[tuple[type[Any], Callable[..., Any], dict[str, Any]]] = [
    (Source, new_source, {"file": "f.yaml", "line": 12, "profile": "p", "profile_at": "profiles.yaml:2"}),
    (DesiredBinding, new_binding, {"scenario": Scenario.modify_address, "appkey": "21345678", "erp": "jst", "source": SRC,
                                   "buyer_self_service": True, "buyer_self_service_source": OTHER,
                                   "erp_detail_button": False}),
    (DesiredShop, new_shop, {"id": "10000001", "name": "店铺", "erp": "jst", "protect": True, "source": SRC,
                             "bindings": {Scenario.modify_address: BINDING}, "labels": {"team": "east"},
                             "profile": "std", "protect_source": OTHER}),
    (Binding, new_state_binding, {"scenario": Scenario.order_status, "appkey": "12345679", "revision": 7}),
    (ShopState, new_state, {"shop_id": "10000001", "name": "店铺", "bindings": {Scenario.order_status: STATE_BINDING},
                            "buyer_self_service": True, "detail_whitelisted": True}),
]


@pytest.mark.parametrize(("cls", "make", "values"), CASES, ids=[c[0].__name__ for c in CASES])
def test_a_bulk_constructor_builds_what_the_class_builds(cls: type[Any], make: Callable[..., Any],
                                                         values: dict[str, Any]) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    assert list(inspect.signature(make).parameters) == names   # every field, in the class's order
    assert set(values) == set(names)
    built, made = cls(**values), make(*values.values())
    assert type(made) is cls
    assert made == built
    if all(not isinstance(v, dict) for v in values.values()):   # a dict field makes the object unhashable
        assert hash(made) == hash(built)
    assert all(getattr(made, n) is values[n] for n in names)   # each field set to what was given
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, names[0], values[names[0]])


@pytest.mark.parametrize(("cls", "make", "values"), CASES, ids=[c[0].__name__ for c in CASES])
def test_each_field_counts_in_equality(cls: type[Any], make: Callable[..., Any], values: dict[str, Any]) -> None:
    """A constructor that dropped a field would leave it unset: every field must tell two objects apart."""
    base = make(*values.values())
    for name in values:
        changed = dict(values, **{name: None if values[name] is not None else "x"})
        assert make(*changed.values()) != base, name
