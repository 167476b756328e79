"""--shard K/N: every shop lands in exactly one shard, for plan, apply and drift alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import Agency

from reconciler.shard import Shard, parse_shard, shard_of

SHOP_IDS = [f"{100000 + i * 7919}" for i in range(40)]


def _config(ids: list[str]) -> str:
    lines = ["shops:"]
    for sid in ids:
        lines += [f'  - id: "{sid}"', "    erp: jushuitan", "    scenarios:", "      intercept_shipment: {}"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def forty(agency: Agency) -> Agency:
    agency.shops(_config(SHOP_IDS))
    agency.world({sid: {} for sid in SHOP_IDS} | {"900001": {}, "900002": {}, "900003": {}})
    return agency


def test_hash_is_stable_sha256_not_python_hash() -> None:
    # Pinned: a change here would move shops between CI jobs; Python's hash() is salted per process.
    assert [shard_of(s, 4) for s in ("100001", "100002", "100003", "200001", "999999")] == [2, 2, 1, 2, 1]
    assert [shard_of(s, 7) for s in ("100001", "100002", "100003", "200001", "999999")] == [4, 1, 5, 4, 6]


def test_every_id_in_exactly_one_shard_for_n_1_to_5() -> None:
    ids = [str(10_000_000 + i) for i in range(5000)]
    for n in range(1, 6):
        shards = [[s for s in ids if Shard(k, n).holds(s)] for k in range(1, n + 1)]
        assert sorted(x for s in shards for x in s) == sorted(ids)
        # and reasonably even: no shard holds more than 1.2× its share
        assert max(len(s) for s in shards) <= 1.2 * len(ids) / n


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "3", "1/2/3", "-1/2", ""])
def test_bad_shard_specs_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_shard(text)


def test_shard_spec_parses() -> None:
    assert parse_shard(" 2 / 5 ") == Shard(2, 5)
    assert str(Shard(2, 5)) == "2/5"


def test_plan_shards_cover_every_shop_exactly_once(forty: Agency) -> None:
    for n in range(1, 6):
        seen: list[str] = []
        for k in range(1, n + 1):
            r = forty.run("plan", "--shard", f"{k}/{n}", "--format", "json")
            assert r.exit_code == 0, r.output
            data = json.loads(r.stdout)
            assert sorted({c["shop"] for c in data["changes"]}) == sorted(data["shops"])
            seen += data["shops"]
            assert f"shard {k}/{n}: {len(data['shops'])} of 40 shop(s)" in r.stderr
        assert sorted(seen) == sorted(SHOP_IDS), n


def test_drift_shards_cover_every_shop_and_unknown_shop_exactly_once(forty: Agency) -> None:
    for n in (1, 3):
        audited: list[str] = []
        unknown: list[str] = []
        for k in range(1, n + 1):
            r = forty.run("drift", "--shard", f"{k}/{n}", "--format", "json")
            assert r.exit_code == 2, r.output
            data = json.loads(r.stdout)
            assert data["shard"] == f"{k}/{n}"
            audited += [s["id"] for s in data["shops"]]
            unknown += [f["shop"] for f in data["findings"] if f["kind"] == "unknown-shop"]
        assert sorted(audited) == sorted(SHOP_IDS)
        assert sorted(unknown) == ["900001", "900002", "900003"]


def test_apply_with_a_shard_touches_only_that_shard(forty: Agency) -> None:
    r = forty.run("apply", "--auto-approve", "--shard", "2/3")
    assert r.exit_code == 0, r.output
    mine = {s for s in SHOP_IDS if Shard(2, 3).holds(s)}
    assert mine
    for sid in SHOP_IDS:
        assert forty.bindings(sid) == ({"intercept_shipment": "21345678"} if sid in mine else {}), sid
    r = forty.run("plan", "--format", "json")
    assert sorted(c["shop"] for c in json.loads(r.stdout)["changes"]) == sorted(set(SHOP_IDS) - mine)


def test_bad_shard_is_an_error_exit_1_not_2(forty: Agency) -> None:
    # exit 2 would read as "changes pending" / "drift" to CI
    for cmd in ("plan", "drift", "apply"):
        r = forty.run(cmd, "--shard", "4/3")
        assert r.exit_code == 1, (cmd, r.output)
        assert "--shard: shard 4/3: K must be between 1 and 3" in r.stderr


def test_saved_plan_cannot_be_sharded(forty: Agency) -> None:
    plan = forty.dir / "plan.json"
    assert forty.run("plan", "--out", str(plan)).exit_code == 0
    r = forty.run("apply", str(plan), "--shard", "1/2")
    assert r.exit_code != 0
    assert "cannot be combined with a saved plan" in r.output
    assert all(forty.bindings(s) == {} for s in SHOP_IDS)


def test_documented_github_workflow_uses_every_shard() -> None:
    doc = Path(__file__).resolve().parent.parent / "docs" / "github-actions" / "reconciler.yml"
    wf = yaml.safe_load(doc.read_text(encoding="utf-8"))
    jobs = wf["jobs"]
    for name in ("plan", "apply", "drift"):
        assert name in jobs, name
        shards = jobs[name]["strategy"]["matrix"]["shard"]
        total = wf["env"]["SHARDS"]
        assert shards == list(range(1, int(total) + 1)), name
        steps = "\n".join(str(s.get("run", "")) for s in jobs[name]["steps"])
        assert "--shard ${{ matrix.shard }}/${{ env.SHARDS }}" in steps or name == "apply", name
