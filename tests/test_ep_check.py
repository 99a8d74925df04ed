"""The expert-parallel check: TensorRT-LLM's DEPn rows read as a validation table (measured_sources.read_trtllm_ep,
never fit rows) and predicted through the EP roofline (predicted.ep_throughput_check), pinned by hand."""

import math

import pandas as pd
import pytest

from pdfleet import calibrate, catalog, measured_sources as ms, predicted
from pdfleet.perf import roofline

GIB = 1024.0**3
COLUMNS = ["doc_version", "model", "gpu", "precision", "parallelism", "tp", "pp", "gpus", "input_tokens",
           "output_tokens", "output_throughput_tokens_per_s", "output_throughput_tokens_per_s_per_gpu"]
ROWS = [
    ("new", "Qwen3 235B A22B", "H200", "FP8", "DEP4", None, 1, 4, 1000, 1000, None, 3288.0),  # mapped
    ("new", "GPT-OSS 120B", "H100", "FP8", "DEP4", None, 1, 4, 1024, 1024, None, 4715.0),  # mapped, Hopper KV 'auto'
    ("new", "Qwen3 235B A22B", "GB200", "FP4", "DEP4", None, 1, 4, 1000, 1000, None, 6172.0),  # sku not in catalog
    ("new", "LLaMA v4 Maverick", "B200", "FP4", "DEP4", None, 1, 4, 1000, 1000, None, 11337.0),  # model not in catalog
    ("new", "Qwen3 235B A22B", "B200", "FP4", "DEP2,PP2", None, 2, 4, 1000, 1000, None, 1731.0),  # pipeline stages
    ("new", "LLaMA v3.3 70B", "H200", "FP8", "DEP2", None, 1, 2, 1000, 1000, None, 2587.0),  # dense: nothing to spread
    ("new", "Qwen3 235B A22B", "H200", "FP8", "TP8", 8, 1, 8, 1000, 1000, None, 1000.0),  # TP row: not this reader's
]


@pytest.fixture()
def csv(tmp_path):
    path = tmp_path / "trtllm.csv"
    pd.DataFrame(ROWS, columns=COLUMNS).to_csv(path, index=False)
    return path


def test_reader_maps_dep_rows_and_refuses_with_reasons(csv):
    table, refused = ms.read_trtllm_ep(csv)
    assert list(table.columns) == ms.EP_COLUMNS
    assert sorted(zip(table["model"], table["sku"])) == [("gpt-oss-120b", "H100-SXM"), ("qwen3-235b-a22b", "H200-SXM")]
    assert (table["dp"] == table["gpus"]).all() and (table["ep"] == table["gpus"]).all() and (table["tp"] == 1).all()
    reasons = sorted(refused["reason"])
    assert reasons == sorted(["sku not in catalog", "model not in catalog",
                              "pipeline parallel (PP > 1): the roofline has no pipeline stages",
                              "dense model: no experts to spread"])
    oss = table[table["model"] == "gpt-oss-120b"].iloc[0]
    assert oss["weight_dtype"] == "" and oss["kv_dtype"] == ""  # catalog MXFP4 weights; 'Hopper: use auto' KV
    # the DEP rows stay refused for fitting by the tensor-parallel reader
    tp_rows, tp_refused = ms.read_trtllm_throughput(csv)
    assert list(tp_rows["tp"]) == [8]
    assert (tp_refused["reason"] == "pipeline or attention-DP/expert parallel (roofline models TP only)").sum() == 4


def test_dp_batch_is_the_runs_mean_batch_under_each_groups_kv_capacity_by_hand(csv):
    table, _ = ms.read_trtllm_ep(csv)
    r = table[table["model"] == "qwen3-235b-a22b"].iloc[0]
    # Qwen3-235B-A22B fp8 on 4 H200 (141 GiB) as DP4/EP4: 128 routed experts of (235 - 22) / (128 - 8) B params each;
    # held weights = W + 3 (W - W_e) (attention/dense on every GPU, experts once), a quarter per attention group
    w = 235e9
    w_e = 128 * (235 - 22) / (128 - 8) * 1e9
    per_group_weights = (w + 3 * (w - w_e)) / 4
    free = 0.9 * (141 * GIB - per_group_weights)  # TensorRT-LLM: 0.9 of what the weights leave, per GPU
    per_seq = 2 * 94 * 4 * 128 * 1 * 2000  # K and V, 94 layers, 4 KV heads (not replicated at tp 1), fp8, 2000 tokens
    per_group = math.floor(free / per_seq)
    models, skus = catalog.load_models(), catalog.load_skus()
    assert ms.kv_capacity(models["qwen3-235b-a22b"], skus["H200-SXM"], 1, "fp8", "fp8", 2000, "tensorrt-llm",
                          dp=4) == 4 * per_group
    # the run's batch: 3000 requests, 750 per rank, at most min(trtllm-bench's max_batch, the KV capacity) running
    # (tests/test_ep_schedule.py pins trtllm_bench_settings and offline_mean_batch by hand)
    bs, tok = ms.trtllm_bench_settings(models["qwen3-235b-a22b"], skus["H200-SXM"], 4, "fp8", "fp8", 1000, 1000)
    assert bs > per_group  # the KV cache binds
    mean, _ = ms.offline_mean_batch(750, per_group, tok, 1000, 1000)
    assert r["batch"] == pytest.approx(4 * mean, rel=1e-12) and mean < per_group
    assert r["time_s"] == pytest.approx(4 * mean * 1000 / (3288.0 * 4), rel=1e-12)


