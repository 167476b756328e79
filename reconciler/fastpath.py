"""Plain shop files in one pass: YAML nodes → resolved shops, without building, validating
and resolving them step by step.

Most shop files of a large agency say only what the benchmark's do: shops with an ``id``, a
``name``, an ``erp`` from the catalog, ``labels``, ``protect`` and scenarios that take the
shop's ERP or name their own, with ``buyer_self_service`` / ``erp_detail_button``. For such
a file ``shops`` reads the composed node tree once and builds the resolved shops directly —
the step-by-step path (``yamlio`` build with marks → strict pydantic validation → ``resolve``)
costs twice the YAML parse itself.

It is an optimisation only, never a second set of rules: it accepts a file only when every
value is of the plain kind it knows and every check passes, and then builds exactly what the
step-by-step path would (the same ``Source`` lines: the value nodes' marks). Anything else —
a profile, an ``appkey``, ``state``, a null, a tag, a duplicate key, an unknown ERP, a value
the strict models would refuse, anything that would be a warning — returns None and the file
takes the step-by-step path, which says what is wrong. ``tests/test_fastpath.py`` compares
the two over random files.
"""

from __future__ import annotations

from typing import Any

import yaml

from .model import (
    LABEL_KEY_RE,
    LABEL_VALUE_MAX,
    SHOP_ID_RE,
    VIRTUAL_APPKEY,
    DesiredBinding,
    DesiredShop,
    Erp,
    Scenario,
    Source,
    new_binding,
    new_shop,
    new_source,
)

_T = "tag:yaml.org,2002:"
_STR, _BOOL, _NULL, _MAP, _SEQ = _T + "str", _T + "bool", _T + "null", _T + "map", _T + "seq"
_ROOT_KEYS = frozenset({"shops"})
_SHOP_KEYS = frozenset({"id", "name", "erp", "protect", "labels", "scenarios"})
# the keys a scenario may hold here, by scenario (the spec models' fields but appkey and state)
SCENARIO_KEYS = {
    Scenario.intercept_shipment.value: frozenset({"erp"}),
    Scenario.modify_address.value: frozenset({"erp", "buyer_self_service"}),
    Scenario.order_status.value: frozenset({"erp", "erp_detail_button"}),
}
_SCENARIO = {s.value: s for s in Scenario}
_BOOLS = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}


_Scalar, _Mapping, _Sequence = yaml.ScalarNode, yaml.MappingNode, yaml.SequenceNode


class NotPlain(Exception):
    """The file needs the step-by-step path."""


def _pairs(node: Any, allowed: frozenset[str] | dict[str, Any] | None) -> dict[str, Any]:
    """A mapping node's values by key: only plain string keys, no duplicates, only ``allowed``."""
    if type(node) is not _Mapping or node.tag != _MAP:
        raise NotPlain
    out: dict[str, Any] = {}
    for k, v in node.value:
        if type(k) is not _Scalar or k.tag != _STR:
            raise NotPlain
        key = k.value
        if key in out or (allowed is not None and key not in allowed):
            raise NotPlain
        out[key] = v
    return out


def _str(node: Any) -> str:
    if type(node) is not _Scalar or node.tag != _STR:
        raise NotPlain
    value: str = node.value
    return value


def _bool(node: Any) -> bool:
    if type(node) is not _Scalar or node.tag != _BOOL:
        raise NotPlain
    return _BOOLS[node.value.lower()]


def _line(node: Any) -> int:
    line: int = node.start_mark.line
    return line + 1


def shops(node: Any, file: str, erps: dict[str, Erp]) -> list[DesiredShop] | None:
    """The resolved shops of a plain shop file (its composed root node), or None."""
    try:
        return _shops(node, file, erps)
    except (NotPlain, KeyError, AttributeError):
        return None


def _shops(node: Any, file: str, erps: dict[str, Erp]) -> list[DesiredShop]:
    root = _pairs(node, _ROOT_KEYS)
    items = root.get("shops")
    if type(items) is not _Sequence or items.tag != _SEQ:
        raise NotPlain
    out: list[DesiredShop] = []
    ids: set[str] = set()
    for item in items.value:
        f = _pairs(item, _SHOP_KEYS)
        sid = _str(f["id"])
        name = _str(f["name"]) if "name" in f else None
        erp_node = f.get("erp")
        erp = _str(erp_node) if erp_node is not None else None
        labels = {k: check_label(k, _str(v)) for k, v in _pairs(f["labels"], None).items()} if "labels" in f else {}
        check_shop(sid, erp, ids, erps)
        bindings: dict[Scenario, DesiredBinding] = {}
        if "scenarios" in f:
            declared = _pairs(f["scenarios"], SCENARIO_KEYS)
            said = new_source(file, _line(erp_node), None, None) if erp_node is not None else None  # shared by its bindings
            for key, sc in _SCENARIO.items():   # in the scenarios' order, as the step-by-step path
                if key in declared:
                    bindings[sc] = _binding(sc, declared[key], erp, said, file, erps)
        out.append(new_shop(sid, name, erp, _bool(f["protect"]) if "protect" in f else False,
                            new_source(file, _line(item), None, None), bindings, labels, None, None))
    return out


def _binding(sc: Scenario, node: Any, shop_erp: str | None, shop_erp_source: Source | None, file: str,
             erps: dict[str, Erp]) -> DesiredBinding:
    if type(node) is _Scalar and node.tag == _NULL and node.value in ("", "~", "null", "Null", "NULL"):
        f: dict[str, Any] = {}   # ``intercept_shipment:`` means ``intercept_shipment: {}``
    else:
        f = _pairs(node, SCENARIO_KEYS[sc.value])
    if "erp" in f:
        name, source = _str(f["erp"]), new_source(file, _line(f["erp"]), None, None)
    elif shop_erp is not None and shop_erp_source is not None:
        name, source = shop_erp, shop_erp_source
    else:
        raise NotPlain  # no ERP to bind: an error
    bss = _bool(f["buyer_self_service"]) if "buyer_self_service" in f else None
    return binding(sc, name, source, bss,
                   new_source(file, _line(f["buyer_self_service"]), None, None) if bss is not None else None,
                   _bool(f["erp_detail_button"]) if "erp_detail_button" in f else None, erps)


# --------------------------------------------------------------------------- the rules (``scan`` uses them too)


def check_shop(sid: str, erp: str | None, ids: set[str], erps: dict[str, Erp]) -> None:
    """A shop's id (of digits, once in the file, added to ``ids``) and its ERP (in the catalog)."""
    if not SHOP_ID_RE.fullmatch(sid) or sid in ids:
        raise NotPlain
    ids.add(sid)
    if erp is not None and erp not in erps:
        raise NotPlain  # an unknown ERP: an error, said by the step-by-step path


def check_label(key: str, value: str) -> str:
    """A label's value, when the key and value are ones the spec takes."""
    if not LABEL_KEY_RE.fullmatch(key) or not (0 < len(value) <= LABEL_VALUE_MAX and value.isprintable()):
        raise NotPlain
    return value


def binding(sc: Scenario, erp: str, source: Source, buyer_self_service: bool | None,
            buyer_self_service_source: Source | None, erp_detail_button: bool | None,
            erps: dict[str, Erp]) -> DesiredBinding:
    """A scenario bound to a catalog ERP (virtualAppKey only for modify_address)."""
    spec = erps.get(erp)
    if spec is None or (spec.appkey == VIRTUAL_APPKEY and sc is not Scenario.modify_address):
        raise NotPlain
    return new_binding(sc, spec.appkey, erp, source, buyer_self_service, buyer_self_service_source, erp_detail_button)
