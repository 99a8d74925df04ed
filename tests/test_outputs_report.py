"""`pdfleet report`: one offline HTML file whose charts draw in headless Chromium without a network request."""

import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import browser
from pdfleet.cli import main
from pdfleet.output import html, reader

from conftest import CONFIGS

needs_chromium = pytest.mark.skipif(browser.chromium() is None,
                                    reason="no chromium on PATH (.ci/run installs Debian's chromium; "
                                           "apt-get install -y chromium)")


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("example")
    res = CliRunner().invoke(main, ["optimize", str(CONFIGS / "example-fleet.yaml"), "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    return out


def _simulate(plan: pd.DataFrame) -> pd.DataFrame:
    """A hand-made simulate.parquet: simulated = predicted x 1.1 (TTFT) and x 0.95 (TPOT)."""
    pre = plan[plan["role"] == "prefill"].set_index(["quarter", "workload"])
    dec = plan[plan["role"] == "decode"].set_index(["quarter", "workload"])
    ttft = pre["predicted_ttft_s"] * 1.1
    return pd.DataFrame({
        "requests": 1000, "ttft_mean_s": ttft, "ttft_p50_s": ttft * 0.8, "ttft_p90_s": ttft, "ttft_p99_s": ttft * 1.5,
        "tpot_mean_ms": dec["predicted_tpot_ms"] * 0.95, "tpot_p90_ms": dec["predicted_tpot_ms"],
        "decode_batch_mean": dec["decode_batch"], "slo_met": ttft <= pre["slo_ttft_s"],
    }).reset_index()


def _charts(dom: str) -> dict[str, str]:
    """chart div id -> its drawn markup."""
    starts = [(m.group(1), m.start()) for m in re.finditer(r'<div id="(chart-\d+)"', dom)]
    ends = [s for _, s in starts[1:]] + [dom.index('id="plan-table"')]
    return {cid: dom[s:e] for (cid, s), e in zip(starts, ends)}


def test_report_charts_carry_the_plan_numbers(plan_dir):
    d = reader.read(plan_dir)
    cost = html.cost_chart(d.fleet, d.manifest["hours_per_quarter"])
    per_quarter = {}
    for trace in cost.data:
        for q, y in zip(trace.x, trace.y):
            per_quarter[q] = per_quarter.get(q, 0.0) + y
    for q, hourly in d.manifest["total_cost_usd_per_hour"].items():
        assert per_quarter[q] == pytest.approx(hourly * d.manifest["hours_per_quarter"])
    inst = html.instances_chart(d.plan)
    pre = d.plan[d.plan["role"] == "prefill"]["instances"].to_numpy()
    dec = d.plan[d.plan["role"] == "decode"]["instances"].to_numpy()
    assert np.array_equal(np.asarray(inst.data[0].y), pre) and np.array_equal(np.asarray(inst.data[1].y), dec)
    assert list(inst.data[1].text) == [f"{p}P/{q}D" for p, q in zip(pre, dec)]


@needs_chromium
def test_report_draws_every_chart_offline(plan_dir, tmp_path):
    _simulate(pd.read_parquet(plan_dir / "plan.parquet")).to_parquet(plan_dir / "simulate.parquet")
    try:
        res = CliRunner().invoke(main, ["report", str(plan_dir), "-o", str(tmp_path / "report.html")])
    finally:
        (plan_dir / "simulate.parquet").unlink()
    assert res.exit_code == 0, res.output
    dom, requests = browser.render(tmp_path / "report.html")
    assert requests == []
    charts = _charts(dom)
    assert sorted(charts) == [f"chart-{i}" for i in range(5)]  # cost, GPUs, instances, latency, simulated
    for cid, markup in charts.items():
        assert '<svg class="main-svg"' in markup, cid
        assert '<g class="trace ' in markup, f"{cid} has no trace"
        marks = re.findall(r'<g class="point"><path d="M[^"]+"|<path class="point"[^>]* d="M[^"]+"'
                           r'|<path class="js-line"[^>]* d="M[^"]+"', markup)
        assert marks, f"{cid} drew no bar, point or line"
    assert dom.count("<tr") == 1 + 48  # header + a row per quarter x workload x role


@needs_chromium
def test_the_network_check_catches_a_page_that_fetches(tmp_path):
    page = tmp_path / "fetches.html"
    page.write_text('<html><body><script src="https://cdn.example.invalid/plotly.js"></script></body></html>')
    _, requests = browser.render(page, budget_ms=2000)
    assert requests == ["https://cdn.example.invalid/plotly.js"]


def test_report_of_a_folder_without_a_plan_is_one_error_line(tmp_path):
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "manifest.json" in res.output
