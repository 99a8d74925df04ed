"""Operating rules and outputs of the fleet search: min_instances, headroom, pairing, budget, runner-up,
the manifest's cost / bound / gap."""

import json

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pdfleet import optimize, spec
from pdfleet.cli import main

from conftest import tiny_fleet


def _plan(doc, **kw):
    return optimize.run(spec.from_dict(doc), **kw)


def test_min_instances_gives_every_served_role_n_plus_one():
    base = _plan(tiny_fleet()).plan
    assert (base.loc[base["role"] == "decode", "instances"] == 1).any()  # the rule below changes something
    doc = tiny_fleet(**{"planning.min_instances": {"decode": 2}})
    plan = _plan(doc).plan
    assert (plan.loc[plan["role"] == "decode", "instances"] >= 2).all()
    assert (plan.loc[plan["role"] == "prefill", "instances"] >= 1).all()
    plan = _plan(tiny_fleet(**{"planning.min_instances": 3})).plan
    assert (plan["instances"] >= 3).all()


def test_headroom_sizes_for_more_demand_but_reports_the_real_one():
    doc = tiny_fleet(**{"planning.headroom": 0.5, "planning.switch_cost_usd": 0})
    more = tiny_fleet(**{"workloads.chat.rate_rps": {"q1": 7.5, "q2": 13.5}, "planning.switch_cost_usd": 0})
    with_headroom, scaled = _plan(doc).plan, _plan(more).plan
    assert with_headroom["instances"].tolist() == scaled["instances"].tolist()
    assert with_headroom["demand_rps"].tolist() == pytest.approx([5, 5, 9, 9])  # predictions at the real demand
    assert (with_headroom["predicted_ttft_s"].dropna() <= scaled["predicted_ttft_s"].dropna() + 1e-12).all()


def test_pairing_same_sku_never_mixes_skus():
    doc = tiny_fleet(**{"planning.switch_cost_usd": 0})
    mixed = _plan(doc).plan
    pre, dec = mixed[mixed["role"] == "prefill"], mixed[mixed["role"] == "decode"]
    assert (pre["sku"].values != dec["sku"].values).any()  # 'any' mixes here (fast decode, slow prefill)
    same = _plan(tiny_fleet(**{"planning.pairing": "same_sku", "planning.switch_cost_usd": 0}))
    pre, dec = same.plan[same.plan["role"] == "prefill"], same.plan[same.plan["role"] == "decode"]
    assert (pre["sku"].values == dec["sku"].values).all()
    assert (pre["pair_sku"].values == dec["sku"].values + "/4").all()
    assert same.manifest["cost_usd"] >= _plan(doc).manifest["cost_usd"]
    fam = tiny_fleet(**{"planning.pairing": "same_family", "skus.fast.family": "x", "skus.slow.family": "x",
                        "planning.switch_cost_usd": 0})
    assert _plan(fam).manifest["cost_usd"] == pytest.approx(_plan(doc).manifest["cost_usd"])


def test_runner_up_is_the_next_best_option_and_costs_more():
    plan = _plan(tiny_fleet()).plan
    served = plan[plan["instances"] > 0]
    assert served["runner_up"].notna().all()
    assert (served["runner_up"] != served["sku"] + "/" + served["gpus_per_instance"].astype(str)).all()
    assert (served["runner_up_extra_usd_per_hour"] >= -1e-9).all()


def test_budget_that_cannot_pay_starves_rows_with_status_budget_and_exit_3(tmp_path):
    doc = tiny_fleet(**{"planning.budget_usd_per_hour": {"q1": 1000, "q2": 20}})
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(main, ["optimize", str(path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 3, result.output
    plan = pd.read_parquet(tmp_path / "o" / "plan.parquet").set_index(["quarter", "role"])
    assert set(plan.loc["q1", "status"]) == {"ok"} and set(plan.loc["q2", "status"]) == {"budget"}
    fleet = pd.read_parquet(tmp_path / "o" / "fleet.parquet")
    assert fleet.groupby("quarter")["cost_usd_per_hour"].sum()["q2"] <= 20 + 1e-9
    assert "budget" in result.output


def test_manifest_reports_cost_bound_gap_and_solver_times(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(tiny_fleet(**{"skus.fast.owned": 4, "skus.fast.inventory": 8})))
    result = CliRunner().invoke(main, ["optimize", str(path), "-o", str(tmp_path / "o"), "--solver", "lagrangian"])
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["solver"] == "lagrangian" and "lagrangian" in m["timings_s"]["solvers_s"]
    assert m["lower_bound_usd_per_hour"] <= m["cost_usd_per_hour"] + 1e-9
    assert m["gap"] == pytest.approx((m["cost_usd"] - m["lower_bound_usd"]) / m["cost_usd"], abs=1e-9)
    fleet = pd.read_parquet(tmp_path / "o" / "fleet.parquet")
    assert {"owned", "purchased", "rented", "gpus", "capex_usd_per_hour", "opex_usd_per_hour", "cost_usd_per_hour",
            "inventory_gpus"} <= set(fleet.columns)
    hours = m["hours_per_quarter"] * len(m["quarters"])
    assert fleet["cost_usd_per_hour"].sum() * m["hours_per_quarter"] + m["switch_usd"] == pytest.approx(m["cost_usd"])
    assert m["cost_usd_per_hour"] == pytest.approx(m["cost_usd"] / hours)
    assert "lower bound" in result.output and "gap" in result.output


def test_search_progress_bar_shows_only_after_its_delay():
    import io

    from rich.console import Console

    from pdfleet import report

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with report.search_progress(console, after_s=0.0) as update:
        update("lagrangian", 3, 10, 0.0123)
    assert "lagrangian" in out.getvalue() and "1.230%" in out.getvalue()
    quiet = io.StringIO()
    with report.search_progress(Console(file=quiet, force_terminal=True), after_s=60.0) as update:
        update("lagrangian", 3, 10, 0.0123)
    assert quiet.getvalue() == ""
