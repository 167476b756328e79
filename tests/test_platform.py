"""The sandbox platform's own rules, on ``SandboxPlatform`` directly (no provider, no CLI).

Each test loads a small world into a fresh SQLite file and calls the five methods the
HTTP server serves: refusals with the platform's sub_codes, compare-and-set, revisions,
injected faults, the world dump and the transactions around every write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.platform import PlatformError, SandboxPlatform, World

JST, WDT, INHOUSE = "21345678", "12345679", "31415926"

APPS: dict[str, Any] = {
    JST: {"name": "聚水潭", "scenarios": ["intercept_shipment", "modify_address", "order_status"], "detail_whitelisted": True},
    WDT: {"name": "旺店通", "scenarios": ["intercept_shipment", "modify_address"]},
    INHOUSE: {"name": "自研ERP", "scenarios": ["intercept_shipment", "modify_address", "order_status"],
              "syncs_order_status": False},
}


def world(shops: dict[str, Any] | None = None, faults: list[dict[str, Any]] | None = None, **extra: Any) -> World:
    data: dict[str, Any] = {
        "apps": APPS,
        "shops": shops if shops is not None else {
            "100001": {"name": "一号店", "session": "sess-100001", "bindings": {"intercept_shipment": WDT}},
            "100002": {"name": "二号店", "session": "sess-100002"},
        },
        **extra,
    }
    if faults is not None:
        data["faults"] = faults
    return World.model_validate(data)


@pytest.fixture
def open_platform(tmp_path: Path) -> Iterator[Callable[[World], SandboxPlatform]]:
    opened: list[SandboxPlatform] = []

    def make(w: World, name: str = "sandbox.db") -> SandboxPlatform:
        p = SandboxPlatform(tmp_path / f"{len(opened)}-{name}")
        opened.append(p)
        p.load_world(w)
        return p

    yield make
    for p in opened:
        p.close()


@pytest.fixture
def platform(open_platform: Callable[[World], SandboxPlatform]) -> SandboxPlatform:
    return open_platform(world())


def bindings(p: SandboxPlatform, shop: str) -> dict[str, tuple[str, int]]:
    """scenario → (appkey, revision), as ``erp.binding.get`` answers."""
    return {b["scenario"]: (b["appkey"], b["revision"]) for b in p.get(shop)["bindings"]}


def refused(fn: Callable[[], object]) -> PlatformError:
    with pytest.raises(PlatformError) as info:
        fn()
    return info.value


# --------------------------------------------------------------------------- bind refusals


def test_bind_refuses_an_unknown_appkey(platform: SandboxPlatform) -> None:
    e = refused(lambda: platform.bind("100002", "intercept_shipment", "99999999", None))
    assert (e.sub_code, e.code, e.msg) == ("isv.appkey-not-found", 15, "no ERP app with appkey 99999999")
    assert bindings(platform, "100002") == {}


def test_bind_refuses_a_scenario_the_erp_has_not_integrated(platform: SandboxPlatform) -> None:
    e = refused(lambda: platform.bind("100002", "order_status", WDT, None))
    assert (e.sub_code, e.code) == ("isv.scenario-not-integrated", 15)
    assert e.msg == f"the ERP {WDT} has not integrated order_status through Qimen"
    assert bindings(platform, "100002") == {}
    # the same ERP on a scenario it has integrated is fine
    assert platform.bind("100002", "intercept_shipment", WDT, None) == \
        {"scenario": "intercept_shipment", "appkey": WDT, "revision": 1}


@pytest.mark.parametrize(("scenario", "appkey", "msg"), [
    ("intercept_shipment", "virtualAppKey", "virtualAppKey is only valid for modify_address (Cainiao warehouses)"),
    ("order_status", "virtualAppKey", "virtualAppKey is only valid for modify_address (Cainiao warehouses)"),
    ("intercept_shipment", "2134-5678", "appkey '2134-5678' is not a string of digits (or virtualAppKey)"),
    ("modify_address", "", "appkey '' is not a string of digits (or virtualAppKey)"),
    ("modify_address", "virtualappkey", "appkey 'virtualappkey' is not a string of digits (or virtualAppKey)"),
])
def test_bind_refuses_an_invalid_appkey(platform: SandboxPlatform, scenario: str, appkey: str, msg: str) -> None:
    e = refused(lambda: platform.bind("100002", scenario, appkey, None))
    assert (e.sub_code, e.code, e.msg) == ("isv.invalid-appkey", 15, msg)
    assert bindings(platform, "100002") == {}


def test_virtual_appkey_binds_modify_address(platform: SandboxPlatform) -> None:
    assert platform.bind("100002", "modify_address", "virtualAppKey", None) == \
        {"scenario": "modify_address", "appkey": "virtualAppKey", "revision": 1}
    assert bindings(platform, "100002") == {"modify_address": ("virtualAppKey", 1)}


def test_an_account_without_the_permission_is_refused_everything(open_platform: Callable[[World], SandboxPlatform]) -> None:
    p = open_platform(world({
        "100001": {"bindings": {"intercept_shipment": WDT}, "cs_permission": False},
        "100002": {},
    }))
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: p.get("100001"),
        "bind": lambda: p.bind("100001", "intercept_shipment", JST, WDT),
        "bind-new": lambda: p.bind("100001", "order_status", JST, None),
        "unbind": lambda: p.unbind("100001", "intercept_shipment", WDT),
        "selfservice": lambda: p.set_self_service("100001", True, False),
    }
    for what, call in calls.items():
        e = refused(call)
        assert (e.sub_code, e.code) == ("isv.permission-denied", 12), what
        assert e.msg == "the account lacks the customer-service-platform permission"
    # nothing changed (read around the refusing shop: the dump shows the raw content)
    shop = p.dump_world()["shops"]["100001"]
    assert shop == {"name": None, "bindings": {"intercept_shipment": WDT}, "buyer_self_service": False, "cs_permission": False}
    # get_many answers the other shops and the error for this one
    many = p.get_many(["100001", "100002"])
    assert isinstance(many["100001"], PlatformError) and many["100001"].code == 12
    assert many["100002"]["bindings"] == []


def test_an_unknown_shop_is_refused(platform: SandboxPlatform) -> None:
    e = refused(lambda: platform.bind("999", "intercept_shipment", JST, None))
    assert (e.sub_code, e.code, e.msg) == ("isv.shop-not-found", 15, "shop 999 does not exist")
    assert refused(lambda: platform.get("999")).sub_code == "isv.shop-not-found"


def test_an_unknown_scenario_is_an_invalid_parameter(platform: SandboxPlatform) -> None:
    e = refused(lambda: platform.bind("100002", "returns", JST, None))
    assert (e.sub_code, e.code, e.msg) == ("isv.invalid-parameter", 41, "unknown scenario 'returns'")


# --------------------------------------------------------------------------- compare-and-set and revisions


@pytest.mark.parametrize("expected", [None, JST, INHOUSE])
def test_bind_with_a_stale_expected_value_changes_nothing(platform: SandboxPlatform, expected: str | None) -> None:
    e = refused(lambda: platform.bind("100001", "intercept_shipment", JST, expected))
    shown = "unbound" if expected is None else expected
    assert (e.sub_code, e.code, e.msg) == ("isv.binding-conflict", 15, f"intercept_shipment is {WDT}, not the expected {shown}")
    assert bindings(platform, "100001") == {"intercept_shipment": (WDT, 1)}


def test_bind_on_an_unbound_scenario_expecting_a_key_conflicts(platform: SandboxPlatform) -> None:
    e = refused(lambda: platform.bind("100002", "order_status", JST, WDT))
    assert (e.sub_code, e.msg) == ("isv.binding-conflict", f"order_status is unbound, not the expected {WDT}")
    assert bindings(platform, "100002") == {}


@pytest.mark.parametrize("expected", [None, JST])
def test_unbind_with_a_stale_expected_value_changes_nothing(platform: SandboxPlatform, expected: str | None) -> None:
    e = refused(lambda: platform.unbind("100001", "intercept_shipment", expected))
    assert e.sub_code == "isv.binding-conflict"
    assert bindings(platform, "100001") == {"intercept_shipment": (WDT, 1)}


def test_set_self_service_with_a_stale_expected_value_changes_nothing(platform: SandboxPlatform) -> None:
    e = refused(lambda: platform.set_self_service("100001", False, True))
    assert (e.sub_code, e.msg) == ("isv.binding-conflict", "buyer_self_service is false, not the expected true")
    assert platform.get("100001")["buyer_self_service"] is False
    assert platform.set_self_service("100001", True, False) == {"buyer_self_service": True}
    assert platform.get("100001")["buyer_self_service"] is True
    e = refused(lambda: platform.set_self_service("100001", True, False))
    assert e.msg == "buyer_self_service is true, not the expected false"
    assert platform.get("100001")["buyer_self_service"] is True
    assert bindings(platform, "100001") == {"intercept_shipment": (WDT, 1)}  # no revision for a setting


def test_every_write_bumps_the_revision_by_one(platform: SandboxPlatform) -> None:
    # a fresh binding starts at 1; a world binding is at 1 already
    assert platform.bind("100002", "order_status", JST, None)["revision"] == 1
    assert platform.bind("100001", "intercept_shipment", JST, WDT) == \
        {"scenario": "intercept_shipment", "appkey": JST, "revision": 2}
    assert platform.bind("100001", "intercept_shipment", INHOUSE, JST)["revision"] == 3
    assert bindings(platform, "100001") == {"intercept_shipment": (INHOUSE, 3)}
    assert bindings(platform, "100002") == {"order_status": (JST, 1)}


def test_unbind_then_bind_keeps_revisions_monotonic(platform: SandboxPlatform) -> None:
    assert platform.unbind("100001", "intercept_shipment", WDT) == {"scenario": "intercept_shipment", "revision": 2}
    assert bindings(platform, "100001") == {}
    assert "intercept_shipment" not in platform.dump_world()["shops"]["100001"]["bindings"]
    # expected None now: the scenario is unbound
    assert refused(lambda: platform.unbind("100001", "intercept_shipment", WDT)).sub_code == "isv.binding-conflict"
    assert platform.bind("100001", "intercept_shipment", JST, None)["revision"] == 3
    assert platform.unbind("100001", "intercept_shipment", JST)["revision"] == 4
    assert platform.bind("100001", "intercept_shipment", WDT, None)["revision"] == 5
    assert bindings(platform, "100001") == {"intercept_shipment": (WDT, 5)}


# --------------------------------------------------------------------------- injected faults


def test_a_fault_with_times_2_fails_exactly_twice(open_platform: Callable[[World], SandboxPlatform]) -> None:
    p = open_platform(world(faults=[{"operation": "bind", "shop": "100001", "scenario": "intercept_shipment",
                                     "error": "isp.remote-service-unavailable", "times": 2}]))
    for left in (1, 0):
        e = refused(lambda: p.bind("100001", "intercept_shipment", JST, WDT))
        assert (e.sub_code, e.code, e.msg, e.ban_seconds) == ("isp.remote-service-unavailable", 15, "injected fault on bind", None)
        assert bindings(p, "100001") == {"intercept_shipment": (WDT, 1)}
        assert p.dump_world()["faults"][0]["times"] == left
    assert p.bind("100001", "intercept_shipment", JST, WDT)["revision"] == 2
    assert p.bind("100001", "intercept_shipment", WDT, JST)["revision"] == 3


def test_a_fault_without_times_always_fails(open_platform: Callable[[World], SandboxPlatform]) -> None:
    p = open_platform(world(faults=[{"operation": "unbind", "error": "isp.unknown-error", "times": None}]))
    for _ in range(6):
        assert refused(lambda: p.unbind("100001", "intercept_shipment", WDT)).sub_code == "isp.unknown-error"
    assert bindings(p, "100001") == {"intercept_shipment": (WDT, 1)}
    # other operations are not affected
    assert p.bind("100001", "intercept_shipment", JST, WDT)["revision"] == 2


def test_a_fault_with_times_omitted_fails_once(open_platform: Callable[[World], SandboxPlatform]) -> None:
    p = open_platform(world(faults=[{"operation": "selfservice"}]))
    assert refused(lambda: p.set_self_service("100002", True, False)).sub_code == "isp.unknown-error"
    assert p.get("100002")["buyer_self_service"] is False
    assert p.set_self_service("100002", True, False) == {"buyer_self_service": True}


def test_a_scoped_fault_leaves_other_shops_and_scenarios_alone(open_platform: Callable[[World], SandboxPlatform]) -> None:
    p = open_platform(world(faults=[{"operation": "bind", "shop": "100002", "scenario": "order_status",
                                     "error": "isv.permission-denied", "times": 1}]))
    assert p.bind("100001", "order_status", JST, None)["revision"] == 1          # other shop
    assert p.bind("100002", "intercept_shipment", JST, None)["revision"] == 1    # other scenario
    assert p.unbind("100001", "order_status", JST)["revision"] == 2               # other operation
    assert p.dump_world()["faults"] == [{"operation": "bind", "shop": "100002", "scenario": "order_status",
                                         "error": "isv.permission-denied", "times": 1}]  # still armed
    e = refused(lambda: p.bind("100002", "order_status", JST, None))
    assert (e.sub_code, e.code) == ("isv.permission-denied", 12)
    assert bindings(p, "100002") == {"intercept_shipment": (JST, 1)}
    assert p.bind("100002", "order_status", JST, None)["revision"] == 1


def test_a_get_fault_fails_only_its_shop(open_platform: Callable[[World], SandboxPlatform]) -> None:
    p = open_platform(world(faults=[{"operation": "get", "shop": "100001", "error": "isp.unknown-error", "times": 1}]))
    many = p.get_many(["100001", "100002"])
    assert isinstance(many["100001"], PlatformError) and many["100001"].sub_code == "isp.unknown-error"
    assert many["100002"]["shop_id"] == "100002"
    assert bindings(p, "100001") == {"intercept_shipment": (WDT, 1)}  # consumed: the second read works


def test_a_ban_fault_is_code_7_with_the_ban_seconds(open_platform: Callable[[World], SandboxPlatform]) -> None:
    p = open_platform(world(faults=[{"operation": "check", "error": "isp.call-limited", "ban_seconds": 17, "times": 1}]))
    e = refused(lambda: p.check_app(JST, "order_status"))
    assert (e.code, e.sub_code, e.ban_seconds) == (7, "isp.call-limited", 17)
    assert e.msg == "App Call Limited; This ban will last for 17 more seconds"
    assert p.check_app(JST, "order_status") == {"exists": True, "integrated": True, "name": "聚水潭",
                                                "detail_whitelisted": True, "syncs_order_status": True}


def test_check_app_answers(platform: SandboxPlatform) -> None:
    assert platform.check_app("99999999", "intercept_shipment") == {
        "exists": False, "integrated": False, "name": None, "detail_whitelisted": False, "syncs_order_status": False}
    assert platform.check_app(WDT, "order_status")["integrated"] is False
    assert platform.check_app(INHOUSE, "order_status") == {
        "exists": True, "integrated": True, "name": "自研ERP", "detail_whitelisted": False, "syncs_order_status": False}
    assert platform.check_app("virtualAppKey", "modify_address")["integrated"] is True
    assert platform.check_app("virtualAppKey", "intercept_shipment")["integrated"] is False


# --------------------------------------------------------------------------- the world dump

SECRET_WORLD: dict[str, Any] = {
    "app": {"app_key": "30000001", "app_secret": "s3cret-for-tests"},
    "apps": APPS,
    "shops": {
        "100001": {"name": "一号店", "session": "sess-100001", "bindings": {"order_status": JST, "intercept_shipment": WDT},
                   "buyer_self_service": True},
        "100002": {"session": "sess-100002", "cs_permission": False},
    },
    "faults": [{"operation": "bind", "shop": "100001", "error": "isp.call-limited", "ban_seconds": 3, "times": 2},
               {"operation": "get", "scenario": "order_status", "error": "isp.unknown-error", "times": 1}],
}


def test_dump_leaves_secrets_out(open_platform: Callable[[World], SandboxPlatform]) -> None:
    p = open_platform(World.model_validate(SECRET_WORLD))
    assert p.dump_world() == {
        "app": {"app_key": "30000001"},
        "apps": {
            WDT: {"name": "旺店通", "scenarios": ["intercept_shipment", "modify_address"], "detail_whitelisted": False,
                  "syncs_order_status": True},
            JST: {"name": "聚水潭", "scenarios": ["intercept_shipment", "modify_address", "order_status"],
                  "detail_whitelisted": True, "syncs_order_status": True},
            INHOUSE: {"name": "自研ERP", "scenarios": ["intercept_shipment", "modify_address", "order_status"],
                      "detail_whitelisted": False, "syncs_order_status": False},
        },
        "shops": {
            "100001": {"name": "一号店", "bindings": {"intercept_shipment": WDT, "order_status": JST},
                       "buyer_self_service": True},
            "100002": {"name": None, "bindings": {}, "buyer_self_service": False, "cs_permission": False},
        },
        "faults": [{"operation": "bind", "shop": "100001", "error": "isp.call-limited", "times": 2, "ban_seconds": 3},
                   {"operation": "get", "scenario": "order_status", "error": "isp.unknown-error", "times": 1}],
    }
    text = repr(p.dump_world())
    assert "s3cret" not in text and "sess-" not in text


def test_dump_with_secrets_round_trips(open_platform: Callable[[World], SandboxPlatform]) -> None:
    p = open_platform(World.model_validate(SECRET_WORLD))
    dumped = p.dump_world(include_secrets=True)
    assert dumped["app"] == {"app_key": "30000001", "app_secret": "s3cret-for-tests"}
    assert dumped["shops"]["100001"]["session"] == "sess-100001"
    assert dumped["shops"]["100002"]["session"] == "sess-100002"
    again = open_platform(World.model_validate(dumped))
    assert again.dump_world(include_secrets=True) == dumped
    assert World.model_validate(dumped) == World.model_validate(SECRET_WORLD)
    assert again.agency_app() == ("30000001", "s3cret-for-tests")
    assert again.shop_for_session("sess-100002") == "100002"


def test_a_world_without_an_agency_app_dumps_without_one(platform: SandboxPlatform) -> None:
    dumped = platform.dump_world(include_secrets=True)
    assert "app" not in dumped and "faults" not in dumped
    assert platform.agency_app() is None


def test_load_replaces_the_whole_content(platform: SandboxPlatform) -> None:
    platform.bind("100002", "order_status", JST, None)
    platform.load_world(world({"100009": {}}))
    assert platform.list_shops() == ["100009"]
    assert refused(lambda: platform.get("100002")).sub_code == "isv.shop-not-found"


# --------------------------------------------------------------------------- transactions


def _trigger(p: SandboxPlatform, table: str, event: str) -> None:
    """A trigger that fails *after* the row is written: only the transaction's rollback undoes it."""
    side = sqlite3.connect(p.path)
    try:
        side.execute(f"CREATE TRIGGER fail_{event.lower()} AFTER {event} ON {table} BEGIN SELECT RAISE(FAIL, 'disk gone'); END")
        side.commit()
    finally:
        side.close()


