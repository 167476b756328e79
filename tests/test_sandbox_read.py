"""The embedded provider's batch read (``SandboxPlatform.read`` → ``SandboxProvider.read``).

It reads tuples straight into ``ShopState``, skipping the response bodies and the wire's
validation that ``get`` and the ``top`` provider go through. So it is held to that path: the
same world is loaded into two sandboxes, one read in a batch, the other shop by shop with
``get`` and ``state_from_body`` (what the HTTP gateway serves and the ``top`` provider
believes), and every shop's state or error must be the same, injected faults counted alike.
A database with values of the wrong kind (written behind the platform's back) fails the
shops it concerns, like the wire would, and only those.
"""

from __future__ import annotations

import gc
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import ProviderError
from reconciler.model import Binding, Scenario, ShopState
from reconciler.platform import PlatformError, SandboxPlatform, World
from reconciler.providers import RetryPolicy, SandboxProvider
from reconciler.providers.base import platform_error, state_from_body

JST, WDT, INHOUSE, GONE = "21345678", "12345679", "31415926", "99999999"
MISSING = "999999"
FILLERS = 520  # more than the platform reads by id: the whole table is scanned

APPS: dict[str, Any] = {
    JST: {"name": "聚水潭", "scenarios": ["intercept_shipment", "modify_address", "order_status"], "detail_whitelisted": True},
    WDT: {"name": "旺店通", "scenarios": ["intercept_shipment", "modify_address"]},
    INHOUSE: {"name": "自研ERP", "scenarios": ["intercept_shipment", "modify_address", "order_status"]},
}

SHOPS: dict[str, Any] = {
    "100001": {"name": "先问", "bindings": {"intercept_shipment": JST}},              # the first two shops asked
    "100002": {},                                                                    # (unbound, no name) fail once
    "100003": {"name": "无权限", "bindings": {"intercept_shipment": WDT}, "cs_permission": False},
    "100004": {"name": "故障", "bindings": {"order_status": JST}},                     # its get fails twice
    "100005": {"name": "菜鸟", "bindings": {"modify_address": "virtualAppKey", "intercept_shipment": WDT},
               "buyer_self_service": True},
    "100006": {"name": "", "bindings": {"order_status": INHOUSE}},                   # not whitelisted; empty name
    "100007": {"name": "旧ERP", "bindings": {"order_status": GONE}},                  # an app the platform no longer has
    "100008": {"name": "改过", "bindings": {"intercept_shipment": WDT, "modify_address": WDT}},  # unbound, rebound below
    "100009": {"name": "全绑", "bindings": {"intercept_shipment": JST, "modify_address": JST, "order_status": JST}},
    "200001": {"name": "另一个", "bindings": {"intercept_shipment": INHOUSE}},
}

FAULTS: list[dict[str, Any]] = [
    {"operation": "get", "shop": "100004", "error": "isp.call-limited", "ban_seconds": 3, "times": 2},
    {"operation": "get", "error": "isp.remote-service-unavailable", "times": 2},     # any shop: the first two asked
    {"operation": "get", "scenario": "order_status", "times": None},                 # a get names no scenario: never
    {"operation": "bind", "times": None},                                            # another method's
]


def make_world(*, fillers: int = FILLERS, faults: bool = True) -> World:
    shops = dict(SHOPS)
    shops.update({str(300000 + i): {"name": f"店{i}", "bindings": {"intercept_shipment": JST}} for i in range(fillers)})
    return World.model_validate({"apps": APPS, "shops": shops, "faults": FAULTS if faults else []})


def open_sandbox(path: Path, world: World) -> SandboxPlatform:
    platform = SandboxPlatform(path)
    platform.load_world(world)
    # a binding's history, which a world file cannot hold (and the bind fault refuses every write):
    # one unbound (its row stays, appkey NULL, revision 2), another rebound (revision 2)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE bindings SET appkey = NULL, revision = 2 WHERE shop_id = '100008' AND scenario = 'modify_address'")
        db.execute("UPDATE bindings SET appkey = ?, revision = 2 WHERE shop_id = '100008' AND scenario = 'intercept_shipment'",
                   (INHOUSE,))
    return platform


@pytest.fixture
def sandboxes(tmp_path: Path) -> Iterator[tuple[SandboxPlatform, SandboxPlatform]]:
    world = make_world()
    a, b = open_sandbox(tmp_path / "a.db", world), open_sandbox(tmp_path / "b.db", world)
    yield a, b
    a.close()
    b.close()


def provider(platform: SandboxPlatform, retries: int = 0) -> SandboxProvider:
    return SandboxProvider(platform, retry=RetryPolicy(retries=retries), sleep=lambda _: None)


