"""Roofline-predicted profiles: built from the calibrated roofline, never over a measurement, and the plan
reacts to prices the way a planner expects."""

import copy

import jax
import numpy as np
import pytest
import yaml

from pdfleet import calibrate, catalog, optimize, predicted, spec
from pdfleet.perf import roofline

from conftest import CONFIGS


@pytest.fixture(scope="module")
def mixed_doc():
    return yaml.safe_load((CONFIGS / "mixed-skus.yaml").read_text())


def plan_of(doc):
    return optimize.run(spec.from_dict(copy.deepcopy(doc))).plan


def test_mixed_skus_plans_with_catalog_entries_only(mixed_doc):
    plan = plan_of(mixed_doc)
    assert set(plan["status"]) == {"ok"}
    assert set(plan["source"]) == {"roofline"}
    # every sku is a candidate: the runners-up name other skus than the ones chosen (since the issue-#8 refit,
    # MI300X's roofline is the cheapest for every workload of this fleet)
    other = plan["runner_up"].dropna().str.split("/").str[0] != plan.loc[plan["runner_up"].notna(), "sku"]
    assert len(mixed_doc["skus"]) >= 4 and other.any()


def test_plan_leaves_a_sku_that_gets_expensive_and_takes_one_that_gets_cheap(mixed_doc):
    base = plan_of(mixed_doc)
    top = base.groupby("sku")["gpus"].sum().idxmax()
    pricey = copy.deepcopy(mixed_doc)
    pricey["skus"] = {name: ({"price_usd_per_gpu_hour": 100.0} if name == top else {}) for name in pricey["skus"]}
    moved = plan_of(pricey)
    assert moved.loc[moved["sku"] == top, "gpus"].sum() < base.loc[base["sku"] == top, "gpus"].sum()
    assert moved["cost_usd_per_hour"].sum() >= base["cost_usd_per_hour"].sum()

    unused = sorted(set(mixed_doc["skus"]) - set(base["sku"]))[0]
    cheap = copy.deepcopy(mixed_doc)
    cheap["skus"] = {name: ({"price_usd_per_gpu_hour": 0.05} if name == unused else {}) for name in cheap["skus"]}
    taken = plan_of(cheap)
    assert (taken["sku"] == unused).any()
    assert taken["cost_usd_per_hour"].sum() <= base["cost_usd_per_hour"].sum()


def test_measured_profile_wins_over_roofline(mixed_doc):
    doc = copy.deepcopy(mixed_doc)
    doc["profiles"] = [{"model": "llama-3.1-70b", "sku": "H100-SXM", "gpus_per_instance": 2,
                        "prefill": {"max_tokens_per_s": 1e6},  # absurdly fast: must be chosen if used
                        "decode": [{"input_tokens": 1155, "output_tokens": 211, "batch": [1, 64],
                                    "tpot_ms": [5, 6]}]}]
    fleet = spec.from_dict(doc)
    pred = predicted.predict(fleet)
    assert not [p for p in pred.profiles if (p.model, p.sku, p.gpus_per_instance) == ("llama-3.1-70b", "H100-SXM", 2)]
    doc["skus"] = ["H100-SXM"]  # only this sku: the measured profile and roofline TP 4/8 compete
    plan = optimize.run(spec.from_dict(doc)).plan
    chat = plan[(plan["workload"] == "chat-70b") & (plan["role"] == "prefill")]
    assert set(chat["source"]) == {"profile"} and set(chat["gpus_per_instance"]) == {2}


