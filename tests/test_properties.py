"""Properties of plan and apply over random worlds and random desired configurations.

Each example writes a random config directory (read by the real loader) and loads a
random world into a fresh SQLite sandbox, then plans and applies in-process
(``make_plan`` / ``apply_plan`` with a ``SandboxProvider``): no CLI, so a few hundred
examples cost seconds. The properties:

* after ``apply``, a new ``plan`` has no changes; every shop without an error problem
  holds exactly what the config declares, and every other binding is as it was;
* ``plan`` is deterministic: the same inputs give byte-identical JSON, whatever the order
  in which the platform's rows were inserted;
* applying an empty plan writes nothing (the sandbox, revisions included, is identical).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.apply import apply_plan, check_safe, make_plan
from reconciler.config import Config, load_config
from reconciler.errors import UnsafePlan
from reconciler.model import Scenario
from reconciler.plan import Plan
from reconciler.platform import SandboxPlatform, World
from reconciler.providers import RetryPolicy, SandboxProvider

SCENARIOS = ("intercept_shipment", "modify_address", "order_status")
PLATFORM_APPS = ("21345678", "12345679", "31415926")
GHOST = "87654321"  # an appkey no ERP app on the platform has: a preflight error
ERP_NAMES = ("jushuitan", "wangdiantong", "inhouse", "kingdee", "guanyi")
PINNED = (*PLATFORM_APPS, "01234567")  # 01234567: not on the platform
# Errors withhold a whole shop; draw the error-making choices rarely so most examples write.
RARE = 8
SHOP_IDS = ("100001", "100002", "100003", "100004", "200001", "200002")

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- strategies


@st.composite
def apps(draw: st.DrawFn) -> dict[str, Any]:
    # Most ERPs integrate most scenarios; a missing integration is a preflight error.
    return {key: {"name": f"ERP {key}", "scenarios": [s for s in SCENARIOS if draw(st.integers(0, RARE)) > 0],
                  "detail_whitelisted": draw(st.booleans()), "syncs_order_status": draw(st.booleans())}
            for key in PLATFORM_APPS}


@st.composite
def world_shop(draw: st.DrawFn) -> dict[str, Any]:
    bindings: dict[str, str] = {}
    for sc in SCENARIOS:
        keys = [*PLATFORM_APPS, "99999999"] + (["virtualAppKey"] if sc == "modify_address" else [])
        key = draw(st.none() | st.sampled_from(keys))
        if key is not None:
            bindings[sc] = key
    shop: dict[str, Any] = {"name": "店", "bindings": bindings, "buyer_self_service": draw(st.booleans())}
    if draw(st.integers(0, 2 * RARE)) == 0:
        shop["cs_permission"] = False  # every call on this shop is refused
    return shop


@st.composite
def catalog(draw: st.DrawFn) -> dict[str, str]:
    """erps.yaml: random names → appkeys; two names may share an appkey; maybe a ghost, maybe cainiao."""
    appkeys = st.sampled_from(PLATFORM_APPS * RARE + (GHOST,))
    erps = draw(st.dictionaries(st.sampled_from(ERP_NAMES), appkeys, min_size=1))
    if draw(st.booleans()):
        erps["cainiao"] = "virtualAppKey"
    return erps


@st.composite
def scenario_spec(draw: st.DrawFn, erps: dict[str, str], scenario: str, shop_erp: str | None) -> dict[str, Any] | None:
    """A scenario's desired state, or None for 'not managed'. Always valid config."""
    names = [n for n, k in erps.items() if k != "virtualAppKey" or scenario == "modify_address"]
    choices = ["omit", "default", "erp", "appkey", "unbound"] if shop_erp else ["omit", "erp", "appkey", "unbound"]
    how = draw(st.sampled_from(choices))
    spec: dict[str, Any]
    if how == "omit":
        return None
    if how == "default":
        spec = {}
    elif how == "erp":
        spec = {"erp": draw(st.sampled_from(names))}
    elif how == "appkey":
        spec = {"appkey": draw(st.sampled_from(PINNED if draw(st.integers(0, RARE)) == 0 else PINNED[:-1]))}
    else:
        spec = {"state": "unbound"}
    if scenario == "modify_address" and draw(st.booleans()):
        spec["buyer_self_service"] = False if how == "unbound" else draw(st.booleans())
    if scenario == "order_status" and how != "unbound" and draw(st.booleans()):
        spec["erp_detail_button"] = draw(st.booleans())
    return spec


@st.composite
def desired_shop(draw: st.DrawFn, erps: dict[str, str], shop_id: str) -> dict[str, Any]:
    usable = [n for n, k in erps.items() if k != "virtualAppKey"]  # a shop's ERP serves every scenario
    shop_erp = draw(st.none() | st.sampled_from(usable)) if usable else None
    shop: dict[str, Any] = {"id": shop_id}
    if shop_erp:
        shop["erp"] = shop_erp
    if draw(st.integers(0, 4)) == 0:
        shop["protect"] = True
    scenarios = {}
    for sc in SCENARIOS:
        spec = draw(scenario_spec(erps, sc, shop_erp))
        if spec is not None:
            scenarios[sc] = spec
    shop["scenarios"] = scenarios
    return shop


@dataclass(frozen=True)
class Case:
    erps: dict[str, str]  # erps.yaml: name → appkey
    world: dict[str, Any]
    files: dict[str, list[dict[str, Any]]]  # shops/<name> → shops
    force: bool


