"""The bulk constructors of model.py (``new_source``, ``new_binding``, ``new_shop``,
``new_state_binding``, ``new_state``, and ``new_cached_shop`` for the parse cache) build the very objects the classes' own ``__init__``
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
    BindingSet,
    CachedShop,
    DesiredBinding,
    DesiredShop,
    Scenario,
    ShopState,
    Source,
    binding_count,
    binding_set,
    new_binding,
    new_cached_shop,
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


def test_a_cached_shop_is_the_shop_its_file_gives() -> None:
    """``new_cached_shop`` sets every field of a shop but its bindings, which its binding set
    builds from the sources its slots name when first read; the shop equals (both ways) the one built
    with those bindings, is still frozen, and one made with its fields given has no set."""
    bset = BindingSet([(Scenario.modify_address, "21345678", "jst", True, False, 0, 1)])
    values = {"id": "10000001", "name": "店铺", "erp": "jst", "protect": True, "source": SRC, "binding_set": bset,
              "slots": [1, 0], "source_of": [OTHER, SRC].__getitem__, "labels": {"team": "east"}, "profile": "std",
              "protect_source": OTHER}
    shop_fields = [f.name for f in dataclasses.fields(DesiredShop)]
    assert [n for n in inspect.signature(new_cached_shop).parameters if n not in ("binding_set", "slots", "source_of")] == \
        [n for n in shop_fields if n != "bindings"]   # every other field, in the class's order
    made = new_cached_shop(*values.values())
    plain = new_shop("10000001", "店铺", "jst", True, SRC, {Scenario.modify_address: BINDING}, {"team": "east"}, "std", OTHER)
    assert type(made) is CachedShop and isinstance(made, DesiredShop)
    assert binding_set(made) is bset and binding_count(made) == 1
    assert all(getattr(made, n) is values[n] for n in shop_fields if n != "bindings")
    assert made == plain and plain == made and [plain] == [made]
    assert made.bindings == {Scenario.modify_address: BINDING} and made.bindings is made.bindings   # built once
    for name in values:   # every field counts in equality
        if name in shop_fields:
            changed = dict(values, **{name: None if values[name] is not None else "x"})
            assert new_cached_shop(*changed.values()) != plain, name
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.bindings = {}  # type: ignore[misc]
    again = dataclasses.replace(made, protect=False)
    assert binding_set(again) is None and binding_count(again) == 1 and again.bindings == made.bindings
    assert again == dataclasses.replace(plain, protect=False)
