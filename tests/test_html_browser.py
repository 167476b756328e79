"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``) opens the page
from disk, and the tests look at the rendered DOM: the counts match the JSON of the same
plan or audit, the filter hides rows, a bar of a chart filters by its ERP, a hostile shop name
runs nothing, the page requests nothing but itself, no script error reaches the console, and
it fits a phone's width. Each test saves a screenshot.

Without Chromium these tests fail, saying what to install (``.ci/run`` installs it);
RECONCILER_TEST_NO_BROWSER=1 skips them instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import NO_BROWSER_ENV, Browser, BrowserNotFound, find_chromium
from conftest import ERPS, Agency

EVIL = "<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script>"
SHOPS = f"""\
shops:
  - id: "100001"
    name: {EVIL!r}
    erp: jushuitan
    scenarios: {{intercept_shipment: {{}}, modify_address: {{buyer_self_service: true}}, order_status: {{}}}}
  - id: "100002"
    name: 二号店
    erp: jushuitan
    scenarios: {{intercept_shipment: {{}}, modify_address: {{}}}}
  - id: "100003"
    name: 三号店
    erp: wangdiantong
    scenarios: {{intercept_shipment: {{}}, order_status: {{}}}}
  - id: "100004"
    name: 四号店
    erp: inhouse
    scenarios: {{intercept_shipment: {{}}}}
  - id: "100005"
    name: 五号店
    erp: inhouse
    scenarios: {{intercept_shipment: {{}}, modify_address: {{}}}}
"""
WORLD: dict[str, Any] = {
    "100001": {"name": EVIL},
    "100002": {"bindings": {"intercept_shipment": "12345679", "modify_address": "12345679"}},
    "100003": {},
    "100004": {"bindings": {"intercept_shipment": "31415926"}},
    "100005": {"bindings": {"intercept_shipment": "21345678", "order_status": "21345678"}},
    "200001": {"name": "不在配置里"},
}
VISIBLE = "Array.from(document.querySelectorAll('#shops tbody tr')).filter(r => !r.hidden).map(r => r.cells[0].textContent)"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if os.environ.get(NO_BROWSER_ENV) == "1":
        pytest.skip(f"{NO_BROWSER_ENV}=1: the browser tests are skipped")
    try:
        find_chromium()
        missing = ""
    except BrowserNotFound as e:
        missing = str(e)
    if missing:
        pytest.fail(f"{missing}. The HTML report is tested in headless Chromium: install Debian's chromium package"
                    f" (.ci/run does it when missing), or set {NO_BROWSER_ENV}=1 to skip these tests.", pytrace=False)
    with Browser.start(tmp_path_factory.mktemp("chromium-profile")) as b:
        yield b


@pytest.fixture
def shops(tmp_path: Path) -> Iterator[Agency]:
    a = Agency(tmp_path / "configs", "sandbox")
    a.write("erps.yaml", ERPS)
    a.shops(SHOPS)
    a.world(WORLD)
    try:
        yield a
    finally:
        a.close()


def load(browser: Browser, html: str, path: Path) -> None:
    path.write_text(html, encoding="utf-8")
    browser.events.clear()
    browser.resize(1280, 900)
    browser.open(path)


def totals(browser: Browser) -> dict[str, int]:
    found: dict[str, int] = browser.eval(
        "Object.fromEntries(Array.from(document.querySelectorAll('[data-total]')).map(e => [e.dataset.total, +e.dataset.n]))")
    return found


def shown(browser: Browser) -> int:
    return int(browser.eval("document.getElementById('shown').textContent"))


def assert_clean_page(browser: Browser, path: Path) -> None:
    assert browser.errors() == []                                   # no script error, no CSP violation
    assert browser.requests() == [path.resolve().as_uri()]          # nothing but the page itself
    assert browser.eval("typeof window.__pwned") == "undefined"     # the hostile name ran nothing
    assert browser.eval("document.querySelectorAll('img, iframe, object, embed, link').length") == 0
    assert browser.eval("document.scripts.length") == 1