@st.composite
def cases(draw: st.DrawFn) -> Case:
    managed = draw(st.lists(st.sampled_from(SHOP_IDS), unique=True, min_size=1, max_size=len(SHOP_IDS)))
    # The world holds the managed shops (rarely one is missing: a read error) and maybe others.
    extra = draw(st.lists(st.sampled_from(SHOP_IDS), unique=True))
    missing = managed[0] if draw(st.integers(0, RARE)) == 0 else None
    in_world = sorted((set(managed) | set(extra)) - {missing})
    world = {"apps": draw(apps()), "shops": {sid: draw(world_shop()) for sid in in_world}}
    erps = draw(catalog())
    shops = [draw(desired_shop(erps, sid)) for sid in managed]
    split = draw(st.integers(0, len(shops)))
    files = {"a.yaml": shops[:split], "b.yaml": shops[split:]}
    return Case(erps=erps, world=world, files=files, force=draw(st.booleans()))


# --------------------------------------------------------------------------- harness


@dataclass
class Env:
    config: Config
    platform: SandboxPlatform
    provider: SandboxProvider
    root: Path

    def plan(self, *, force: bool) -> Plan:
        return make_plan(self.config.desired(), self.provider, force=force)

    def snapshot(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The whole content, plus every shop's bindings with their revisions."""
        shops = self.platform.list_shops()
        raw = self.platform.get_many(shops)
        return self.platform.dump_world(include_secrets=True), {k: repr(v) for k, v in raw.items()}


def write_config(root: Path, case: Case) -> Config:
    (root / "shops").mkdir(parents=True)
    (root / "erps.yaml").write_text(yaml.safe_dump({"erps": {n: {"appkey": k} for n, k in case.erps.items()}}))
    for name, shops in case.files.items():
        (root / "shops" / name).write_text(yaml.safe_dump({"shops": shops}, allow_unicode=True))
    return load_config(root)


@contextmanager
def environment(case: Case, *, world: dict[str, Any] | None = None) -> Iterator[Env]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = write_config(root / "configs", case)
        platform = SandboxPlatform(root / "sandbox.db")
        platform.load_world(World.model_validate(world or case.world))
        provider = SandboxProvider(platform, retry=RetryPolicy(retries=0), sleep=lambda _: None)
        try:
            yield Env(config, platform, provider, root)
        finally:
            platform.close()


def reversed_world(world: dict[str, Any]) -> dict[str, Any]:
    """The same world with every mapping's insertion order reversed."""
    def rev(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: rev(v[k]) for k in reversed(list(v))}
        return v
    return rev(world)


def error_shops(plan: Plan) -> set[str]:
    return {p.shop for p in plan.problems if p.severity == "error" and p.shop is not None}


# --------------------------------------------------------------------------- properties


@PROPERTY_SETTINGS
@given(cases())
def test_apply_then_plan_is_empty(case: Case) -> None:
    with environment(case) as env:
        before, _ = env.snapshot()
        force = case.force
        plan = env.plan(force=force)
        try:
            check_safe(plan, force=force)
        except UnsafePlan:
            assert env.snapshot()[0] == before  # refused: nothing written
            force = True  # as `apply --force` would
            plan = env.plan(force=force)
        result = apply_plan(plan, env.provider)
        assert result.failed == []
        after = env.platform.dump_world()

        # A new plan has nothing left to do (shops with errors are withheld again).
        again = env.plan(force=force)
        assert again.changes == ()
        assert error_shops(again) == error_shops(plan)

        withheld = error_shops(plan)
        world_shops = before["shops"]
        for shop in env.config.shops:
            if shop.id not in world_shops:
                assert shop.id in withheld  # cannot be read: an error, nothing planned
                continue
            old, new = world_shops[shop.id], after["shops"][shop.id]
            if shop.id in withheld:
                assert new == old, f"shop {shop.id} had errors but changed"
                continue
            # Declared scenarios hold what the config says; the others are untouched.
            for sc in SCENARIOS:
                want = shop.bindings.get(Scenario(sc))
                expected = old["bindings"].get(sc) if want is None else want.appkey
                assert new["bindings"].get(sc) == expected, (shop.id, sc)
            bss = [b.buyer_self_service for b in shop.bindings.values() if b.buyer_self_service is not None]
            assert new["buyer_self_service"] == (bss[0] if bss else old["buyer_self_service"])
        # Shops the config does not name are untouched.
        for sid, old in world_shops.items():
            if sid not in {s.id for s in env.config.shops}:
                assert after["shops"][sid] == old


@PROPERTY_SETTINGS
@given(cases())
def test_plan_is_deterministic(case: Case) -> None:
    with environment(case) as env:
        first = env.plan(force=case.force).to_json()
        assert env.plan(force=case.force).to_json() == first
        # Same desired state and same platform content, rows inserted in the other order.
        env.platform.load_world(World.model_validate(reversed_world(case.world)))
        assert env.plan(force=case.force).to_json() == first


@PROPERTY_SETTINGS
@given(cases())
def test_apply_of_an_empty_plan_changes_nothing(case: Case) -> None:
    with environment(case) as env:
        apply_plan(env.plan(force=True), env.provider)
        empty = env.plan(force=True)
        assert empty.changes == ()
        before = env.snapshot()
        result = apply_plan(empty, env.provider)
        assert (result.applied, result.failed, result.outcomes) == (0, [], [])
        assert env.snapshot() == before