def test_roofline_tables_are_the_roofline(mixed_doc):
    fleet = spec.from_dict(mixed_doc)
    pred = predicted.predict(fleet)
    prof = next(p for p in pred.profiles if (p.model, p.sku, p.gpus_per_instance) == ("llama-3.1-70b", "H100-SXM", 4))
    model = roofline.model_shape_from_catalog(catalog.load_models()["llama-3.1-70b"])
    sku = catalog.load_skus()["H100-SXM"]
    hw = roofline.hardware_from_sku(sku, 4, "bf16")
    eff = calibrate.load_calibration("H100-SXM")
    with jax.enable_x64(True):
        want_prefill = 2048 / float(roofline.prefill_time_s(2048.0, model, hw, eff))
        table = next(t for t in prof.decode if (t.input_tokens, t.output_tokens) == (2048, 28))
        want_tpot = [1e3 * float(roofline.decode_step_s(float(b), 2048 + 14, model, hw, eff)) for b in table.batch]
    got_prefill = dict(zip(prof.prefill.input_tokens, prof.prefill.max_tokens_per_s))[2048]
    assert got_prefill == pytest.approx(want_prefill, rel=1e-5)
    np.testing.assert_allclose(table.tpot_ms, want_tpot, rtol=1e-5)
    # batch grid ends at the KV-memory limit of that context
    free = 4 * sku["memory_gib"] * 1024**3 * 0.9 - model.weight_bytes
    assert table.batch[-1] == min(4096, int(free // (model.kv_bytes_per_token * (2048 + 28))))


def test_roofline_can_be_switched_off(mixed_doc):
    doc = copy.deepcopy(mixed_doc)
    doc["planning"]["roofline"] = False
    plan = plan_of(doc)
    assert set(plan["status"]) == {"no_profile"}


def test_missing_numbers_skip_with_a_reason():
    doc = {"skus": {"x": {"memory_gib": 80, "price_usd_per_gpu_hour": 1}},
           "models": ["llama-3.1-8b"],
           "workloads": {"w": {"model": "llama-3.1-8b", "rate_rps": 1, "input_tokens": 100, "output_tokens": 10,
                               "slo": {"ttft_s": 1, "tpot_ms": 50}}}}
    pred = predicted.predict(spec.from_dict(doc))
    assert pred.profiles == [] and pred.skipped == ["llama-3.1-8b on x: sku needs hbm_tbps"]


def test_measured_wins_per_role_only(mixed_doc):
    doc = copy.deepcopy(mixed_doc)
    doc["skus"], doc["planning"]["tp_degrees"] = ["H100-SXM"], [2]
    doc["profiles"] = [{"model": "llama-3.1-70b", "sku": "H100-SXM", "gpus_per_instance": 2,
                        "decode": [{"input_tokens": 1155, "output_tokens": 211, "batch": [1, 16],
                                    "tpot_ms": [20, 25]}]}]  # decode measured, prefill not
    pred = predicted.predict(spec.from_dict(doc))
    combo = [p for p in pred.profiles if (p.model, p.sku, p.gpus_per_instance) == ("llama-3.1-70b", "H100-SXM", 2)]
    assert len(combo) == 1 and combo[0].prefill is not None and combo[0].decode is None
    plan = optimize.run(spec.from_dict(doc)).plan
    chat = plan[plan["workload"] == "chat-70b"].set_index("role")
    assert set(chat.loc["prefill", "source"]) == {"roofline"} and set(chat.loc["decode", "source"]) == {"profile"}


def test_many_contexts_never_read_a_shorter_table():
    from pdfleet.perf.decode import mean_context

    workloads = {f"w{i}": {"model": "llama-3.1-8b", "rate_rps": 1, "input_tokens": 1000 + 3000 * i,
                           "output_tokens": 200, "slo": {"ttft_s": 60, "tpot_ms": 200}} for i in range(40)}
    fleet = spec.from_dict({"skus": ["H200-SXM"], "models": ["llama-3.1-8b"], "workloads": workloads,
                            "planning": {"tp_degrees": [1]}})
    prof = predicted.predict(fleet).profiles[0]
    assert len(prof.decode) == predicted.MAX_DECODE_TABLES
    plan = optimize.run(fleet).plan.query("role == 'decode'")
    for row in plan.itertuples():
        used = next(t for t in prof.decode if t.label == row.decode_table)
        assert mean_context(used.input_tokens, used.output_tokens) >= mean_context(row.input_tokens, row.output_tokens)


def test_many_prefill_lengths_never_overstate_throughput():
    """Beyond 32 distinct input lengths the table is grouped; at every workload length the table's
    throughput is at most the roofline's own."""
    workloads = {f"w{i}": {"model": "llama-3.1-8b", "rate_rps": 1, "input_tokens": 200 + 2917 * i,
                           "output_tokens": 100, "slo": {"ttft_s": 60, "tpot_ms": 200}} for i in range(45)}
    fleet = spec.from_dict({"skus": ["H100-SXM"], "models": ["llama-3.1-8b"], "workloads": workloads,
                            "planning": {"tp_degrees": [1]}})
    prof = predicted.predict(fleet).profiles[0]
    assert len(prof.prefill.input_tokens) <= 2 * predicted.PREFILL_GROUPS
    model = roofline.model_shape_from_catalog(catalog.load_models()["llama-3.1-8b"])
    hw = roofline.hardware_from_sku(catalog.load_skus()["H100-SXM"], 1, "bf16")
    eff = calibrate.load_calibration("H100-SXM")
    xs, ys = np.array(prof.prefill.input_tokens, float), np.array(prof.prefill.max_tokens_per_s)
    for w in workloads.values():
        L = float(w["input_tokens"])
        true_tps = L / float(roofline.prefill_time_s(L, model, hw, eff))
        assert np.interp(L, xs, ys) <= true_tps * (1 + 1e-5)