def _drop_triggers(p: SandboxPlatform) -> None:
    side = sqlite3.connect(p.path, timeout=1)
    try:
        for (name,) in side.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            side.execute(f"DROP TRIGGER {name}")
        side.commit()
    finally:
        side.close()


def test_a_rotation_that_fails_in_the_database_changes_nothing(platform: SandboxPlatform) -> None:
    _trigger(platform, "bindings", "UPDATE")
    with pytest.raises(sqlite3.IntegrityError, match="disk gone"):
        platform.bind("100001", "intercept_shipment", JST, WDT)
    assert bindings(platform, "100001") == {"intercept_shipment": (WDT, 1)}
    with pytest.raises(sqlite3.IntegrityError):
        platform.unbind("100001", "intercept_shipment", WDT)
    assert bindings(platform, "100001") == {"intercept_shipment": (WDT, 1)}
    # the connection is usable again (no transaction left open) and the revision continues from 1
    _drop_triggers(platform)
    assert platform.bind("100001", "intercept_shipment", JST, WDT)["revision"] == 2


def test_a_new_binding_that_fails_in_the_database_is_not_kept(platform: SandboxPlatform) -> None:
    _trigger(platform, "bindings", "INSERT")
    with pytest.raises(sqlite3.IntegrityError):
        platform.bind("100002", "order_status", JST, None)
    assert bindings(platform, "100002") == {}
    _drop_triggers(platform)
    assert platform.bind("100002", "order_status", JST, None)["revision"] == 1


def test_a_setting_that_fails_in_the_database_is_not_kept(platform: SandboxPlatform) -> None:
    _trigger(platform, "shops", "UPDATE")
    with pytest.raises(sqlite3.IntegrityError):
        platform.set_self_service("100002", True, False)
    assert platform.get("100002")["buyer_self_service"] is False
    _drop_triggers(platform)
    assert platform.set_self_service("100002", True, False) == {"buyer_self_service": True}


def test_a_load_that_fails_keeps_the_old_world(platform: SandboxPlatform) -> None:
    _trigger(platform, "faults", "INSERT")
    with pytest.raises(sqlite3.IntegrityError):
        platform.load_world(world({"100009": {}}, faults=[{"operation": "bind"}]))
    assert platform.list_shops() == ["100001", "100002"]
    assert bindings(platform, "100001") == {"intercept_shipment": (WDT, 1)}
