"""Import: the platform's actual bindings of shops → a ``shops/*.yaml`` file (onboarding).

Pure: takes the states the provider read and the ERP catalog, returns YAML text in the
format ``validate`` accepts, such that a plan over it shows no changes:

* appkeys map back to the catalog's ERP names (an appkey the catalog does not know is
  written as a literal ``appkey:`` with a comment saying so);
* the most common ERP of a shop's scenarios becomes the shop's ``erp:`` (ties: the ERP of
  the first scenario in the usual order; a ``virtualAppKey`` ERP is never the shop's ERP,
  it only serves ``modify_address``), and scenarios on it are written as ``{}``;
* ``buyer_self_service`` is written on ``modify_address``; ``erp_detail_button: true``
  on ``order_status`` when the platform shows the shop's ERP-detail button (whitelisted),
  so a later loss of the whitelist is reported;
* unbound scenarios are left out (not managed), with a comment naming them.

* the shop's ``name`` is written when the platform gives one (``shop_name``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .model import SCENARIOS, VIRTUAL_APPKEY, Erp, Scenario, ShopState, names_by_appkey

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_RESERVED = {"y", "yes", "n", "no", "true", "false", "on", "off", "null"}


# Characters YAML does not allow raw in a double-quoted scalar (JSON leaves them): C1 controls,
# DEL, line/paragraph separators, BOM, lone surrogates.
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff]")


def scalar(text: str) -> str:
    """A YAML scalar that reads back as exactly this string (a double-quoted one whenever the
    text is not a plain word: every quote, backslash, newline and control character escaped)."""
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def scalar_quoted(text: str) -> str:
    """Always quoted (ids and appkeys are strings of digits YAML would read as numbers)."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def comment(text: str) -> str:
    """Text for a YAML comment: one line, no control characters (a newline would end the comment)."""
    return " ".join(_UNSAFE.sub("?", "".join(ch if ch.isprintable() else " " for ch in text)).split())


@dataclass(frozen=True)
class ImportedScenario:
    scenario: Scenario
    settings: Mapping[str, str | bool]       # erp / appkey / buyer_self_service / erp_detail_button
    comment: str | None = None


@dataclass(frozen=True)
class ImportedShop:
    id: str
    erp: str | None
    scenarios: tuple[ImportedScenario, ...]
    comments: tuple[str, ...] = field(default=())
    name: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def unknown_appkeys(self) -> list[str]:
        return [str(s.settings["appkey"]) for s in self.scenarios if s.comment and "appkey" in s.settings]


def import_shop(state: ShopState, erps: Mapping[str, Erp]) -> ImportedShop:
    """The config entry that describes ``state`` exactly."""
    by_key = names_by_appkey(erps)
    bound = [(sc, state.bindings[sc].appkey) for sc in SCENARIOS if sc in state.bindings]
    named = [(sc, by_key.get(key)) for sc, key in bound]
    counts = Counter(n for _, n in named if n is not None and erps[n].appkey != VIRTUAL_APPKEY)
    shop_erp: str | None = None
    if counts:
        top = max(counts.values())
        shop_erp = next(n for _, n in named if n is not None and counts.get(n) == top)
    scenarios: list[ImportedScenario] = []
    for (sc, key), (_, name) in zip(bound, named, strict=True):
        settings: dict[str, str | bool] = {}
        comment = None
        if name is None:
            settings["appkey"] = key
            if key != VIRTUAL_APPKEY:
                comment = f"appkey {key} is not in erps.yaml: add its ERP to the catalog and write erp: NAME"
        elif name != shop_erp:
            settings["erp"] = name
        if sc is Scenario.modify_address:
            settings["buyer_self_service"] = state.buyer_self_service
        if sc is Scenario.order_status and state.detail_whitelisted:
            settings["erp_detail_button"] = True
        scenarios.append(ImportedScenario(sc, settings, comment))
    comments: list[str] = []
    unbound = [sc.value for sc in SCENARIOS if sc not in state.bindings]
    if unbound:
        comments.append(f"not bound on the platform, so not managed: {', '.join(unbound)}")
    if state.buyer_self_service and Scenario.modify_address not in state.bindings:
        comments.append("buyer self-service is on, but modify_address is not bound")
    return ImportedShop(id=state.shop_id, erp=shop_erp, scenarios=tuple(scenarios), comments=tuple(comments),
                        name=state.name)


def _flow(settings: Mapping[str, str | bool]) -> str:
    items = [f"{k}: {str(v).lower() if isinstance(v, bool) else scalar(v) if k != 'appkey' else scalar_quoted(v)}"
             for k, v in settings.items()]
    return "{" + ", ".join(items) + "}"


def render_shops(shops: Sequence[ImportedShop], *, header: str = "", schema: str | None = None) -> str:
    """The YAML text of a ``shops/*.yaml`` file holding ``shops``, in id order. ``schema``: the
    path or URL of the shops JSON Schema, for editors (a ``yaml-language-server`` first line)."""
    lines = [f"# yaml-language-server: $schema={comment(schema)}"] if schema else []
    lines += [f"# {h}" for h in header.splitlines()]
    if not shops:
        return "\n".join([*lines, "shops: []"]) + "\n"
    lines.append("shops:")
    for shop in sorted(shops, key=lambda s: s.id):
        lines.append(f"  - id: {scalar_quoted(shop.id)}")
        if shop.name is not None:
            lines.append(f"    name: {scalar(shop.name)}")
        if shop.erp is not None:
            lines.append(f"    erp: {scalar(shop.erp)}")
        if shop.labels:
            lines.append("    labels: {" + ", ".join(f"{scalar(k)}: {scalar(v)}" for k, v in sorted(shop.labels.items())) + "}")
        lines += [f"    # {comment(c)}" for c in shop.comments]
        if not shop.scenarios:
            lines.append("    scenarios: {}")
            continue
        lines.append("    scenarios:")
        for s in shop.scenarios:
            lines.append(f"      {s.scenario.value}: {_flow(s.settings)}" + (f"   # {comment(s.comment)}" if s.comment else ""))
    return "\n".join(lines) + "\n"