def one_by_one(platform: SandboxPlatform, ids: list[str]) -> dict[str, ShopState | ProviderError]:
    """Each shop through ``get`` and the wire's strict checks, in the order the batch asks them."""
    out: dict[str, ShopState | ProviderError] = {}
    for sid in sorted(set(ids)):
        try:
            out[sid] = state_from_body(sid, platform.get(sid))
        except PlatformError as e:
            out[sid] = platform_error(e.code, e.sub_code, e.msg, ban_seconds=e.ban_seconds)
        except ProviderError as e:
            out[sid] = e
    return out


def comparable(value: ShopState | ProviderError) -> Any:
    if isinstance(value, ProviderError):
        return ("error", type(value).__name__, str(value), value.code, value.sub_code, value.retryable, value.delay)
    return value


def every(platform: SandboxPlatform) -> list[str]:
    return [*platform.list_shops(), MISSING]


@pytest.mark.parametrize("few", [False, True], ids=["every-shop", "a-few-by-id"])
def test_the_batch_read_equals_get_shop_by_shop(sandboxes: tuple[SandboxPlatform, SandboxPlatform], few: bool) -> None:
    a, b = sandboxes
    ids = [*SHOPS, MISSING] if few else every(a)
    batch = provider(a).read(ids)
    alone = one_by_one(b, ids)
    assert sorted(batch) == sorted(set(ids))
    assert {s: comparable(v) for s, v in batch.items()} == {s: comparable(v) for s, v in alone.items()}
    assert a.dump_world()["faults"] == b.dump_world()["faults"]  # counted down alike

    # and what that is, spelled out
    jst = {sc: Binding(scenario=sc, appkey=JST, revision=1) for sc in Scenario}
    assert batch["100009"] == ShopState(shop_id="100009", name="全绑", bindings=jst, detail_whitelisted=True)
    assert list(batch["100009"].bindings) == sorted(Scenario, key=lambda s: s.value)  # type: ignore[union-attr]
    assert batch["100005"] == ShopState(shop_id="100005", name="菜鸟", buyer_self_service=True, bindings={
        Scenario.intercept_shipment: Binding(scenario=Scenario.intercept_shipment, appkey=WDT, revision=1),
        Scenario.modify_address: Binding(scenario=Scenario.modify_address, appkey="virtualAppKey", revision=1)})
    assert batch["100006"] == ShopState(shop_id="100006", name=None, bindings={
        Scenario.order_status: Binding(scenario=Scenario.order_status, appkey=INHOUSE, revision=1)})
    assert batch["100007"].detail_whitelisted is False  # type: ignore[union-attr]
    assert batch["100008"] == ShopState(shop_id="100008", name="改过", bindings={
        Scenario.intercept_shipment: Binding(scenario=Scenario.intercept_shipment, appkey=INHOUSE, revision=2)})
    errors = {s: (v.sub_code, v.retryable, v.delay) for s, v in batch.items() if isinstance(v, ProviderError)}
    assert errors == {
        "100001": ("isp.remote-service-unavailable", True, None),  # the fault of any shop: the first two asked
        "100002": ("isp.remote-service-unavailable", True, None),
        "100003": ("isv.permission-denied", False, None),
        "100004": ("isp.call-limited", True, 3),
        MISSING: ("isv.shop-not-found", False, None),
    }


def test_a_faulted_shop_is_read_again_until_its_faults_are_spent(tmp_path: Path) -> None:
    a = open_sandbox(tmp_path / "a.db", make_world(fillers=0))
    clean = open_sandbox(tmp_path / "clean.db", make_world(fillers=0, faults=False))
    try:
        read = provider(a, retries=3).read(every(a))
        assert {s: comparable(v) for s, v in read.items()} == {s: comparable(v) for s, v in provider(clean).read(every(a)).items()}
        assert [f["times"] for f in a.dump_world()["faults"]] == [0, 0, None, None]
    finally:
        a.close()
        clean.close()


def test_get_many_answers_the_bodies_get_answers(sandboxes: tuple[SandboxPlatform, SandboxPlatform]) -> None:
    """The gateway's format, unchanged: ``get_many`` (the batch) and ``get`` (the gateway's) agree."""
    a, b = sandboxes
    many = a.get_many([*SHOPS, MISSING])
    for sid, body in many.items():
        try:
            alone: Any = b.get(sid)
        except PlatformError as e:
            alone = e
        if isinstance(body, PlatformError):
            assert isinstance(alone, PlatformError) and (body.sub_code, body.code, body.msg, body.ban_seconds) == \
                (alone.sub_code, alone.code, alone.msg, alone.ban_seconds), sid
        else:
            assert body == alone, sid
    assert list(many) == [*SHOPS, MISSING]
    assert many["100005"] == {
        "shop_id": "100005", "shop_name": "菜鸟", "buyer_self_service": True, "detail_whitelisted": False,
        "bindings": [{"scenario": "intercept_shipment", "appkey": WDT, "revision": 1},
                     {"scenario": "modify_address", "appkey": "virtualAppKey", "revision": 1}],
    }
    with pytest.raises(PlatformError) as refused:
        a.get_many(["100003", "100005"], strict=True)
    assert refused.value.sub_code == "isv.permission-denied"


