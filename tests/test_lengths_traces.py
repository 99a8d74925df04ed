"""Length distributions, traces and queue models in fleet.yaml, through to the plan."""

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from pdfleet import optimize, traces
from pdfleet import spec as S

ROOT = Path(__file__).resolve().parents[1]
AZURE_CONV = ROOT.parent / "shared" / "data" / "traces" / "AzureLLMInferenceTrace_conv.csv"
MOONCAKE = ROOT.parent / "shared" / "data" / "traces" / "mooncake_conversation_trace.jsonl"
PAPER = yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text())


def _fleet(**changes):
    d = copy.deepcopy(PAPER)
    for path, value in changes.items():
        node = d
        *head, last = path.split("__")
        for key in head:
            node = node.setdefault(key, {})
        node[last] = value
    return S.from_dict(d, ROOT / "configs")


def _plan(**changes):
    return optimize.run(_fleet(**changes)).plan.set_index("role")


def test_length_forms():
    w = _fleet().workloads["paper-case"]
    assert w.input_mean == 6144 and w.input_scv == 0
    lengths = S.Lengths(mean=1000.0, cv=0.5)
    assert lengths.average == 1000 and lengths.scv == pytest.approx(0.25)
    logn = S.Lengths(p50=800.0, p90=2400.0)
    sigma = math.log(3) / 1.2815515655446004
    assert logn.sigma == pytest.approx(sigma)
    assert logn.average == pytest.approx(800 * math.exp(sigma**2 / 2))
    assert logn.scv == pytest.approx(math.expm1(sigma**2))


@pytest.mark.parametrize("lengths,needle", [
    ({"mean": 100, "p50": 90, "p90": 200}, "not both"),
    ({"p50": 100}, "p90 or p99"),
    ({"p50": 100, "p90": 50}, "below p50"),
    ({"mean": 100, "cv": -1}, "greater than or equal"),
    ({"mean": 100, "sd": 3}, "unknown key"),
])
def test_bad_lengths_name_the_path(lengths, needle):
    d = copy.deepcopy(PAPER)
    d["workloads"]["paper-case"]["input_tokens"] = lengths
    with pytest.raises(S.SpecError) as err:
        S.from_dict(d, ROOT / "configs")
    assert err.value.path.startswith("workloads.paper-case.input_tokens") and needle in err.value.message


def test_trace_readers_agree_with_the_published_figures():
    conv = traces.read(AZURE_CONV)
    st = traces.stats(conv, 300)
    assert st.requests == 19366 and conv.dropped == 0
    assert st.input_mean == pytest.approx(1155, abs=1)  # the figure for the conversation trace
    assert st.peak_rps > st.mean_rps
    # peak by brute force over windows starting at each arrival
    t = conv.arrival_s
    brute = max(np.sum((t >= s) & (t < s + 300)) for s in t[::50]) / 300
    assert st.peak_rps >= brute
    moon = traces.stats(traces.read(MOONCAKE), 300)
    assert moon.input_mean == pytest.approx(12035, abs=1) and moon.output_mean == pytest.approx(343, abs=1)


def test_plain_csv_trace_and_errors(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("arrival_s,input_tokens,output_tokens\n0,100,10\n1,300,30\n2,0,5\n4,200,20\n")
    t = traces.read(f)
    assert t.dropped == 1 and list(t.input_tokens) == [100, 300, 200]
    st = traces.stats(t, 10.0)
    assert st.mean_rps == pytest.approx(2 / 4) and st.peak_rps == pytest.approx(3 / 4)  # window longer than span
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(traces.TraceError, match="none of Azure"):
        traces.read(bad)


def test_workload_trace_gives_lengths_and_peak_demand(tmp_path):
    d = copy.deepcopy(PAPER)
    w = d["workloads"]["paper-case"]
    for key in ("tokens_per_minute", "input_tokens", "output_tokens"):
        del w[key]
    w["trace"] = str(AZURE_CONV)
    fleet = S.from_dict(d, ROOT / "configs")
    got = fleet.workloads["paper-case"]
    st = traces.stats(traces.read(AZURE_CONV), 300)
    assert got.input_mean == pytest.approx(st.input_mean) and got.input_scv == pytest.approx(st.input_cv**2)
    assert got.rate_rps == {"now": pytest.approx(st.peak_rps)}
    w["rate_rps"] = 2.0  # an average demand beside the trace is planned at the trace's peak
    scaled = S.from_dict(d, ROOT / "configs").workloads["paper-case"]
    assert scaled.rate_rps["now"] == pytest.approx(2.0 * st.peak_rps / st.mean_rps)
    w["trace"] = "missing.csv"
    with pytest.raises(S.SpecError) as err:
        S.from_dict(d, ROOT / "configs")
    assert err.value.path == "workloads.paper-case.trace" and "relative to the fleet.yaml" in err.value.message


def test_queue_models_on_the_papers_case():
    """mg1 with fixed lengths is M/D/1: at 5 M TPM it needs 2.89 prefill instances (3) where M/M/1 needs
    3.07 (4); the pooled M/M/c needs 3; each TTFT prediction is its model's sojourn at the planned count."""
    mm1, mg1, mmc = _plan(), _plan(planning__queue="mg1"), _plan(planning__queue="mmc")
    assert mm1.loc["prefill", "instances"] == 4 and mg1.loc["prefill", "instances"] == 3
    assert mmc.loc["prefill", "instances"] == 3
    rate = 5e6 / 60 / 6656
    s = 6144 / 28309
    d = 2.0 - 0.1 - s
    assert mg1.loc["prefill", "instances_fractional"] == pytest.approx(rate / (2 * d / (s * s + 2 * d * s)), rel=1e-5)
    r3 = rate / 3  # M/D/1 mean sojourn at 3 instances, + overhead
    md1 = s + r3 * s * s / (2 * (1 - r3 * s))
    assert mg1.loc["prefill", "predicted_ttft_s"] == pytest.approx(0.1 + md1, rel=1e-5)
    for plan in (mm1, mg1, mmc):
        assert plan.loc["prefill", "predicted_ttft_s"] <= 2.0 and (plan["status"] == "ok").all()


def test_live_batch_decode_needs_more_decode_for_a_tpot_quantile():
    table, mean, p90 = _plan(), _plan(planning__tpot_quantile="mean"), _plan(planning__tpot_quantile=0.9)
    tps = [p.loc["decode", "capacity_tokens_per_s"] for p in (table, mean, p90)]
    assert tps[0] > tps[1] > tps[2]
    assert p90.loc["decode", "instances"] >= mean.loc["decode", "instances"] >= table.loc["decode", "instances"]
    for plan in (mean, p90):
        assert plan.loc["decode", "predicted_tpot_ms"] <= 20.0
