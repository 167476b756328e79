"""JSON Schemas (draft 2020-12) of the configuration files, for editors and CI.

``reconciler schema --out DIR`` writes one schema per file kind — ``shops``, ``erps``,
``profiles``, ``waivers`` and ``reconciler`` — made from the same pydantic spec models that
``validate`` uses, so the two never disagree about what a key is. Editors that speak the
YAML language server (VS Code's YAML extension, JetBrains, Neovim) complete keys, show each
key's description and mark unknown keys as you type; the schema also knows the scenario
names and, when the configuration directory is readable, its ERP and profile names.

A schema says what the file *looks like*; ``validate`` still decides everything that spans
files (unknown ERPs against the catalog, duplicate shop ids, virtualAppKey placement).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from .specs import ErpsFile, ProfilesFile, Settings, ShopsFile, WaiversFile
from .vocab import WAIVABLE_KINDS

DRAFT = "https://json-schema.org/draft/2020-12/schema"
FILES: dict[str, tuple[type[BaseModel], str]] = {
    "shops": (ShopsFile, "shops/**/*.yaml: the desired ERP bindings of shops"),
    "erps": (ErpsFile, "erps.yaml: the ERP catalog (name → appkey)"),
    "profiles": (ProfilesFile, "profiles.yaml: named bundles of what shops say"),
    "waivers": (WaiversFile, "waivers.yaml: acknowledged problems, each with a reason and an end date"),
    "reconciler": (Settings, "reconciler.yaml: provider, safety, apply and state settings"),
}
# Where each schema applies (globs relative to the config directory), for editor settings.
GLOBS = {"shops": ["shops/**/*.yaml", "shops/**/*.yml"], "erps": ["erps.yaml"], "profiles": ["profiles.yaml"],
         "waivers": ["waivers.yaml"], "reconciler": ["reconciler.yaml"]}

APPKEY_PATTERN = "^([0-9]{1,32}|virtualAppKey)$"
LABEL_KEY_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"

# (model title, field) → what a person needs to know while typing it
DESCRIPTIONS: dict[tuple[str, str], str] = {
    ("ShopsFile", "shops"): "The shops of this file; any number of files under shops/, at any folder depth.",
    ("ShopSpec", "id"): "The platform's shop id: a quoted string of digits, unique across all files.",
    ("ShopSpec", "name"): "The shop's name, shown beside its id (not sent to the platform).",
    ("ShopSpec", "profile"): "A profile of profiles.yaml this shop takes; its own erp, protect and scenarios replace the"
                             " profile's, scenario by scenario.",
    ("ShopSpec", "erp"): "The shop's ERP (a name of erps.yaml): every scenario without its own erp or appkey binds to it.",
    ("ShopSpec", "protect"): "true: never unbind or rotate this shop's bindings without --force.",
    ("ShopSpec", "labels"): "Labels (string keys and values) for --select KEY=VALUE and the reports, e.g. {client: acme}.",
    ("ShopSpec", "scenarios"): "The managed scenarios; an omitted scenario is not managed (left alone, reported by drift).",
    ("ProfileSpec", "erp"): "The ERP of the shops that take this profile, unless a shop says its own.",
    ("ProfileSpec", "protect"): "true: the shops that take this profile are protected, unless a shop says otherwise.",
    ("ProfileSpec", "labels"): "Labels every shop of this profile carries (a shop's own labels are added, and win).",
    ("ProfileSpec", "scenarios"): "The scenarios the shops of this profile manage; a shop's own scenario replaces one whole.",
    ("ProfilesFile", "profiles"): "Profile name → what shops that say `profile: NAME` take.",
    ("ScenariosSpec", "intercept_shipment"): "拦截发货: the ERP is asked to stop shipping an order. {} binds it to the shop's ERP.",
    ("ScenariosSpec", "modify_address"): "修改地址: a buyer's changed address is sent to the ERP. Cainiao warehouses: erp"
                                         " whose appkey is virtualAppKey.",
    ("ScenariosSpec", "order_status"): "ERP订单状态: the ERP's order status is shown to customer service.",
    ("ScenarioSpec", "erp"): "The ERP of this scenario (a name of erps.yaml), instead of the shop's.",
    ("ScenarioSpec", "appkey"): "A literal appkey (a quoted string of digits, or virtualAppKey for modify_address).",
    ("ScenarioSpec", "state"): "unbound: the scenario must not be bound (it is unbound when found bound).",
    ("ModifyAddressSpec", "buyer_self_service"): "Buyers change the address themselves (also configure the automation"
                                                 " task 自动核单/自助核单).",
    ("OrderStatusSpec", "erp_detail_button"): "Expect the whitelist-only ERP详情 button: checked and reported, never set.",
    ("ErpsFile", "erps"): "ERP name → its display name and appkey.",
    ("ErpSpec", "name"): "The ERP's display name (聚水潭, 旺店通…).",
    ("ErpSpec", "appkey"): "The ERP's appkey, quoted (usually 8 digits), or virtualAppKey for Cainiao warehouses.",
    ("WaiversFile", "waivers"): "Acknowledged problems: shown with severity waived, failing neither plan nor drift until"
                                " their date.",
    ("WaiverSpec", "shop"): "The shop id the problem is about.",
    ("WaiverSpec", "scenario"): "Only this scenario's problem (leave out: any scenario of the shop).",
    ("WaiverSpec", "kind"): "The kind of problem acknowledged (a plan problem kind or a drift finding kind).",
    ("WaiverSpec", "until"): "The last day the waiver holds (inclusive, China time, UTC+8), like 2027-01-31.",
    ("WaiverSpec", "reason"): "Why the problem is acceptable until then: who decided, which ticket.",
}


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


_SCENARIO_SPECS = ("ScenarioSpec", "InterceptSpec", "ModifyAddressSpec", "OrderStatusSpec")


def _describe(defs: Mapping[str, Any]) -> None:
    for title, d in defs.items():
        for name, prop in d.get("properties", {}).items():
            said = DESCRIPTIONS.get((title, name))
            if said is None and title in _SCENARIO_SPECS:
                said = DESCRIPTIONS.get(("ScenarioSpec", name))
            if said is not None:
                prop["description"] = said
            prop.pop("title", None)


def _string_enum(prop: dict[str, Any], values: Sequence[str]) -> None:
    """Give the string branch of a property (``str`` or ``str | None``) an enum."""
    branches = prop.get("anyOf", [prop])
    for b in branches:
        if b.get("type") == "string":
            b["enum"] = sorted(values)


def _string_pattern(prop: dict[str, Any], pattern: str) -> None:
    for b in prop.get("anyOf", [prop]):
        if b.get("type") == "string":
            b["pattern"] = pattern


def schema_of(kind: str, *, erps: Sequence[str] = (), profiles: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON Schema of one file kind; ``erps``/``profiles``: the names the configuration defines."""
    model, title = FILES[kind]
    s = model.model_json_schema(mode="validation")
    defs: dict[str, Any] = s.setdefault("$defs", {})
    _describe({**defs, model.__name__: s})
    for name, d in defs.items():
        props = d.get("properties", {})
        if name in (*_SCENARIO_SPECS, "ShopSpec", "ProfileSpec") and "erp" in props and erps:
            _string_enum(props["erp"], erps)
        if "appkey" in props:
            _string_pattern(props["appkey"], APPKEY_PATTERN)
        if name == "ShopSpec" and profiles:
            _string_enum(props["profile"], profiles)
        if "labels" in props:
            props["labels"]["propertyNames"] = {"pattern": LABEL_KEY_PATTERN}
            props["labels"]["additionalProperties"] = {"type": "string", "minLength": 1, "maxLength": 200}
        if name == "WaiverSpec":
            props["kind"]["enum"] = list(WAIVABLE_KINDS)
            props["reason"]["minLength"] = 1
            props["reason"]["pattern"] = "\\S"
    for node in _walk(s):
        if node.get("title") in defs or node.get("title") == model.__name__:
            node.pop("title", None)
    return {"$schema": DRAFT, "$id": f"https://reconciler.invalid/schemas/{kind}.schema.json", "title": title,
            "description": f"{title}. Written by `reconciler schema`; `reconciler validate` checks the rest.", **s}


def all_schemas(*, erps: Sequence[str] = (), profiles: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    return {kind: schema_of(kind, erps=erps, profiles=profiles) for kind in FILES}


def to_json(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


