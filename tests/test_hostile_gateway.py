"""The top provider against a lying, hostile gateway (``tests/hostile.py``), through the real
``reconciler`` command in a subprocess (a hang fails on its timeout, a crash shows as a
traceback; a few variants call the provider itself): every malformed answer is a clear error
of that shop — or one message for the run when the gateway as a whole misbehaves — and a
platform whose write answer cannot be believed is put back as it was.

Each test plays one class of hostility with several variants, most of them as several shops
of one run (one shop per variant, plus an honest shop that must come through untouched).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from clikit import Done, cli_env, command
from conftest import APP_SECRET
from hostile import FakePlatform, HostileGateway, Reply, gzip_bomb, gzipped, ok, raw

from reconciler.errors import FatalProviderError, ProviderError
from reconciler.providers.base import RetryPolicy
from reconciler.providers.top import TopProvider

OLD, NEW = "31415926", "21345678"
HONEST = "100001"
BOTH = ("intercept_shipment", "modify_address")
GET = "erp.binding.get"
BIND = "erp.binding.bind"


def write_agency(root: Path, url: str, shops: Sequence[str], *, provider: Mapping[str, Any] | None = None,
                 apply: str = "{retries: 0}", scenarios: str = "{intercept_shipment: {}, modify_address: {}}") -> Path:
    cfg = root / "configs"
    (cfg / "shops").mkdir(parents=True)
    (cfg / "erps.yaml").write_text(f'erps:\n  jushuitan: {{name: 聚水潭, appkey: "{NEW}"}}\n'
                                   f'  inhouse: {{name: 自研, appkey: "{OLD}"}}\n', encoding="utf-8")
    (cfg / "shops" / "a.yaml").write_text("shops:\n" + "".join(
        f'  - id: "{s}"\n    erp: jushuitan\n    scenarios: {scenarios}\n' for s in shops), encoding="utf-8")
    (cfg / "sessions.yaml").write_text(yaml.safe_dump({s: f"sess-{s}" for s in shops}), encoding="utf-8")
    settings = {"kind": "top", "url": url, "app_key": "30000001", "app_secret_env": "RECONCILER_APP_SECRET",
                "sessions_file": "sessions.yaml", "qps": 1000, "parallelism": 4, "timeout_s": 10, **(provider or {})}
    (cfg / "reconciler.yaml").write_text(f"provider: {json.dumps(settings)}\napply: {apply}\n", encoding="utf-8")
    return cfg


def run(cfg: Path, *args: str, timeout: float = 30) -> tuple[Done, float, float]:
    """``reconciler -C cfg ARGS`` in a subprocess: what it said, its wall time and its peak RSS (MiB)."""
    measure = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]);"
               " print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-c", measure, *command(), "-C", str(cfg), *args], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, env=cli_env(), timeout=timeout, check=False)
    took = time.monotonic() - start
    err, _, rss = p.stderr.rstrip("\n").rpartition("\n")
    assert "Traceback" not in p.stdout + err, p.stdout + err
    return Done(p.returncode, p.stdout, err, 0), took, int(rss) / 1024  # ru_maxrss: KiB on Linux


def on_old(shops: Sequence[str]) -> FakePlatform:
    return FakePlatform({s: dict.fromkeys(BOTH, OLD) for s in shops}, apps=(OLD, NEW))


def shop_lines(text: str, shop: str) -> str:
    return "\n".join(line for line in text.splitlines() if shop in line)


@pytest.fixture
def gateway() -> Iterator[HostileGateway]:
    with HostileGateway({}) as gw:
        yield gw


# --------------------------------------------------------------------------- issue 9.3: answers of the wrong shape


def _get(shop: str, **change: Any) -> tuple[int, bytes]:
    body = {"shop_id": shop, "shop_name": "店", "bindings": [{"scenario": s, "appkey": OLD, "revision": 1} for s in BOTH],
            "buyer_self_service": False, "detail_whitelisted": False, **change}
    return ok(GET, body)


READ_LIES: dict[str, tuple[Any, str]] = {   # shop → (its get answer, what the error says)
    "100002": (lambda s: _get(s, buyer_self_service="false"), "buyer_self_service: input should be a valid boolean"),
    "100003": (lambda s: _get(s, bindings=[f"intercept_shipment:{OLD}"]), "bindings.0: input should be a valid dictionary"),
    "100004": (lambda s: _get(s, bindings=[{"scenario": "intercept_shipment", "appkey": OLD, "revision": "3"}]),
               "revision: input should be a valid integer"),
    "100005": (lambda s: _get(s, shop_id=int(s)), "shop_id: input should be a valid string"),
    "100006": (lambda s: _get(s, bindings=None), "bindings: input should be a valid list"),
    "100007": (lambda s: _get(s, detail_whitelisted=None), "detail_whitelisted: input should be a valid boolean"),
    "100008": (lambda s: _get(s, bindings=[{"scenario": "intercept_shipment", "appkey": f"{OLD}\n", "revision": 1}]),
               "bindings.0.appkey: string should match pattern '^(?:[0-9]{1,32}|virtualAppKey)$' (got '31415926\\n')"),
    "100009": (lambda s: _get("100001"), "answered for shop '100001' when asked for 100009; check the session key"),
    "100010": (lambda s: ok(GET, []), "erp_binding_get_response is a list, not an object"),
    "100011": (lambda s: raw(b'{"erp_binding_get_response": {"shop_id": "100011"'), "not JSON"),
    # a gateway that quotes secrets back: never shown
    "100012": (lambda s: _get(s, buyer_self_service=f"sess-{s}"), "buyer_self_service: input should be a valid boolean (got '***')"),
    "100013": (lambda s: _get(s, shop_id=f"{APP_SECRET} sess-100001"), "answered for shop '*** ***' when asked for 100013"),
}


def test_read_answers_of_the_wrong_shape_fail_their_shop_alone(tmp_path: Path, gateway: HostileGateway) -> None:
    """``exists: "false"``-style answers: a boolean as a string, a list of strings for bindings,
    numbers as strings, another shop's answer… each withholds its shop with a clear error; the
    honest shop is planned as usual."""
    shops = [HONEST, *READ_LIES]
    fake = on_old(shops)
    gateway.script = fake.scripts({GET: lambda p, honest: READ_LIES[p["shop_id"]][0](p["shop_id"])
                                   if p["shop_id"] in READ_LIES else honest})
    cfg = write_agency(tmp_path, gateway.url, shops)
    r, _, _ = run(cfg, "plan")
    assert r.code == 1, r.text
    for shop, (_, why) in READ_LIES.items():
        line = shop_lines(r.text, shop)
        assert "cannot read the shop" in line and why in line, (shop, line)
    assert APP_SECRET not in r.text and "sess-1000" not in r.text
    assert r.out.startswith(f"  # shop {HONEST}\n  ~ intercept_shipment  rotate") and "2 to rotate" in r.out, r.out
    assert fake.snapshot() == on_old(shops).snapshot()


CHECK_LIES: dict[str, tuple[dict[str, Any], str]] = {  # appkey → (its check's answer, what the error says)
    "40000001": ({"exists": "false", "integrated": "false"}, "exists: input should be a valid boolean (got 'false')"),
    "40000002": ({"exists": True, "integrated": "true"}, "integrated: input should be a valid boolean (got 'true')"),
    "40000003": ({"exists": False, "integrated": True}, "an app that does not exist cannot have integrated"),
    "40000004": ({"exists": 1, "integrated": 1, "name": 5}, "exists: input should be a valid boolean (got 1)"),
    "40000005": ({"integrated": False}, "exists: field required"),
}


def test_app_check_answers_of_the_wrong_shape_are_not_believed(tmp_path: Path, gateway: HostileGateway) -> None:
    """A check of an appkey whose answer is mistyped is an error of the shops that need it —
    never read as "exists" (a string "false" is true in Python) — and withholds them whole."""
    shops = [HONEST, *(str(100002 + i) for i in range(len(CHECK_LIES)))]
    fake = FakePlatform({s: {} for s in shops}, apps=(NEW, *CHECK_LIES))
    gateway.script = fake.scripts({"erp.app.check": lambda p, honest: ok("erp.app.check", CHECK_LIES[p["appkey"]][0])
                                   if p["appkey"] in CHECK_LIES else honest})
    cfg = write_agency(tmp_path, gateway.url, [HONEST])
    (cfg / "erps.yaml").write_text(f'erps:\n  jushuitan: {{appkey: "{NEW}"}}\n'
                                   + "".join(f'  v{k}: {{appkey: "{k}"}}\n' for k in CHECK_LIES), encoding="utf-8")
    (cfg / "shops" / "a.yaml").write_text("shops:\n" + "".join(
        f'  - id: "{shop}"\n    erp: {erp}\n    scenarios: {{intercept_shipment: {{}}}}\n'
        for shop, erp in zip(shops, ["jushuitan", *(f"v{k}" for k in CHECK_LIES)], strict=True)), encoding="utf-8")
    (cfg / "sessions.yaml").write_text(yaml.safe_dump({s: f"sess-{s}" for s in shops}), encoding="utf-8")
    r, _, _ = run(cfg, "plan")
    assert r.code == 1, r.text
    for shop, (appkey, (_, why)) in zip(shops[1:], CHECK_LIES.items(), strict=True):
        line = shop_lines(r.out, f"{shop} intercept_shipment")
        assert f"cannot check appkey v{appkey} ({appkey}): erp.app.check: unexpected answer" in line and why in line, line
        assert f"{shop}: 1 change(s) of this shop withheld" in r.out
    assert "1 to bind" in r.out and "5 error(s)" in r.out, r.out  # the honest shop only


WRITE_LIES: dict[str, tuple[Any, str]] = {  # shop → (its forward modify_address bind's answer, what the error says)
    "100002": (lambda p: ok(BIND, {"scenario": "modify_address", "appkey": "99999999", "revision": 2}),
               "asked to bind modify_address to 21345678, the platform answered modify_address = 99999999"),
    "100003": (lambda p: raw(b""), "the answer is empty; the write counts as failed"),
    "100004": (lambda p: ok(BIND, {}), "scenario: field required"),
    "100005": (lambda p: ok(BIND, {"scenario": "modify_address", "appkey": NEW, "revision": "2"}),
               "revision: input should be a valid integer"),
    "100006": (lambda p: ok(BIND, {"scenario": "order_status", "appkey": NEW, "revision": 2}),
               "the platform answered order_status = 21345678"),
    "100007": (lambda p: raw(b'{"ok": true}'), "no erp_binding_bind_response object"),
    "100008": (lambda p: raw(b"null"), "not a JSON object but null"),
}


def test_a_write_answer_that_does_not_confirm_fails_the_shop_and_puts_it_back(tmp_path: Path,
                                                                            gateway: HostileGateway) -> None:
    """The platform did the write, but answered with another appkey, nothing, an empty object,
    a revision as a string…: the write is a failure of that shop (never "Apply complete"), its
    outcome unknown, so apply puts it back too: each such shop ends exactly as it was."""
    shops = [HONEST, *WRITE_LIES]
    fake = on_old(shops)

    def lie(p: dict[str, str], honest: tuple[int, bytes]) -> Any:
        forward = p["scenario"] == "modify_address" and p["appkey"] == NEW
        return WRITE_LIES[p["shop_id"]][0](p) if forward and p["shop_id"] in WRITE_LIES else honest

    gateway.script = fake.scripts({BIND: lie})
    cfg = write_agency(tmp_path, gateway.url, shops)
    r, _, _ = run(cfg, "apply", "--auto-approve", "--force")
    assert r.code == 3, r.text  # the honest shop applied, every other one failed whole
    held = fake.snapshot()
    assert held[HONEST] == dict.fromkeys(BOTH, NEW)
    for shop, (_, why) in WRITE_LIES.items():
        assert held[shop] == dict.fromkeys(BOTH, OLD), (shop, held[shop])
        assert f"Shop {shop}: FAILED at modify_address rotate" in r.out, r.out
        assert why in r.out, (shop, why)
    assert "Apply complete" not in r.out and "ROLLBACK FAILED" not in r.out


def test_unbind_and_self_service_answers_that_do_not_confirm_are_failures_too(tmp_path: Path,
                                                                             gateway: HostileGateway) -> None:
    shops = [HONEST, "100002", "100003"]
    fake = on_old(shops)
    for shop in shops:
        fake.bindings[shop]["order_status"] = OLD
        fake.revisions[(shop, "order_status")] = 1

    def unbind(p: dict[str, str], honest: tuple[int, bytes]) -> Any:
        return ok("erp.binding.unbind", {"scenario": "order_status", "appkey": OLD, "revision": 9}) \
            if p["shop_id"] == "100002" and p["expected_appkey"] == OLD else honest

    def selfservice(p: dict[str, str], honest: tuple[int, bytes]) -> Any:
        return ok("erp.selfservice.set", {"buyer_self_service": "true"}) \
            if p["shop_id"] == "100003" and p["enabled"] == "true" else honest

    gateway.script = fake.scripts({"erp.binding.unbind": unbind, "erp.selfservice.set": selfservice})
    cfg = write_agency(tmp_path, gateway.url, shops, scenarios="{intercept_shipment: {}, modify_address: "
                       "{buyer_self_service: true}, order_status: {state: unbound}}")
    r, _, _ = run(cfg, "apply", "--auto-approve", "--force")
    assert r.code == 3, r.text
    held = fake.snapshot()
    assert held[HONEST] == dict.fromkeys(BOTH, NEW) and fake.self_service[HONEST]
    for shop in ("100002", "100003"):
        assert held[shop] == {**dict.fromkeys(BOTH, OLD), "order_status": OLD}, (shop, held[shop])
        assert not fake.self_service[shop]
    assert "asked to unbind order_status, the platform answered order_status = 31415926" in r.out
    assert "buyer_self_service: input should be a valid boolean" in r.out


# --------------------------------------------------------------------------- issue 9.5: hostile bodies


BODIES: dict[str, tuple[Any, str]] = {  # shop → (its get answer, what the error says)
    "100002": (lambda s: raw(b'{"erp_binding_get_response": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"),
               "nests deeper than 32 levels"),
    "100003": (lambda s: raw(_get(s)[1].replace(b'"revision": 1', b'"revision": ' + b"7" * 5000, 1)), "a number of 5000 digits"),
    "100004": (lambda s: raw(_get(s)[1].replace(b'"revision": 1', b'"revision": 1e999', 1)), "out of range"),
    "100005": (lambda s: raw(_get(s)[1].replace(b'"revision": 1', b'"revision": NaN', 1)), "NaN, which is not a JSON number"),
    "100006": (lambda s: _get(s, shop_name="店" * (1 << 20)), "larger than 2048 KiB"),
    "100007": (lambda s: Reply(200, b'{"erp_binding_get_response": {"shop_name": "', endless=b"x" * 65536),
               "larger than 2048 KiB"),
    "100008": (lambda s: gzip_bomb(1 << 30), "larger than 2048 KiB"),
    "100009": (lambda s: Reply(200, b"{}", headers=[("Content-Encoding", "br")]), "is not gzip or deflate"),
    "100010": (lambda s: Reply(200, b"{}", length=50 << 20), "larger than 2048 KiB"),  # a Content-Length to fear
    "100011": (lambda s: raw(b"\xff\xfe" + _get(s)[1]), "not UTF-8"),
    "100012": (lambda s: gzipped(_get(s), times=2), ""),   # legitimate, if odd: read normally
}


def test_hostile_bodies_are_refused_unread_and_memory_stays_bounded(tmp_path: Path, gateway: HostileGateway) -> None:
    """Deep nesting, 5,000-digit and infinite numbers, NaN, 3 MB and endless bodies, a 1 GiB
    gzip bomb, an encoding not asked for, a lying Content-Length, non-UTF-8: each shop's error,
    promptly, with the process far from holding any such body in memory."""
    shops = [HONEST, *BODIES]
    fake = on_old(shops)
    gateway.script = fake.scripts({GET: lambda p, honest: BODIES[p["shop_id"]][0](p["shop_id"])
                                   if p["shop_id"] in BODIES else honest})
    cfg = write_agency(tmp_path, gateway.url, shops)
    r, took, rss_mib = run(cfg, "plan", timeout=60)
    assert r.code == 1, r.text
    for shop, (_, why) in BODIES.items():
        line = shop_lines(r.text, shop)
        if why:
            assert "cannot read the shop" in line and why in line, (shop, line)
        else:
            assert "cannot read" not in line, line
    assert took < 20, took
    assert rss_mib < 250, rss_mib   # a bomb inflated, or 2e5 nested lists built, would be far above


# --------------------------------------------------------------------------- issue 9.4: waits that end


SLOW: dict[str, Any] = {  # shop → its get answer: each never completes within the deadline
    "100002": lambda s: Reply(*_get(s), every_s=0.05),                        # the body a byte at a time
    "100003": lambda s: Reply(*_get(s), every_s=0.05, trickle_headers=True),  # the headers too
    "100004": lambda s: Reply(*_get(s), delay_s=30),                          # nothing at all
    "100005": lambda s: Reply(200, b'{"erp_binding_get_response": {"shop_name": "', endless=b"x", every_s=0.01),
}


def test_every_request_ends_by_its_deadline_however_slowly_the_gateway_trickles(tmp_path: Path,
                                                                               gateway: HostileGateway) -> None:
    """The read timeout (5 s here) never trips on a byte every 50 ms; the whole-request deadline
    (0.5 s) does, for each shop alone, and the honest shop is read as usual."""
    shops = [HONEST, *SLOW]
    fake = on_old(shops)
    gateway.script = fake.scripts({GET: lambda p, honest: SLOW[p["shop_id"]](p["shop_id"]) if p["shop_id"] in SLOW
                                   else honest})
    cfg = write_agency(tmp_path, gateway.url, shops, provider={"deadline_s": 0.5, "timeout_s": 5, "parallelism": 5})
    r, took, _ = run(cfg, "plan")
    assert r.code == 1, r.text
    for shop in SLOW:
        line = shop_lines(r.out, shop)
        assert "no complete answer within the deadline of 0.5 s (provider.deadline_s)" in line, line
    assert r.out.startswith(f"  # shop {HONEST}\n  ~ intercept_shipment  rotate"), r.out
    assert took < 8, took


@pytest.mark.parametrize("answer", [
    Reply(delay_s=30),                              # never answers
    Reply(drop=True),                               # hangs up
    Reply(503, b"<html>Service Unavailable</html>"),  # a proxy in front of a dead gateway
], ids=["silent", "hangs-up", "http-503"])
def test_the_circuit_breaker_stops_the_run_after_consecutive_failures(tmp_path: Path, gateway: HostileGateway,
                                                                     answer: Reply) -> None:
    """20 shops, 3 retries each: without the breaker, every shop would wait out its retries.
    With ``max_failures: 4`` the run stops after 4 requests in a row got no answer, with one
    message, and sends nothing more."""
    shops = [str(100001 + i) for i in range(20)]
    gateway.script = {GET: lambda p: answer}
    cfg = write_agency(tmp_path, gateway.url, shops, provider={"deadline_s": 0.3, "max_failures": 4, "parallelism": 2},
                       apply="{retries: 3, backoff_s: 0, max_backoff_s: 0}")
    r, took, _ = run(cfg, "plan")
    assert r.code == 1, r.text
    [line] = r.err.splitlines()
    assert line.startswith("Error: erp.binding.get: ") and line.endswith(
        "that is 4 requests in a row without an answer: the run stops (provider.max_failures)"), line
    assert gateway.calls[GET] <= 4 + 2, gateway.calls  # the 4, and at most one more in flight per worker
    assert took < 8, took


def _banned(seconds: str) -> tuple[int, bytes]:
    return 200, json.dumps({"error_response": {"code": 7, "msg": "App Call Limited", "sub_code": "isp.call-limited",
                                               "sub_msg": f"This ban will last for {seconds} more seconds"}}).encode()


def test_a_ban_longer_than_max_ban_s_stops_the_run_at_once(tmp_path: Path, gateway: HostileGateway) -> None:
    shops = [str(100001 + i) for i in range(10)]
    gateway.script = {GET: lambda p: _banned("86400")}
    cfg = write_agency(tmp_path, gateway.url, shops, apply="{retries: 4}")
    r, took, _ = run(cfg, "plan")
    assert r.code == 1, r.text
    [line] = r.err.splitlines()
    assert "banned the app for 86400 s, longer than provider.max_ban_s (300 s): the run stops; try again after the ban" \
        in line, line
    assert took < 8 and gateway.calls[GET] <= 4 + 1, (took, gateway.calls)


@pytest.mark.parametrize(("ban", "max_ban_s", "said"), [
    ("9" * 400, 300, "banned the app for an unbounded time, longer than provider.max_ban_s (300 s)"),
    ("10", 3, "banned the app for 10 s, longer than provider.max_ban_s (3 s)"),
    ("1", 2, ""),  # within the cap: waited out, then read
])
def test_bans_against_max_ban_s(gateway: HostileGateway, ban: str, max_ban_s: float, said: str) -> None:
    fake = on_old([HONEST])
    answers = [_banned(ban)]
    gateway.script = fake.scripts({GET: lambda p, honest: answers.pop() if answers else honest})
    p = TopProvider(url=gateway.url, app_key="30000001", secret=APP_SECRET, sessions={HONEST: "sess-100001"},
                    max_ban_s=max_ban_s, retry=RetryPolicy(retries=2, backoff_s=0))
    start = time.monotonic()
    try:
        if said:
            with pytest.raises(FatalProviderError, match=re.escape(said)):
                p.read([HONEST])
            assert gateway.calls[GET] == 1 and time.monotonic() - start < 1
        else:
            state = p.read([HONEST])[HONEST]
            assert not isinstance(state, ProviderError) and gateway.calls[GET] == 2
            assert time.monotonic() - start >= 1
    finally:
        p.close()


def test_the_environment_s_proxy_is_still_used(gateway: HostileGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline transport takes only the direct route: a gateway behind HTTP_PROXY is still
    reached through it (here the hostile gateway plays the proxy of a host that does not exist)."""
    fake = on_old([HONEST])
    gateway.script = fake.scripts()
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", gateway.url.removesuffix("/router/rest"))
    p = TopProvider(url="http://gateway.example.invalid/router/rest", app_key="30000001", secret=APP_SECRET,
                    sessions={HONEST: "sess-100001"}, retry=RetryPolicy(retries=0))
    try:
        state = p.read([HONEST])[HONEST]
    finally:
        p.close()
    assert not isinstance(state, ProviderError), state
    assert gateway.calls[GET] == 1
