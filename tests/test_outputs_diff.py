"""`pdfleet diff`: plans from fleets that differ in a known way report that change, where and why."""

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pdfleet.cli import main
from pdfleet.output import schema

from conftest import tiny_fleet


def _fleet(**changes):
    """Two workloads of model m on 'fast' ($4) and 'slow' ($2): chat (TPOT SLO 50 ms) and batch (100 ms);
    both fit the cheaper 'slow' sku."""
    doc = tiny_fleet()
    doc["workloads"]["batch"] = {"model": "m", "rate_rps": 2, "input_tokens": 1024, "output_tokens": 256,
                                 "slo": {"ttft_s": 3.0, "tpot_ms": 100}}
    for dotted, value in changes.items():
        node = doc
        *path, last = dotted.split(".")
        for k in path:
            node = node[k]
        node[last] = value
    return doc


def _plan(tmp_path, name, doc):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(main, ["optimize", str(path), "-o", str(tmp_path / name), "-q"])
    assert res.exit_code == 0, res.output
    return tmp_path / name


def _diff(tmp_path, a, b):
    out = tmp_path / f"{a.name}-{b.name}.parquet"
    res = CliRunner().invoke(main, ["diff", str(a), str(b), "-o", str(out)])
    assert res.exit_code == 0, res.output
    return pd.read_parquet(out), res.output


def test_diff_names_demand_slo_and_price_changes(tmp_path):
    base = _plan(tmp_path, "base", _fleet())
    # chat's q2 demand doubles; batch's TPOT SLO drops to 30 ms, which only 'fast' meets (slow's floor is 35 ms)
    changed = _plan(tmp_path, "changed", _fleet(**{"workloads.chat.rate_rps": {"q1": 5, "q2": 18},
                                                   "workloads.batch.slo": {"ttft_s": 3.0, "tpot_ms": 30}}))
    # 'slow' costs more than 'fast': everything moves to 'fast'
    pricey = _plan(tmp_path, "pricey", _fleet(**{"skus.slow.price_usd_per_gpu_hour": 5.0}))

    d, text = _diff(tmp_path, base, changed)
    assert pq_schema_ok(tmp_path / "base-changed.parquet")
    work = d[d["kind"] == "workload"].set_index(["quarter", "workload", "role"])
    assert set(work.loc[("q2", "chat"), "reasons"]) == {"demand"}
    assert ("q1", "chat", "prefill") not in work.index and ("q1", "chat", "decode") not in work.index
    assert set(work.xs("batch", level="workload")["reasons"]) == {"slo"}
    assert set(work.xs("batch", level="workload")["sku"]) == {"fast"}
    assert "Workloads whose allocation changed" in text and "slo" in text
    # sku rows: every (quarter, sku) of either plan; their deltas add up to the plans' totals
    skus = d[d["kind"] == "sku"]
    for name, plan in (("a", base), ("b", changed)):
        fleet = pd.read_parquet(plan / "fleet.parquet")
        assert skus[f"gpus_{name}"].sum() == fleet["gpus"].sum()
        assert skus[f"cost_usd_per_hour_{name}"].sum() == pytest.approx(fleet["cost_usd_per_hour"].sum())
    assert (skus["gpus_delta"] == skus["gpus_b"] - skus["gpus_a"]).all()

    d, _ = _diff(tmp_path, base, pricey)
    work = d[d["kind"] == "workload"]
    assert len(work) and set(work["reasons"]) == {"price"} and set(work["sku"]) == {"fast"}

    d, _ = _diff(tmp_path, base, base)
    assert (d["kind"] == "sku").all() and (d["gpus_delta"] == 0).all()


def pq_schema_ok(path):
    import pyarrow.parquet as pq

    return pq.read_schema(path).remove_metadata().equals(schema.DIFF.remove_metadata())