# --------------------------------------------------------------------------- a database with wrong values

CORRUPT = {  # shop → what is written behind the platform's back
    "100009": "UPDATE bindings SET scenario = 'bogus' WHERE shop_id = '100009' AND scenario = 'modify_address'",
    "100002": "INSERT INTO bindings VALUES ('100002', 'order_status', x'3231333435363738', 1)",   # appkey a blob
    "100005": "UPDATE bindings SET appkey = '' WHERE shop_id = '100005' AND scenario = 'intercept_shipment'",
    "100006": "UPDATE bindings SET appkey = 'None' WHERE shop_id = '100006'",
    "100007": "UPDATE bindings SET revision = 'x' WHERE shop_id = '100007'",
    "100008": "UPDATE bindings SET revision = -1 WHERE shop_id = '100008' AND appkey IS NOT NULL",
    "200001": "UPDATE shops SET name = x'00ff' WHERE shop_id = '200001'",
    "300000": "UPDATE bindings SET revision = 1.5 WHERE shop_id = '300000'",
    "300001": "UPDATE shops SET name = 12 WHERE shop_id = '300001'",   # TEXT affinity stores '12': a fine name
}
UNTYPED = {  # only a table without column types keeps an integer appkey, without a key a second row (made by hand)
    "300002": "UPDATE bindings SET appkey = 21345678 WHERE shop_id = '300002'",
    "300003": "UPDATE bindings SET revision = '1' WHERE shop_id = '300003'",   # text, not the number
    "300004": f"INSERT INTO bindings VALUES ('300004', 'intercept_shipment', '{WDT}', 1)",
}


@pytest.mark.parametrize("untyped", [False, True], ids=["schema", "hand-made-tables"])
def test_wrong_values_fail_their_shop_only(tmp_path: Path, untyped: bool) -> None:
    paths = [tmp_path / "a.db", tmp_path / "b.db"]
    if untyped:
        for path in paths:
            with closing(sqlite3.connect(path)) as db:
                db.execute("CREATE TABLE bindings (shop_id, scenario, appkey, revision)")
                db.execute("CREATE TABLE shops (shop_id TEXT PRIMARY KEY, name, session UNIQUE, buyer_self_service, cs_permission)")
    world = make_world(fillers=10, faults=False)
    a, b = open_sandbox(paths[0], world), open_sandbox(paths[1], world)
    try:
        wrong = {**CORRUPT, **UNTYPED} if untyped else CORRUPT
        for path in paths:
            with closing(sqlite3.connect(path)) as db, db:
                for sql in wrong.values():
                    db.execute(sql)
        batch = provider(a).read(every(a))
        alone = one_by_one(b, every(b))
        failed = {s for s, v in batch.items() if isinstance(v, ProviderError)}
        fine = set() if untyped else {"300001"}  # a typed name column made the number text
        assert failed == set(wrong) - fine | {"100003", MISSING}
        assert failed == {s for s, v in alone.items() if isinstance(v, ProviderError)}  # the wire refuses the same
        for sid in set(wrong) - fine:
            e = batch[sid]
            assert isinstance(e, ProviderError) and not e.retryable, sid
            assert str(e).startswith(f"erp.binding.get: shop {sid} in the sandbox database: "), e
        assert "unknown scenario 'bogus'" in str(batch["100009"])
        assert "the appkey is bytes, not text" in str(batch["100002"])
        assert "not a whole number" in str(batch["100008"])
        if untyped:
            assert "the appkey is int, not text" in str(batch["300002"])
            assert "two bindings for one scenario" in str(batch["300004"])
        # every other shop is read, and as the wire reads it
        assert {s: v for s, v in batch.items() if s not in failed} == {s: v for s, v in alone.items() if s not in failed}
        if not untyped:
            assert batch["300001"].name == "12"  # type: ignore[union-attr]
    finally:
        a.close()
        b.close()


def test_a_read_let_go_early_frees_the_platform(tmp_path: Path) -> None:
    platform = open_sandbox(tmp_path / "a.db", make_world(fillers=10, faults=False))
    try:
        rows = platform.read(platform.list_shops())
        sid, first = next(rows)
        assert not isinstance(first, PlatformError) and first[0] == sid
        rows.close()
        answered: list[object] = []
        other = threading.Thread(target=lambda: answered.append(platform.set_self_service("100002", True, False)))
        other.start()
        other.join(10)
        assert answered == [{"buyer_self_service": True}]
    finally:
        platform.close()


def test_a_read_leaves_the_garbage_collector_as_it_was(tmp_path: Path) -> None:
    platform = open_sandbox(tmp_path / "a.db", make_world(fillers=0, faults=False))
    try:
        assert gc.isenabled()
        provider(platform).read(platform.list_shops())
        assert gc.isenabled()
        gc.disable()
        try:
            provider(platform).read(platform.list_shops())
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        platform.close()