def test_the_plan_page_in_a_browser(browser: Browser, shops: Agency, tmp_path: Path) -> None:
    data = json.loads(shops.run("plan", "--format", "json").stdout)
    page = tmp_path / "plan.html"
    load(browser, shops.run("plan", "--format", "html").stdout, page)
    assert_clean_page(browser, page)

    # the counts match the JSON of the same plan
    t = totals(browser)
    assert {k: t[k] for k in data["summary"]} == data["summary"]
    assert t["errors"] == sum(1 for p in data["problems"] if p["severity"] == "error")
    listed = sorted({c["shop"] for c in data["changes"]} | {p["shop"] for p in data["problems"] if p["shop"]})
    rows = browser.eval(VISIBLE)
    assert [r.split(" ")[0] for r in rows] == listed
    assert shown(browser) == len(listed)
    assert EVIL in rows[0]                                          # the name, shown as text

    # the filter hides rows: by id, by name, by ERP; the status filter; nothing matching
    browser.type_into("#q", "100003")
    assert [r.split(" ")[0] for r in browser.eval(VISIBLE)] == ["100003"] and shown(browser) == 1
    browser.clear("#q")
    browser.type_into("#q", "二号店")
    assert [r.split(" ")[0] for r in browser.eval(VISIBLE)] == ["100002"]
    browser.clear("#q")
    browser.type_into("#q", "inhouse")
    assert [r.split(" ")[0] for r in browser.eval(VISIBLE)] == ["100005"]   # 100004 needs no change: not listed
    assert browser.eval("document.getElementById('none').hidden") is True
    browser.type_into("#q", " nothing-like-this")
    assert browser.eval(VISIBLE) == [] and shown(browser) == 0
    assert browser.eval("document.getElementById('none').hidden") is False
    browser.clear("#q")
    withheld = sorted({p["shop"] for p in data["problems"] if p["severity"] == "error" and p["shop"]})
    browser.eval("(() => { const s = document.getElementById('st'); s.value = 'withheld';"
                 " s.dispatchEvent(new Event('change')); })()")
    assert [r.split(" ")[0] for r in browser.eval(VISIBLE)] == withheld == ["100003"]
    browser.eval("(() => { const s = document.getElementById('st'); s.value = '';"
                 " s.dispatchEvent(new Event('change')); })()")
    assert shown(browser) == len(listed)

    # a bar of "Changes by ERP" filters the table by its ERP
    browser.eval("document.querySelector('.bar[data-f=\"jushuitan\"]').click()")
    assert browser.eval("document.getElementById('q').value") == "jushuitan"
    # a change counts for the ERP it binds or rotates to (an unbind: the ERP it leaves)
    with_jushuitan = sorted({c["shop"] for c in data["changes"]
                             if (c["after"].get("appkey") or c["before"].get("appkey")) == "21345678"})
    assert [r.split(" ")[0] for r in browser.eval(VISIBLE)] == with_jushuitan
    browser.clear("#q")

    # each shop's changes with their why
    browser.eval("document.querySelectorAll('#shops details')[0].open = true")
    first = browser.eval("document.querySelector('#shops details').textContent")
    assert "intercept_shipment bind jushuitan (21345678)" in first and "config says erp jushuitan" in first
    png = browser.screenshot(tmp_path / "plan.png", full_page=True)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert browser.errors() == []


def test_the_drift_page_in_a_browser(browser: Browser, shops: Agency, tmp_path: Path) -> None:
    data = json.loads(shops.run("drift", "--format", "json").stdout)
    page = tmp_path / "drift.html"
    r = shops.run("drift", "--format", "markdown", "--html", str(page))
    assert r.exit_code == 2, r.output
    browser.events.clear()
    browser.resize(1280, 900)
    browser.open(page)
    assert_clean_page(browser, page)
    s = data["summary"]
    t = totals(browser)
    assert (t["shops"], t["with_findings"], t["drift"], t["unmanaged"], t["broken"], t["unknown-shop"], t["error"]) == (
        s["shops"], s["shops_with_findings"], s["drift"], s["unmanaged"], s["broken"], s["unknown_shops"], s["errors"])
    assert [r.split(" ")[0] for r in browser.eval(VISIBLE)] == [x["id"] for x in data["shops"]]
    browser.eval("(() => { const s = document.getElementById('st'); s.value = 'clean';"
                 " s.dispatchEvent(new Event('change')); })()")
    assert [r.split(" ")[0] for r in browser.eval(VISIBLE)] == [x["id"] for x in data["shops"] if x["status"] == "clean"]
    assert shown(browser) == sum(1 for x in data["shops"] if x["status"] == "clean")
    assert "200001" in browser.eval("document.querySelector('.unknown').textContent")
    browser.screenshot(tmp_path / "drift.png", full_page=True)
    assert browser.errors() == []


def test_the_page_fits_a_phone(browser: Browser, shops: Agency, tmp_path: Path) -> None:
    page = tmp_path / "plan.html"
    load(browser, shops.run("plan", "--format", "html").stdout, page)
    browser.resize(390, 844, mobile=True)
    assert browser.eval("document.documentElement.scrollWidth <= window.innerWidth")
    assert browser.eval("getComputedStyle(document.querySelector('#shops thead')).display") == "none"
    widths = browser.eval("Array.from(document.querySelectorAll('#shops tbody tr'))"
                          ".map(r => r.getBoundingClientRect().right)")
    assert widths and max(widths) <= 390
    browser.type_into("#q", "100002")
    assert shown(browser) == 1
    browser.screenshot(tmp_path / "phone.png")
    assert browser.errors() == []
