"""optimize --scenarios / --demand-scale: each scenario's rows equal a plan of the fleet edited by hand."""

import json

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pytest
import yaml
from click.testing import CliRunner

from pdfleet.cli import main

from conftest import tiny_fleet

SCENARIOS = {"base": {}, "up30": {"demand_scale": 1.3}, "cheap-fast": {"prices": {"fast": 1.0}},
             "no-slow": {"inventory": {"slow": 0}}}


def _optimize(tmp_path, doc, name, *extra):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = tmp_path / name
    res = CliRunner().invoke(main, ["optimize", str(path), "-o", str(out), "-q", *extra])
    assert res.exit_code == 0, res.output
    return out


def _same_rows(got: pd.DataFrame, want: pd.DataFrame):
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False)


def test_each_scenario_is_the_plan_of_the_fleet_edited_by_hand(tmp_path):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(SCENARIOS, sort_keys=False))
    out = _optimize(tmp_path, tiny_fleet(), "all", "--scenarios", str(tmp_path / "s.yaml"))
    plan, fleet = pd.read_parquet(out / "plan.parquet"), pd.read_parquet(out / "fleet.parquet")
    assert plan.columns[0] == "scenario" and list(dict.fromkeys(plan["scenario"])) == list(SCENARIOS)
    by_hand = {"base": tiny_fleet(), "up30": tiny_fleet(**{"workloads.chat.rate_rps": {"q1": 5 * 1.3, "q2": 9 * 1.3}}),
               "cheap-fast": tiny_fleet(**{"skus.fast.price_usd_per_gpu_hour": 1.0}),
               "no-slow": tiny_fleet(**{"skus.slow.inventory": 0})}
    for name, doc in by_hand.items():
        ref = _optimize(tmp_path, doc, f"ref-{name}")
        _same_rows(plan[plan["scenario"] == name].drop(columns="scenario"), pd.read_parquet(ref / "plan.parquet"))
        _same_rows(fleet[fleet["scenario"] == name].drop(columns="scenario"), pd.read_parquet(ref / "fleet.parquet"))
    assert set(plan.loc[plan["scenario"] == "no-slow", "sku"]) == {"fast"}
    manifest = json.loads((out / "manifest.json").read_text())
    sql = duckdb.connect().execute(f"SELECT scenario, quarter, sum(cost_usd_per_hour) FROM '{out / 'fleet.parquet'}' "
                                   "GROUP BY ALL").fetchall()
    assert len(sql) == len(SCENARIOS) * 2
    for scenario, quarter, usd in sql:
        assert usd == pytest.approx(manifest["scenarios"][scenario]["total_cost_usd_per_hour"][quarter])
    assert "total_cost_usd_per_hour" not in manifest  # per scenario only


def test_demand_scale_alone_is_one_scenario_partitioned(tmp_path):
    out = _optimize(tmp_path, tiny_fleet(), "x2", "--demand-scale", "2", "--partition-by", "scenario")
    back = ds.dataset(out / "plan", format="parquet", partitioning="hive").to_table().to_pandas()
    assert set(back["scenario"].astype(str)) == {"demand_x2"}
    ref = _optimize(tmp_path, tiny_fleet(**{"workloads.chat.rate_rps": {"q1": 10, "q2": 18}}), "ref")
    want = pd.read_parquet(ref / "plan.parquet")
    _same_rows(back.drop(columns="scenario")[want.columns], want)
    res = CliRunner().invoke(main, ["report", str(out)])
    assert res.exit_code == 2 and "give --scenario NAME" in res.output
    res = CliRunner().invoke(main, ["report", str(out), "--scenario", "demand_x2"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("scenarios, expected", [
    ({"bad": {"prices": {"gpu9": 2.0}}}, "error: scenario bad.prices.gpu9: not a sku of this fleet"),
    ({"bad": {"demand_scale": -1}}, "error: s.yaml: bad.demand_scale: Input should be greater than 0"),
    ({"bad": {"colour": "red"}}, "error: s.yaml: bad.colour: unknown key"),
])
def test_bad_scenarios_are_one_line(tmp_path, scenarios, expected):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenarios))
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(tiny_fleet()))
    res = CliRunner().invoke(main, ["optimize", str(tmp_path / "f.yaml"), "-o", str(tmp_path / "o"),
                                    "--scenarios", str(tmp_path / "s.yaml")])
    assert res.exit_code == 2 and res.output.startswith(expected) and res.output.count("\n") == 1, res.output
    assert not (tmp_path / "o").exists()


def test_scenarios_share_one_capacity_pass(monkeypatch):
    """Demand, price and inventory overrides leave per-instance capacities unchanged: the kernels run once
    for every scenario (the plans themselves are checked against hand-edited fleets above)."""
    from pdfleet import optimize, scenarios, spec

    calls = []
    real = optimize.capacities
    monkeypatch.setattr(optimize, "capacities", lambda *a, **k: calls.append(1) or real(*a, **k))
    loaded = scenarios.load_dict(SCENARIOS)
    *_, runs = scenarios.run_all(spec.from_dict(tiny_fleet()), loaded)
    assert len(calls) == 1 and len(runs) == len(SCENARIOS)
    first = runs["base"].prepared.capacity
    assert all(r.prepared.capacity is first for r in runs.values())
    assert runs["up30"].plan["demand_rps"].sum() == pytest.approx(1.3 * runs["base"].plan["demand_rps"].sum())