def test_prediction_is_the_ep_roofline_by_hand(csv):
    t = predicted.ep_throughput_check(path=csv)
    r = t[t["model"] == "qwen3-235b-a22b"].iloc[0]
    skus, models = catalog.load_skus(), catalog.load_models()
    eff = calibrate.lookup("H200-SXM", "tensorrt-llm").efficiency
    shape = roofline.model_shape_from_catalog(models["qwen3-235b-a22b"], weight_dtype="fp8", kv_dtype="fp8", tp=1)
    hw = roofline.hardware_from_sku(skus["H200-SXM"], 4, "fp8")
    b = float(r["batch"])
    t_batch = (float(roofline.ep_prefill_time_s(1000.0, shape, hw, eff, 4.0, 4.0, b))
               + 1000.0 * float(roofline.ep_decode_step_s(b, 1500.0, shape, hw, eff, 4.0, 4.0)))
    assert r["predicted"] == pytest.approx(b * 1000.0 / (4 * t_batch), rel=1e-4)
    assert r["measured"] == 3288.0 and r["error"] == pytest.approx(r["predicted"] / 3288.0 - 1.0)
    a2a = float(roofline.alltoall_time_s(b / 4, shape, hw, eff, 4.0))
    assert r["alltoall_ms"] == pytest.approx(1e3 * a2a, rel=1e-4)
    assert r["ideal"] > r["predicted"]


def test_ep_error_band_is_the_quantile_of_slower_than_predicted():
    """ep_error_of by hand: rows predicted 50 % too fast, right, and 20 % too slow give max(0, error) = 0.5, 0, 0;
    the 0.9 quantile of (0, 0, 0.5) by linear interpolation is 0.4."""
    band = calibrate.ep_error_of(pd.DataFrame({"error": [0.5, 0.0, -0.2]}))
    assert band["error"] == pytest.approx(0.4) and band["rows"] == 3
    assert band["mean_signed_error"] == pytest.approx(0.1)


def test_expert_parallel_shapes_carry_the_ep_error_band(tmp_path):
    """The shipped file stores the EP check's band; a dp/ep shape is planned (margin 'auto') and reported
    (prediction_error) with the larger of its entry's cross-validated error and that band, a TP shape without it."""
    import copy
    import json

    from pdfleet import optimize, spec

    import test_expert_parallel as tep

    data = json.loads(calibrate.DEFAULT_CALIBRATION.read_text())
    band = data[calibrate.EP_ERROR_KEY]
    assert band["rows"] >= 30 and band["error"] > 0.2  # the EP roofline is optimistic on the DEPn rows
    served = calibrate.lookup("H200-SXM", None)
    tp_err = calibrate.role_error(served, "decode")[0]
    assert tp_err < band["error"]
    assert calibrate.role_error(served, "decode", expert_parallel=True) == (band["error"], calibrate.EP_ERROR_KEY)
    doc = copy.deepcopy(tep.DOC)
    doc["planning"]["prediction_margin"] = "auto"
    fleet = spec.from_dict(doc)
    profs = predicted.predict(fleet).profiles
    (dep8,) = tep.shape_of(profs, 8, 8, 8)
    (tp8,) = tep.shape_of(profs, 8, 1, 1)
    assert f"decode +{band['error']:.0%}" in dep8.source and f"decode +{tp_err:.0%}" in tp8.source
    # without a margin expert-parallel shapes win both roles and report the band; with 'auto' the band makes TP8
    # cheaper
    plain_plan, auto_plan = optimize.run(spec.from_dict(copy.deepcopy(tep.DOC))).plan, optimize.run(fleet).plan
    assert (plain_plan["ep"] == 8).all() and (auto_plan["ep"] == 1).all()
    for r in [*plain_plan.itertuples(), *auto_plan.itertuples()]:
        want = calibrate.role_error(served, r.role, expert_parallel=r.ep > 1)[0]
        assert r.prediction_error == pytest.approx(want)
    # a file without the band: EP shapes fall back to the entry's own error
    del data[calibrate.EP_ERROR_KEY]
    (tmp_path / "cal.json").write_text(json.dumps(data))
    plain = calibrate.lookup("H200-SXM", None, path=tmp_path / "cal.json")
    assert calibrate.role_error(plain, "decode", tmp_path / "cal.json", True)[0] == pytest.approx(tp_err)
