"""A shop of the parse cache (``model.CachedShop``) is planned through its binding set: when the
platform already holds what the set says and the preflight has nothing to say about it,
``compute_plan`` passes the shop by without building its bindings (``plan._unchanged``). That
must say exactly what ``diff_shop`` says of the same shop built from its file: over random
binding sets, shops sharing them, platform states, app checks, read errors, protected shops,
interrupted applies and authorizations, the plan of cached shops equals the plan of the very
same shops built plainly, and so do ``needed_checks`` and the managed count."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.errors import ProviderError
from reconciler.model import (
    SCENARIOS,
    AppCheck,
    Binding,
    BindingSet,
    DesiredShop,
    Scenario,
    ShopState,
    binding_count,
    new_cached_shop,
    new_shop,
    new_source,
)
from reconciler.plan import _expected, _unchanged, compute_plan, diff_shop, needed_checks
from reconciler.settings import SafetySettings
from reconciler.vocab import ProblemKind, Severity

APPKEYS = ["21345678", "12345679", "virtualAppKey", "9"]
NAMES = {"21345678": "jushuitan", "12345679": "wangdiantong"}
_built = DesiredShop.__dict__["bindings"].__get__


@st.composite
def binding_sets(draw: Any) -> BindingSet:
    items = []
    for sc in SCENARIOS:
        if draw(st.booleans()):
            items.append((sc, draw(st.sampled_from([*APPKEYS, None, ""])), draw(st.sampled_from([None, "jushuitan"])),
                          draw(st.sampled_from([None, True, False])), draw(st.sampled_from([None, True, False])),
                          draw(st.integers(0, 1)), draw(st.sampled_from([None, 0, 1, 2]))))
    return BindingSet(items)


def states(sid: str) -> Any:
    bindings = st.dictionaries(st.sampled_from(SCENARIOS), st.tuples(st.sampled_from(APPKEYS), st.integers(0, 2)))
    state = st.builds(lambda b, bss, wl: ShopState(shop_id=sid, bindings={sc: Binding(scenario=sc, appkey=k, revision=r)
                                                                          for sc, (k, r) in b.items()},
                                                   buyer_self_service=bss, detail_whitelisted=wl),
                      bindings, st.booleans(), st.booleans())
    return st.one_of(state, st.just(ProviderError("erp.binding.get: timed out", retryable=True)))


@st.composite
def held(draw: Any, sid: str, bset: BindingSet) -> ShopState:
    """What the platform holds when it is (mostly) what the set says: the case the fast path takes."""
    bindings = {sc: Binding(scenario=sc, appkey=appkey, revision=draw(st.integers(0, 2)))
                for sc, appkey, *_ in bset.items if appkey is not None}
    if draw(st.integers(0, 3)) == 0:   # now and then one more, unmanaged
        sc = draw(st.sampled_from(SCENARIOS))
        bindings.setdefault(sc, Binding(scenario=sc, appkey=draw(st.sampled_from(APPKEYS)), revision=0))
    said = [bss for _, _, _, bss, *_ in bset.items if bss is not None]
    bss = said[0] if said and draw(st.integers(0, 3)) else draw(st.booleans())
    return ShopState(shop_id=sid, bindings=bindings, buyer_self_service=bss, detail_whitelisted=draw(st.booleans()))


def checks() -> Any:
    answer = st.one_of(
        st.builds(lambda sc, e, i, wl, sync: AppCheck(appkey="x", scenario=sc, exists=e or i, integrated=i,
                                                       detail_whitelisted=wl, syncs_order_status=sync),
                  st.sampled_from(SCENARIOS), st.booleans(), st.booleans(), st.booleans(), st.booleans()),
        st.just(ProviderError("erp.app.check: refused")))
    return st.dictionaries(st.tuples(st.sampled_from(APPKEYS), st.sampled_from(SCENARIOS)), answer)


@st.composite
def agencies(draw: Any) -> tuple[list[DesiredShop], list[DesiredShop], dict[str, Any], dict[Any, Any], dict[str, Any]]:
    sets = draw(st.lists(binding_sets(), min_size=1, max_size=3))
    cached: list[DesiredShop] = []
    plain: list[DesiredShop] = []
    actual: dict[str, Any] = {}
    for n in range(draw(st.integers(1, 6))):
        sid = str(100_000 + n)
        bset = draw(st.sampled_from(sets))
        source = new_source("shops/a.yaml", 2 + 10 * n, None, None)
        given = [new_source("shops/a.yaml", 3 + 10 * n + k, None, None) for k in range(bset.slots)]
        protect = draw(st.booleans())
        protect_source = new_source("shops/a.yaml", 9 + 10 * n, None, None) if protect and draw(st.booleans()) else None
        labels = draw(st.sampled_from([{}, {"team": "a"}]))
        cached.append(new_cached_shop(sid, f"店{n}", "jushuitan", protect, source, bset, list(range(bset.slots)), given.__getitem__,
                                      labels, None, protect_source))
        plain.append(new_shop(sid, f"店{n}", "jushuitan", protect, source, bset.build(given), labels, None, protect_source))
        actual[sid] = draw(st.one_of(states(sid), held(sid, bset)))
    ids = [s.id for s in plain]
    extra = {
        "force": draw(st.booleans()),
        "interrupted": draw(st.dictionaries(st.sampled_from(ids), st.just("a killed apply may have left it half-changed"))),
        "auth": draw(st.dictionaries(st.sampled_from(ids), st.sampled_from([
            (ProblemKind.auth_expiring, Severity.warning, "the session ends soon"),
            (ProblemKind.auth_expired, Severity.error, "the session expired")]))),
        "safety": SafetySettings(max_change_share=draw(st.sampled_from([0.0, 0.3, 1.0])), min_managed=draw(st.integers(0, 3))),
    }
    return cached, plain, actual, draw(checks()), extra


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(agencies())
def test_cached_shops_plan_as_plain_ones(agency: tuple[list[DesiredShop], list[DesiredShop], dict[str, Any],
                                                       dict[Any, Any], dict[str, Any]]) -> None:
    cached, plain, actual, found, extra = agency
    assert needed_checks(cached) == needed_checks(plain)
    assert [binding_count(s) for s in cached] == [len(s.bindings) for s in plain]
    assert compute_plan(cached, actual, found, NAMES, **extra) == compute_plan(plain, actual, found, NAMES, **extra)
    assert cached == plain   # (and building their bindings afterwards gives the plain ones)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), binding_sets(), checks(), st.booleans())
def test_unchanged_means_diff_shop_says_nothing(data: Any, bset: BindingSet, found: dict[Any, Any], force: bool) -> None:
    """The fast path's own claim, shop by shop: wherever it passes a shop by, diff_shop has
    neither a change nor a problem to say about it."""
    state = data.draw(st.one_of(states("100000"), held("100000", bset)))
    if not isinstance(state, ShopState):
        return
    given = [new_source("shops/a.yaml", 3 + k, None, None) for k in range(bset.slots)]
    shop = new_shop("100000", None, "jushuitan", True, new_source("shops/a.yaml", 2, None, None), bset.build(given), {},
                    None, None)
    expected = _expected(bset, found)
    if expected is not None and _unchanged(expected, bset.scenarios, state):
        assert diff_shop(shop, state, found, NAMES, force=force) == ([], [])


def test_an_unchanged_cached_shop_is_planned_without_building_its_bindings() -> None:
    """(So the fast path is really taken: a plan that built every shop's bindings would pass the
    tests above too.)"""
    bset = BindingSet([(Scenario.intercept_shipment, "21345678", "jushuitan", None, None, 0, None),
                       (Scenario.modify_address, "21345678", "jushuitan", True, None, 0, 1)])
    given = [new_source("shops/a.yaml", 4, None, None), new_source("shops/a.yaml", 7, None, None)]
    shops = [new_cached_shop(str(100_000 + n), None, "jushuitan", False, new_source("shops/a.yaml", 2, None, None), bset,
                             [1, 0], given[::-1].__getitem__, {}, None, None) for n in range(3)]
    held = {sc: Binding(scenario=sc, appkey="21345678", revision=1) for sc in bset.scenarios}
    actual: dict[str, Any] = {s.id: ShopState(shop_id=s.id, bindings=dict(held), buyer_self_service=True) for s in shops}
    actual["100002"] = ShopState(shop_id="100002", bindings=dict(held), buyer_self_service=False)   # one to update
    ok = AppCheck(appkey="21345678", scenario=Scenario.intercept_shipment, exists=True, integrated=True)
    found = {("21345678", sc): ok for sc in bset.scenarios}
    plan = compute_plan(shops, actual, found, NAMES)
    assert [(c.shop, c.scenario, c.action.value) for c in plan.changes] == [("100002", Scenario.modify_address, "update")]
    assert plan.managed == 6 and needed_checks(shops) == set(found)
    for s in shops[:2]:
        try:
            _built(s)
        except AttributeError:
            continue
        raise AssertionError(f"shop {s.id}: its bindings were built")
    assert _built(shops[2]) == shops[2].bindings   # (diffed: built)
