"""Properties a planner must never break, on random fleets (per plan row, and in total)."""

import copy

import pandas as pd
import pytest

from pdfleet import optimize, spec

from fleets import random_fleet_doc

KEY = ["quarter", "workload", "role"]


def row_costs(doc, rounding="ceil") -> pd.DataFrame:
    """feasibility per (quarter, workload, role), and the plan's total cost (attrs['cost'])."""
    result = optimize.run(spec.from_dict(doc), rounding=rounding)
    plan = result.plan
    plan["feasible"] = ~plan["status"].isin(["no_profile", "ttft_unreachable", "tpot_unreachable", "kv_memory",
                                             "no_partner"])
    out = plan.set_index(KEY)[["cost_usd_per_hour", "feasible"]]
    out.attrs["cost"] = result.manifest["cost_usd"]
    return out


def assert_not_cheaper(base: pd.DataFrame, other: pd.DataFrame):
    """other is the harder problem: no row becomes feasible, and when both serve the same rows the total
    costs no less. (Per row a harder problem may cost less: switch costs and pairs trade across rows.)"""
    assert not (other["feasible"] & ~base["feasible"]).any()
    assert base["feasible"].any()
    if (other["feasible"] == base["feasible"]).all():
        assert other.attrs["cost"] >= base.attrs["cost"] * (1 - 1e-9) - 1e-6


@pytest.mark.parametrize("seed", range(5))
def test_more_demand_never_costs_less(seed):
    doc = random_fleet_doc(seed)
    more = copy.deepcopy(doc)
    for w in more["workloads"].values():
        w["rate_rps"] = {q: v * 1.7 + 0.5 for q, v in w["rate_rps"].items()}
    assert_not_cheaper(row_costs(doc), row_costs(more))


@pytest.mark.parametrize("seed", range(5))
def test_stricter_slo_never_costs_less(seed):
    doc = random_fleet_doc(seed)
    strict = copy.deepcopy(doc)
    for w in strict["workloads"].values():
        w["slo"]["ttft_s"] = round(w["slo"]["ttft_s"] * 0.8, 4)
        w["slo"]["tpot_ms"] = round(w["slo"]["tpot_ms"] * 0.85, 4)
        w["overhead_s"] = min(w["overhead_s"], w["slo"]["ttft_s"] / 2)
    base = copy.deepcopy(doc)
    for w, s in zip(base["workloads"].values(), strict["workloads"].values()):
        w["overhead_s"] = s["overhead_s"]  # same overhead in both, only the SLOs differ
    assert_not_cheaper(row_costs(base), row_costs(strict))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rounding", ["ceil", "nearest"])
def test_cheaper_sku_is_never_worse(seed, rounding):
    doc = random_fleet_doc(seed)
    base = row_costs(doc, rounding)
    for sku in doc["skus"]:
        cheaper = copy.deepcopy(doc)
        cheaper["skus"][sku]["price_usd_per_gpu_hour"] *= 0.6
        assert_not_cheaper(row_costs(cheaper, rounding), base)
